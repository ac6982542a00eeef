import dataclasses

import pytest

from centrex.asterisk.pjsip_objects import LineSpec, PjsipObject, line_objects
from centrex.core.sync_plan import normalise, plan_sync, same_fields

pytestmark = pytest.mark.unit

SPEC = LineSpec(username="bob", ha1="0" * 32, realm="centrex", media_address="127.0.0.1")


def as_asterisk_spells_it(obj: PjsipObject) -> dict[str, str]:
    spelled = {k: {"yes": "true", "no": "false"}.get(v, v) for k, v in obj.fields.items()}
    if "allow" in spelled:
        spelled["allow"] = "(ulaw|alaw)"
    spelled.pop("disallow", None)
    spelled["some_default"] = "whatever"  # Asterisk returns every field
    return spelled


def test_in_sync_means_nothing_to_do():
    objects = line_objects(SPEC)
    actual = {o.key: as_asterisk_spells_it(o) for o in objects}
    assert plan_sync(objects, actual).empty


def test_missing_objects_are_put_in_create_order():
    plan = plan_sync(reversed(line_objects(SPEC)), {})
    assert [o.type for o in plan.put] == ["auth", "aor", "endpoint"]


def test_strays_are_deleted_endpoint_first():
    actual = {("auth", "old"): {}, ("endpoint", "old"): {}, ("aor", "old"): {}}
    plan = plan_sync([], actual)
    assert plan.delete == [("endpoint", "old"), ("aor", "old"), ("auth", "old")]


def test_a_changed_field_is_rewritten():
    objects = line_objects(SPEC)
    actual = {o.key: as_asterisk_spells_it(o) for o in objects}
    actual[("aor", "bob")]["max_contacts"] = "5"
    assert [o.key for o in plan_sync(objects, actual).put] == [("aor", "bob")]


@pytest.mark.parametrize(
    ("attribute", "a", "b"),
    [
        ("direct_media", "no", "false"),
        ("allow", "alaw,ulaw", "(ulaw|alaw)"),
        ("x", "yes", "1"),
        ("match", "127.0.0.1", "127.0.0.1/255.255.255.255"),
        ("qualify_timeout", "3.0", "3.000000"),
        ("qualify_frequency", "30", "30"),
    ],
)
def test_normalise(attribute, a, b):
    assert normalise(attribute, a) == normalise(attribute, b)


def test_missing_attribute_is_drift():
    assert not same_fields({"context": "x"}, {})


def test_an_endpoint_that_refuses_transfers_is_rewritten():
    """Lines pushed while transfers were refused (allow_transfer=no) get them back
    (docs/transfers.md)."""
    objects = line_objects(SPEC)
    actual = {o.key: as_asterisk_spells_it(o) for o in objects}
    actual[("endpoint", "bob")]["allow_transfer"] = "false"
    assert [o.key for o in plan_sync(objects, actual).put] == [("endpoint", "bob")]


@pytest.mark.parametrize("attribute", ["rewrite_contact", "rtp_symmetric", "force_rport"])
def test_an_endpoint_pushed_before_nat_support_is_rewritten(attribute):
    """Lines pushed before docs/sip-edge.md hold Asterisk's defaults (rewrite_contact and
    rtp_symmetric off): calls to their phones behind NAT go to private addresses."""
    objects = line_objects(SPEC)
    actual = {o.key: as_asterisk_spells_it(o) for o in objects}
    actual[("endpoint", "bob")][attribute] = "false"
    assert [o.key for o in plan_sync(objects, actual).put] == [("endpoint", "bob")]


@pytest.mark.parametrize(
    ("mode", "encryption", "optimistic"),
    [("none", "no", "no"), ("sdes_optional", "sdes", "yes"), ("sdes_required", "sdes", "no")],
)
def test_a_line_s_media_encryption_is_pushed_and_its_drift_repaired(mode, encryption, optimistic):
    objects = line_objects(dataclasses.replace(SPEC, media_encryption=mode))
    endpoint = next(o for o in objects if o.type == "endpoint")
    assert endpoint.fields["media_encryption"] == encryption
    assert endpoint.fields["media_encryption_optimistic"] == optimistic
    actual = {o.key: as_asterisk_spells_it(o) for o in objects}
    actual[("endpoint", "bob")]["media_encryption"] = "dtls" if encryption == "sdes" else "sdes"
    assert [o.key for o in plan_sync(objects, actual).put] == [("endpoint", "bob")]


def test_aors_pushed_before_keep_alives_get_them():
    """Lines pushed before qualify was set hold Asterisk's default (0: never): the reconciler
    rewrites their aor when the operator's frequency differs, and only then."""
    objects = line_objects(dataclasses.replace(SPEC, qualify_frequency_s=30))
    aor = next(o for o in objects if o.type == "aor")
    assert (aor.fields["qualify_frequency"], aor.fields["qualify_timeout"]) == ("30", "3.0")
    actual = {o.key: as_asterisk_spells_it(o) for o in objects}
    actual[("aor", "bob")]["qualify_timeout"] = "3.000000"
    assert plan_sync(objects, actual).empty
    actual[("aor", "bob")]["qualify_frequency"] = "0"
    assert [o.key for o in plan_sync(objects, actual).put] == [("aor", "bob")]
