import pytest

from centrex.core.credentials import digest_ha1, generate_credentials, renewed_credentials

pytestmark = pytest.mark.unit


def test_renewal_keeps_the_username_and_changes_only_the_password():
    old = generate_credentials("centrex")
    new = renewed_credentials(old.username, old.realm)
    assert (new.username, new.realm) == (old.username, old.realm)
    assert new.password != old.password and len(new.password) >= 24
    # The hash Asterisk checks changes with it: the old password no longer matches.
    assert new.ha1 == digest_ha1(old.username, "centrex", new.password) != old.ha1


def test_every_renewal_draws_a_fresh_password():
    passwords = {renewed_credentials("bob", "centrex").password for _ in range(1000)}
    assert len(passwords) == 1000
