"""Issue 13: the audit trail. Every change made through the API is recorded, append-only, with
who, what, which object and the changed values, never a secret; on the real API process,
PostgreSQL, Asterisk and (for a call to hang up) sipp phones and the daemon."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from helpers import sql
from sip_agent import start_calls

from centrex.access.principal import BOOTSTRAP_NAME
from centrex.config import Settings

pytestmark = pytest.mark.integration

WHO = {"actor": "noc-audit", "reason": "audit trail test"}


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    response = api.post("/v1/customers", json={"name": "Audited", "residence_country": "FR"})
    assert response.status_code == 201, response.text
    customer = response.json()
    verified = api.patch(f"/v1/customers/{customer['id']}", json={"documents_verified": True})
    assert verified.status_code == 200, verified.text
    # A 09 block of its own; the numbers this module allocates are whichever come at random.
    response = api.post("/v1/number-blocks", json={"first": "0937200000", "last": "0937200009"})
    assert response.status_code == 201, response.text
    return customer


def audit(api: httpx.Client, **params: object) -> list[dict]:
    """Every audit row matching ``params``, all pages followed."""
    rows, cursor = [], None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = api.get("/v1/audit", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def one_row(api: httpx.Client, object_type: str, object_id: object, operation: str) -> dict:
    """The one row ``operation`` left for the object, checked to name the request's principal
    (the bootstrap token until token authentication exists)."""
    rows = audit(api, object_type=object_type, object_id=str(object_id), operation=operation)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["token_name"] == BOOTSTRAP_NAME and row["token_id"] is None
    return row


def stored_log(database_url: str) -> str:
    """The whole audit log as PostgreSQL holds it, as text: what a secret must never be in."""
    rows = sql(database_url, "SELECT to_jsonb(a)::text AS row FROM audit_log a")
    return "\n".join(r["row"] for r in rows)


def ha1_of(database_url: str, line: dict) -> str:
    return sql(database_url, "SELECT sip_ha1 FROM lines WHERE id = $1", uuid.UUID(line["id"]))[0][
        "sip_ha1"
    ]


# --- lines and their credentials: the secrets -----------------------------------------------------
def test_a_line_creation_is_recorded_without_its_password_or_hash(
    api: httpx.Client, customer: dict, make_line, database_url: str
):
    line, endpoint = make_line("front desk", max_calls=3)
    row = one_row(api, "line", line["id"], "POST /v1/lines")
    assert row["change"] == "created" and row["before"] is None
    after = row["after"]
    assert after["id"] == line["id"] and after["customer_id"] == customer["id"]
    assert after["label"] == "front desk" and after["max_calls"] == 3
    assert after["sip_username"] == line["sip_username"]
    # The hash is named as withheld, never shown; the password was never stored at all.
    assert row["withheld"] == ["sip_ha1"] and "sip_ha1" not in after
    ha1 = ha1_of(database_url, line)
    assert ha1 not in json.dumps(row) and endpoint.password not in json.dumps(row)
    stored = stored_log(database_url)
    assert ha1 not in stored and endpoint.password not in stored
    # The sync state with Asterisk is bookkeeping (the reconciler writes it too): not recorded.
    assert "sync_state" not in after
    assert audit(api, object_type="line", object_id=line["id"]) == [row]


def test_a_credential_renewal_is_recorded_without_either_password_or_hash(
    api: httpx.Client, make_line, database_url: str
):
    line, endpoint = make_line("renewed")
    old_ha1 = ha1_of(database_url, line)
    response = api.post(f"/v1/lines/{line['id']}/credentials", json=WHO)
    assert response.status_code == 200, response.text
    renewed = response.json()
    new_ha1 = ha1_of(database_url, line)

    row = one_row(api, "line", line["id"], "POST /v1/lines/{line_id}/credentials")
    assert row["change"] == "updated"
    assert row["withheld"] == ["sip_ha1"] and row["before"] == {} and row["after"] == {}
    renewal = one_row(
        api, "credential_renewal", renewed["renewal"]["id"], "POST /v1/lines/{line_id}/credentials"
    )
    assert renewal["after"]["line_id"] == line["id"]
    assert renewal["after"]["actor"] == WHO["actor"]
    stored = stored_log(database_url)
    for secret in (endpoint.password, renewed["sip_password"], old_ha1, new_ha1):
        assert secret not in stored


def test_a_line_update_and_deletion_are_recorded_with_before_and_after(
    api: httpx.Client, make_line
):
    line, _ = make_line("before")
    response = api.patch(
        f"/v1/lines/{line['id']}", json={"label": "after", "media_encryption": "sdes_optional"}
    )
    assert response.status_code == 200, response.text
    row = one_row(api, "line", line["id"], "PATCH /v1/lines/{line_id}")
    assert row["change"] == "updated"
    assert row["before"] == {"label": "before", "media_encryption": "none"}
    assert row["after"] == {"label": "after", "media_encryption": "sdes_optional"}

    assert api.delete(f"/v1/lines/{line['id']}").status_code == 204
    row = one_row(api, "line", line["id"], "DELETE /v1/lines/{line_id}")
    assert row["change"] == "updated"  # a soft delete: the line stays, for its records
    assert row["before"] == {"deleted_at": None}
    assert datetime.fromisoformat(row["after"]["deleted_at"]) > datetime.now(UTC) - timedelta(
        minutes=1
    )


# --- customers, restrictions, destinations --------------------------------------------------------
def test_customer_changes_are_recorded(api: httpx.Client):
    response = api.post("/v1/customers", json={"name": "Old name", "email": "a@example.org"})
    customer = response.json()
    row = one_row(api, "customer", customer["id"], "POST /v1/customers")
    assert row["change"] == "created" and row["after"]["name"] == "Old name"
    assert row["after"]["email"] == "a@example.org" and row["withheld"] == []

    body = {"name": "New name", "documents_verified": True}
    assert api.patch(f"/v1/customers/{customer['id']}", json=body).status_code == 200
    row = one_row(api, "customer", customer["id"], "PATCH /v1/customers/{customer_id}")
    assert row["before"] == {"name": "Old name", "documents_verified_at": None}
    assert row["after"]["name"] == "New name" and row["after"]["documents_verified_at"]


def test_restrict_and_lift_are_recorded(api: httpx.Client, make_line):
    line, _ = make_line("restricted")
    response = api.post(
        f"/v1/lines/{line['id']}/restrictions", json={**WHO, "level": "national_only"}
    )
    assert response.status_code == 201, response.text
    restriction = response.json()
    row = one_row(api, "restriction", restriction["id"], "POST /v1/lines/{target_id}/restrictions")
    assert row["change"] == "created"
    assert row["after"]["target_id"] == line["id"] and row["after"]["level"] == "national_only"

    response = api.post(f"/v1/restrictions/{restriction['id']}/lift", json=WHO)
    assert response.status_code == 200, response.text
    row = one_row(
        api, "restriction", restriction["id"], "POST /v1/restrictions/{restriction_id}/lift"
    )
    assert row["before"] == {"lifted_at": None, "lifted_by": None, "lift_reason": None,
                             "lifted_by_principal": None}  # fmt: skip
    assert row["after"]["lifted_by"] == WHO["actor"]
    assert row["after"]["lifted_by_principal"] == row["token_name"]
    assert row["after"]["lift_reason"] == WHO["reason"]


def test_destination_changes_are_recorded(api: httpx.Client):
    code = "679"  # Fiji: no other test module lists it
    response = api.post("/v1/destinations", json={"code": code})
    assert response.status_code == 201, response.text
    assert one_row(api, "destination", code, "POST /v1/destinations")["after"]["code"] == code

    assert api.post(f"/v1/destinations/{code}/suspend", json=WHO).status_code == 200
    row = one_row(api, "destination", code, "POST /v1/destinations/{code}/suspend")
    assert row["before"] == {"suspended_at": None, "suspended_reason": None}
    assert WHO["reason"] in row["after"]["suspended_reason"]

    assert api.post(f"/v1/destinations/{code}/resume", json=WHO).status_code == 200
    row = one_row(api, "destination", code, "POST /v1/destinations/{code}/resume")
    assert row["after"] == {"suspended_at": None, "suspended_reason": None}

    assert api.delete(f"/v1/destinations/{code}").status_code == 204
    row = one_row(api, "destination", code, "DELETE /v1/destinations/{code}")
    assert row["change"] == "deleted" and row["after"] is None
    assert row["before"]["code"] == code and row["before"]["name"]


# --- numbers and ring groups: statements the ORM does not see, recorded explicitly ----------------
def test_number_allocation_destination_and_release_are_recorded(
    api: httpx.Client, customer: dict, make_line
):
    # The block of the module's customer fixture: one row for it, its range (not one per number).
    blocks = audit(api, object_type="number_block", operation="POST /v1/number-blocks")
    (block,) = [r for r in blocks if r["after"]["first_e164"] == "+33937200000"]
    assert block["after"]["last_e164"] == "+33937200009" and block["after"]["size"] == 10
    line, _ = make_line("numbered")
    alias_line, _ = make_line("alias target")

    def allocate() -> dict:
        body = {"customer_id": customer["id"], "kind": "non_geographic"}
        response = api.post("/v1/numbers/allocate", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    main, alias = allocate(), allocate()
    row = one_row(api, "number", main["e164"], "POST /v1/numbers/allocate")
    assert row["change"] == "updated"
    assert row["before"]["status"] == "free" and row["before"]["customer_id"] is None
    assert row["after"]["status"] == "assigned" and row["after"]["customer_id"] == customer["id"]

    body = {"line_id": alias_line["id"]}
    assert api.put(f"/v1/numbers/{alias['e164']}/destination", json=body).status_code == 200
    row = one_row(api, "number", alias["e164"], "PUT /v1/numbers/{number}/destination")
    assert row["before"] == {"line_id": None} and row["after"] == {"line_id": alias_line["id"]}
    assert api.delete(f"/v1/numbers/{alias['e164']}/destination").status_code == 200
    row = one_row(api, "number", alias["e164"], "DELETE /v1/numbers/{number}/destination")
    assert row["before"] == {"line_id": alias_line["id"]} and row["after"] == {"line_id": None}

    # Releasing a line's main number takes it off the line, in a statement of its own: the
    # line's row is recorded explicitly.
    patched = api.patch(f"/v1/lines/{line['id']}", json={"main_number": main["e164"]})
    assert patched.status_code == 200, patched.text
    assert api.post(f"/v1/numbers/{main['e164']}/release").status_code == 200
    release = "POST /v1/numbers/{number}/release"
    row = one_row(api, "number", main["e164"], release)
    assert row["before"]["status"] == "assigned" and row["after"]["status"] == "free"
    row = one_row(api, "line", line["id"], release)
    assert row["before"] == {"main_number": main["e164"]} and row["after"] == {"main_number": None}


def test_ring_group_changes_are_recorded(api: httpx.Client, customer: dict, make_line):
    first, _ = make_line("member 1")
    second, _ = make_line("member 2")
    body = {"customer_id": customer["id"], "name": "sales", "strategy": "hunt",
            "ring_timeout_s": 10, "members": [first["id"], second["id"]]}  # fmt: skip
    response = api.post("/v1/ring-groups", json=body)
    assert response.status_code == 201, response.text
    group = response.json()
    row = one_row(api, "ring_group", group["id"], "POST /v1/ring-groups")
    assert row["after"]["name"] == "sales" and row["after"]["strategy"] == "hunt"
    created = audit(api, object_type="ring_group_member", operation="POST /v1/ring-groups")
    members = {r["object_id"]: r["after"]["line_id"] for r in created}
    assert members[f"{group['id']}/0"] == first["id"]
    assert members[f"{group['id']}/1"] == second["id"]

    # The members are replaced in a DELETE statement: each removal is recorded explicitly.
    update = "PATCH /v1/ring-groups/{ring_group_id}"
    body = {"name": "sales desk", "members": [second["id"]]}
    assert api.patch(f"/v1/ring-groups/{group['id']}", json=body).status_code == 200
    row = one_row(api, "ring_group", group["id"], update)
    assert row["before"] == {"name": "sales"} and row["after"] == {"name": "sales desk"}
    changes = {
        (r["object_id"], r["change"], (r["before"] or r["after"])["line_id"])
        for r in audit(api, object_type="ring_group_member", operation=update)
        if r["object_id"].startswith(group["id"])
    }
    assert changes == {
        (f"{group['id']}/0", "deleted", first["id"]),
        (f"{group['id']}/1", "deleted", second["id"]),
        (f"{group['id']}/0", "created", second["id"]),
    }

    # Deleting a line takes it out of its groups: recorded under the line's deletion.
    assert api.delete(f"/v1/lines/{second['id']}").status_code == 204
    row = one_row(api, "ring_group_member", f"{group['id']}/0", "DELETE /v1/lines/{line_id}")
    assert row["change"] == "deleted" and row["before"]["line_id"] == second["id"]

    assert api.delete(f"/v1/ring-groups/{group['id']}").status_code == 204
    row = one_row(api, "ring_group", group["id"], "DELETE /v1/ring-groups/{ring_group_id}")
    assert row["change"] == "deleted" and row["before"]["name"] == "sales desk"


def test_a_trunk_is_recorded_without_its_password(api: httpx.Client, database_url: str):
    password = f"carrier-secret-{uuid.uuid4().hex}"
    body = {"name": "audited", "host": "127.0.0.9", "username": "us", "password": password}
    response = api.post("/v1/trunks", json=body)
    assert response.status_code == 201, response.text
    trunk = response.json()
    row = one_row(api, "trunk", trunk["id"], "POST /v1/trunks")
    assert row["after"]["username"] == "us" and row["withheld"] == ["password"]
    assert api.delete(f"/v1/trunks/{trunk['id']}").status_code == 204
    row = one_row(api, "trunk", trunk["id"], "DELETE /v1/trunks/{trunk_id}")
    assert row["change"] == "deleted" and row["withheld"] == ["password"]
    assert row["before"]["host"] == "127.0.0.9"
    assert password not in stored_log(database_url)


def test_lifting_a_sip_ban_is_recorded(api: httpx.Client, database_url: str):
    # A ban as the guard writes it (no API call creates one).
    (ban,) = sql(
        database_url,
        "INSERT INTO sip_bans (id, address, banned_at, until, failures, rule, evidence, node) "
        "VALUES ($1, '192.0.2.77', now(), now() + interval '10 minutes', 5, 'test', '{}', 'n') "
        "RETURNING id",
        uuid.uuid4(),
    )
    assert audit(api, object_type="sip_ban", object_id=str(ban["id"])) == []  # not the API's
    assert api.delete("/v1/sip-bans/192.0.2.77").status_code == 204
    row = one_row(api, "sip_ban", ban["id"], "DELETE /v1/sip-bans/{address}")
    assert row["before"] == {"lifted_at": None, "lifted_by": None}
    assert row["after"]["lifted_by"] == "api" and row["after"]["lifted_at"]


def test_a_manual_sip_ban_is_recorded(api: httpx.Client):
    response = api.post("/v1/sip-bans", json={"address": "192.0.2.78", "seconds": 60})
    assert response.status_code == 201, response.text
    (ban,) = [b for b in api.get("/v1/sip-bans").json() if b["address"] == "192.0.2.78"]
    row = one_row(api, "sip_ban", ban["id"], "POST /v1/sip-bans")
    assert row["change"] == "created" and row["after"]["rule"] == "manual"
    assert api.delete("/v1/sip-bans/192.0.2.78").status_code == 204


# --- a call: hung up through ARI, nothing changed in the database ---------------------------------
def test_hanging_up_a_call_is_recorded_and_the_daemons_admissions_are_not(
    api: httpx.Client, make_line, answering_line, settings: Settings, control_service, wait_until
):
    _, target = answering_line()
    line, caller = make_line("caller")
    before = audit(api)

    def calls() -> list[dict]:
        return api.get(f"/v1/lines/{line['id']}/calls").json()

    run = start_calls(
        "uac_call_until_cut.xml", f"{settings.asterisk_host}:{settings.sip_port}",
        [(caller.username, caller.password)], target.username, timeout_s=30,
    )  # fmt: skip
    wait_until(lambda: calls() and calls()[0]["deadline_at"], 10, "answer")
    (call,) = calls()
    # The daemon admitted the call (rows of its own): no audit row for that.
    assert audit(api) == before

    assert api.delete(f"/v1/calls/{call['id']}").status_code == 204
    run.outcomes()
    row = one_row(api, "call", call["id"], "DELETE /v1/calls/{call_id}")
    assert row["change"] == "hung_up" and row["after"] is None
    assert row["before"]["channel_id"] == call["channel_id"]
    assert row["before"]["caller_line_id"] == line["id"]
    # The daemon released it (its rows deleted): still the one row.
    wait_until(lambda: calls() == [], 5, "released")
    assert [r for r in audit(api) if r not in before] == [row]


# --- append-only ----------------------------------------------------------------------------------
def test_the_log_is_append_only_even_for_the_apps_own_role(
    api: httpx.Client, customer: dict, database_url: str
):
    (row,) = audit(
        api, object_type="customer", object_id=customer["id"], operation="POST /v1/customers"
    )
    entry = uuid.UUID(row["id"])
    for statement in (
        "UPDATE audit_log SET token_name = 'someone else' WHERE id = $1",
        "DELETE FROM audit_log WHERE id = $1",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            sql(database_url, statement, entry)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        sql(database_url, "TRUNCATE audit_log")
    (again,) = audit(
        api, object_type="customer", object_id=customer["id"], operation="POST /v1/customers"
    )
    assert again == row


def test_the_api_has_no_route_that_writes_the_log(api: httpx.Client):
    paths = api.get("/openapi.json").json()["paths"]
    audit_paths = {p: set(ops) for p, ops in paths.items() if "audit" in p}
    assert audit_paths == {"/v1/audit": {"get"}}


# --- GET /v1/audit --------------------------------------------------------------------------------
def test_filters_and_pages(api: httpx.Client, database_url: str):
    start = datetime.now(UTC)
    customers = [api.post("/v1/customers", json={"name": f"paged {i}"}).json() for i in range(5)]
    for c in customers:
        assert api.patch(f"/v1/customers/{c['id']}", json={"name": "renamed"}).status_code == 200
    ours = {c["id"] for c in customers}

    # A time range: exactly the ten changes above among everyone's since then.
    recent = [r for r in audit(api, object_type="customer", since=start.isoformat())
              if r["object_id"] in ours]  # fmt: skip
    assert len(recent) == 10
    assert [r["change"] for r in recent] == ["created"] * 5 + ["updated"] * 5
    assert audit(api, object_type="customer", until=start.isoformat(),
                 object_id=customers[0]["id"]) == []  # fmt: skip
    middle = recent[5]["at"]
    later = audit(api, object_type="customer", since=middle)
    assert [r for r in later if r["object_id"] in ours] == recent[5:]
    earlier = audit(api, since=start.isoformat(), until=middle, object_type="customer")
    assert [r for r in earlier if r["object_id"] in ours] == recent[:5]

    # Object and operation.
    one = audit(api, object_type="customer", object_id=customers[2]["id"])
    assert [r["change"] for r in one] == ["created", "updated"]
    patched = audit(api, operation="PATCH /v1/customers/{customer_id}", since=start.isoformat())
    assert {r["object_id"] for r in patched} >= ours
    assert all(r["operation"] == "PATCH /v1/customers/{customer_id}" for r in patched)
    assert audit(api, object_type="line", object_id=customers[2]["id"]) == []

    # A token's rows: made here as a token's change would be (no API token but the bootstrap
    # one exists yet); inserting is what the app's role may do.
    token = uuid.uuid4()
    sql(database_url,
        "INSERT INTO audit_log (id, token_id, token_name, operation, object_type, object_id, "
        "change) VALUES ($1, $2, 'billing robot', 'PATCH /v1/customers/{customer_id}', "
        "'customer', $3, 'updated')", uuid.uuid4(), token, customers[0]["id"])  # fmt: skip
    (mine,) = audit(api, token_id=str(token))
    assert mine["token_name"] == "billing robot" and mine["object_id"] == customers[0]["id"]
    assert audit(api, token_id=str(uuid.uuid4())) == []

    # Pages of two: all the rows, in order, each once.
    every = audit(api, since=start.isoformat())
    paged, cursor = [], None
    while True:
        params = {"since": start.isoformat(), "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/audit", params=params).json()
        assert len(page["items"]) <= 2
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == every and len(every) >= 11
    assert len({r["id"] for r in paged}) == len(paged)
    keys = [(datetime.fromisoformat(r["at"]), uuid.UUID(r["id"])) for r in paged]
    assert keys == sorted(keys)

    bad = api.get("/v1/audit", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert api.get("/v1/audit", params={"token_id": "nope"}).status_code == 422


def test_the_log_needs_the_operator_token(settings: Settings, api_service):
    url = f"http://{settings.api_host}:{settings.api_port}/v1/audit"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
