"""What Asterisk is given to read lines from PostgreSQL (centrex.asterisk.realtime)."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from centrex.asterisk.realtime import (
    ASTERISK_DB_ROLE,
    contacts_of,
    line_cache_entries,
    odbc_settings,
    trunk_cache_entries,
)
from centrex.config import Settings

URL = "postgresql+asyncpg://centrex_app:secret@127.0.0.1:6543/centrex_x"


def settings(**fields: object) -> Settings:
    return Settings(_env_file=None, database_url=URL, asterisk_db_password="pw-asterisk", **fields)


def test_the_dsn_names_the_database_the_role_and_what_differs_per_node():
    odbc = odbc_settings(settings(media_address="192.0.2.10", sip_qualify_frequency_s=25),
                         "main", PurePosixPath("/usr/lib/x/odbc/psqlodbcw.so"))  # fmt: skip
    assert (odbc["host"], odbc["port"], odbc["database"]) == ("127.0.0.1", 6543, "centrex_x")
    assert (odbc["username"], odbc["password"]) == (ASTERISK_DB_ROLE, "pw-asterisk")
    assert odbc["sslmode"] == "disable"  # loopback
    assert "-c centrex.media_address=192.0.2.10" in str(odbc["pqopt"])
    assert "-c centrex.qualify_frequency=25" in str(odbc["pqopt"])
    assert odbc["dsn"] == "centrex-main"


def test_a_remote_database_is_reached_over_tls():
    remote = settings().model_copy(update={"database_url": URL.replace("127.0.0.1", "db.example")})
    assert odbc_settings(remote, "main", None)["sslmode"] == "require"


@pytest.mark.parametrize("address", ["10.0.0.1 -c x=y", "10.0.0.1'", "a;b", 'a"b', "a\\b"])
def test_a_media_address_that_would_write_options_of_its_own_is_refused(address):
    with pytest.raises(ValueError, match="cannot be given"):
        odbc_settings(settings(media_address=address), "main", None)


def test_cache_entries_and_contacts_of_one_line():
    assert line_cache_entries("bob") == [
        ("centrex_auth", "bob"), ("centrex_aor", "bob"), ("centrex_endpoint", "bob"),
    ]  # fmt: skip
    assert ("centrex_identify", "trunk-carrier") in trunk_cache_entries("carrier")
    keys = ["bob;@abc", "bobby;@def", "alice;@123", "bob;@fed"]
    assert contacts_of("bob", keys) == ["bob;@abc", "bob;@fed"]
