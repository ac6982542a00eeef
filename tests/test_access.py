"""Issue 13: scoped API tokens, on the real API process and PostgreSQL.

Every route of the live OpenAPI document is tried with each scope. What a customer token may
call is listed here again, independently of centrex/access/rules.py: this table is the spec.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from helpers import sql
from sip_agent import SipEndpoint, free_udp_port

from centrex.access.tokens import secret_hash as tokens_hash

pytestmark = pytest.mark.integration

CUSTOMER_MAY = {
    ("GET", "/v1/customers/{customer_id}"),
    ("GET", "/v1/lines"),
    ("GET", "/v1/lines/{line_id}"),
    ("PATCH", "/v1/lines/{line_id}"),
    ("POST", "/v1/lines/{line_id}/credentials"),
    ("GET", "/v1/lines/{line_id}/credential-renewals"),
    ("GET", "/v1/lines/{line_id}/calls"),
    ("DELETE", "/v1/calls/{call_id}"),
    ("GET", "/v1/numbers/{number}"),
    ("PUT", "/v1/numbers/{number}/destination"),
    ("DELETE", "/v1/numbers/{number}/destination"),
    ("GET", "/v1/numbers/{number}/rio"),
    ("GET", "/v1/ring-groups"),
    ("GET", "/v1/ring-groups/{ring_group_id}"),
    ("PATCH", "/v1/ring-groups/{ring_group_id}"),
    ("GET", "/v1/cdrs"),
    ("GET", "/v1/cdrs.csv"),
    ("GET", "/v1/lines/{line_id}/usage"),
    ("GET", "/v1/lines/{target_id}/restrictions"),
    ("GET", "/v1/customers/{target_id}/restrictions"),
    ("GET", "/v1/fraud-suspicions"),
    ("GET", "/v1/customers/{customer_id}/usage"),
    ("GET", "/v1/customers/{customer_id}/rated-calls.csv"),
    ("GET", "/v1/invoices"),
    ("GET", "/v1/invoices/{invoice_id}"),
    ("GET", "/v1/invoices/{invoice_id}.pdf"),
    ("GET", "/v1/customers/{customer_id}/balance"),
    ("GET", "/v1/invoices/{invoice_id}/disputes"),
    ("GET", "/v1/customers/{customer_id}/service-credits"),
    ("GET", "/v1/customers/{customer_id}/item-subscriptions"),
    ("GET", "/v1/contracts"),
    ("GET", "/v1/contracts/{contract_id}"),
    ("GET", "/v1/contracts/{contract_id}/charges"),
    ("GET", "/v1/contracts/{contract_id}/events"),
    ("GET", "/v1/equipment"),
    ("GET", "/v1/customers/{customer_id}/personal-data"),
    ("GET", "/v1/contracts/{contract_id}/changes"),
    ("GET", "/v1/interruptions"),
    ("GET", "/v1/equipment/{equipment_id}/repairs"),
    ("POST", "/v1/equipment/{equipment_id}/repairs/{repair_id}/decision"),
    ("GET", "/v1/equipment/{equipment_id}/provisioning"),
    ("GET", "/v1/numbers/{number}/directory"),
    ("PUT", "/v1/numbers/{number}/directory"),
    ("GET", "/v1/lines/{line_id}/features"),
    ("PATCH", "/v1/lines/{line_id}/features"),
    ("GET", "/v1/lines/{line_id}/voicemail"),
    ("PATCH", "/v1/lines/{line_id}/voicemail"),
    ("PUT", "/v1/lines/{line_id}/voicemail/greeting"),
    ("DELETE", "/v1/lines/{line_id}/voicemail/greeting"),
    ("GET", "/v1/lines/{line_id}/voicemails"),
    ("GET", "/v1/lines/{line_id}/voicemails/{msg_id}"),
    ("DELETE", "/v1/lines/{line_id}/voicemails/{msg_id}"),
    ("GET", "/v1/customers/{customer_id}/music-on-hold"),
    ("PUT", "/v1/customers/{customer_id}/music-on-hold"),
    ("DELETE", "/v1/customers/{customer_id}/music-on-hold"),
}
# Allowed, but shown on real objects elsewhere (a WAV upload, messages a caller left):
# tests/test_voicemail.py, tests/test_customer_moh.py.
SHOWN_ELSEWHERE = {
    ("PUT", "/v1/customers/{customer_id}/music-on-hold"),
    ("PUT", "/v1/lines/{line_id}/voicemail/greeting"),
    ("GET", "/v1/lines/{line_id}/voicemails/{msg_id}"),
    ("DELETE", "/v1/lines/{line_id}/voicemails/{msg_id}"),
}
# Lists a customer token sees filtered to its own customer: another's id is a 404.
FILTERED_LISTS = {"/v1/lines", "/v1/ring-groups", "/v1/cdrs", "/v1/cdrs.csv",
                  "/v1/fraud-suspicions", "/v1/invoices", "/v1/contracts",
                  "/v1/equipment", "/v1/interruptions"}  # fmt: skip
# Its own invoice: read in tests/test_billing_invoices.py on a real one (a tenant here has none).
ON_REAL_OBJECTS = {"/v1/calls/{call_id}", "/v1/invoices/{invoice_id}",
                   "/v1/invoices/{invoice_id}.pdf",
                   "/v1/invoices/{invoice_id}/disputes",
                   # A device's repairs, quote and provisioning: tests/test_contract_life_api.py.
                   "/v1/equipment/{equipment_id}/repairs",
                   "/v1/equipment/{equipment_id}/repairs/{repair_id}/decision",
                   "/v1/equipment/{equipment_id}/provisioning"}  # fmt: skip
# Tables the API writes: a refused request must leave every one as it was.
API_TABLES = ["customers", "lines", "numbers", "number_blocks", "number_tier_rules", "trunks",
              "ring_groups", "ring_group_members", "destinations", "policy_restrictions",
              "credential_renewals", "sip_bans", "api_tokens", "line_features",
              "voicemail_boxes", "customer_music_on_hold", "service_interruptions",
              "equipment_repairs", "contract_changes", "directory_listings"]  # fmt: skip
WHO = {"actor": "self-service", "reason": "a test"}
PERIOD = {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}


class Tenant:
    """A customer with a line, an alias number and a ring group."""

    def __init__(self, api: httpx.Client, name: str, block: str) -> None:
        customer = api.post("/v1/customers", json={"name": name, "residence_country": "FR"})
        self.id = customer.json()["id"]
        api.patch(f"/v1/customers/{self.id}", json={"documents_verified": True})
        first = block + "000"
        assert api.post(
            "/v1/number-blocks", json={"first": first, "last": block + "009"}
        ).is_success
        line = api.post("/v1/lines", json={"customer_id": self.id, "label": "desk"})
        assert line.status_code == 201, line.text
        self.line = line.json()
        number = api.post("/v1/numbers/allocate",
                          json={"customer_id": self.id, "kind": "non_geographic"})  # fmt: skip
        assert number.status_code == 201, number.text
        self.number = number.json()["national"]
        group = api.post("/v1/ring-groups", json={
            "customer_id": self.id, "name": "all", "strategy": "ring_all",
            "ring_timeout_s": 20, "members": [self.line["id"]]})  # fmt: skip
        assert group.status_code == 201, group.text
        self.group = group.json()["id"]
        contract = api.post("/v1/contracts", json={"customer_id": self.id,
                            "evidence": "signed order", "monthly_fee_cents": 2000})  # fmt: skip
        assert contract.status_code == 201, contract.text
        self.contract = contract.json()["id"]

    def path(self, template: str) -> str:
        target = self.line["id"] if template.startswith("/v1/lines/") else self.id
        return (
            template.replace("{customer_id}", self.id).replace("{line_id}", self.line["id"])
            .replace("{target_id}", target).replace("{number}", self.number)
            .replace("{ring_group_id}", self.group).replace("{call_id}", str(uuid.uuid4()))
            .replace("{code}", "44").replace("{trunk_id}", str(uuid.uuid4()))
            .replace("{token_id}", str(uuid.uuid4())).replace("{address}", "127.0.0.55")
            .replace("{restriction_id}", str(uuid.uuid4()))
            .replace("{invoice_id}", str(uuid.uuid4()))
            .replace("{collection_id}", str(uuid.uuid4()))
            .replace("{dispute_id}", str(uuid.uuid4()))
            .replace("{contract_id}", self.contract)
            .replace("{equipment_id}", str(uuid.uuid4()))
            .replace("{repair_id}", str(uuid.uuid4()))
            .replace("{interruption_id}", str(uuid.uuid4()))
            .replace("{msg_id}", "1796278227-00000001")
        )  # fmt: skip

    def params(self, template: str) -> dict:
        params = {"customer_id": self.id} if template in FILTERED_LISTS else {}
        return {**params, **(PERIOD if template.endswith("/usage") else {})}

    def body(self, method: str, template: str) -> dict | None:
        """A body the route accepts from this customer's own token."""
        if method in ("GET", "DELETE"):
            return None
        return {
            "/v1/lines/{line_id}": {"label": "renamed by its customer"},
            "/v1/lines/{line_id}/credentials": WHO,
            "/v1/numbers/{number}/destination": {"line_id": self.line["id"]},
            "/v1/ring-groups/{ring_group_id}": {"members": [self.line["id"]]},
            "/v1/lines/{line_id}/features": {"dnd": True},
            "/v1/lines/{line_id}/voicemail": {"email": "desk@example.com"},
            "/v1/numbers/{number}/directory": {"listed": False},
            "/v1/equipment/{equipment_id}/repairs/{repair_id}/decision": {
                "decided_on": "2026-01-01",
                "accepted": False,
            },
        }.get(template, {})


@pytest.fixture(scope="module")
def tenants(api: httpx.Client) -> tuple[Tenant, Tenant]:
    return Tenant(api, "Own", "0938000"), Tenant(api, "Other", "0939000")


@pytest.fixture(scope="module")
def routes(api: httpx.Client) -> list[tuple[str, str]]:
    paths = api.get("/openapi.json").json()["paths"]
    found = [(m.upper(), p) for p, ops in paths.items() for m in ops if p.startswith("/v1/")]
    assert len(found) > 40
    return sorted(found)


def issue(api: httpx.Client, scope: str, customer_id: str | None = None, **more) -> str:
    return issued(api, scope, customer_id, **more)["token"]


def issued(api: httpx.Client, scope: str, customer_id: str | None = None, **more) -> dict:
    body = {"name": f"{scope} {uuid.uuid4().hex[:6]}", "scope": scope,
            "customer_id": customer_id, **more}  # fmt: skip
    response = api.post("/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def as_token(api: httpx.Client):
    clients: list[httpx.Client] = []

    def make(token: str) -> httpx.Client:
        client = httpx.Client(base_url=str(api.base_url), timeout=30,
                              headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def snapshot(database_url: str) -> dict[str, str]:
    return {
        table: sql(
            database_url,
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t",
        )[0][0]
        for table in API_TABLES
    }


def call(client: httpx.Client, tenant: Tenant, method: str, template: str) -> httpx.Response:
    return client.request(method, tenant.path(template), params=tenant.params(template),
                          json=tenant.body(method, template))  # fmt: skip


def test_every_route_is_closed_to_customers_unless_listed(
    api, routes, tenants, as_token, database_url
):
    own, _ = tenants
    customer = as_token(issue(api, "customer", own.id))
    before = snapshot(database_url)
    wrong = []
    for method, template in routes:
        if (method, template) in CUSTOMER_MAY:
            continue  # tried below, with its own and another's objects
        response = call(customer, own, method, template)
        if response.status_code != 403:
            wrong.append(f"{method} {template}: {response.status_code} {response.text[:120]}")
    assert wrong == []
    assert snapshot(database_url) == before, "a refused request changed the database"


def test_another_customer_s_objects_answer_404_like_unknown_ones(
    api, routes, tenants, as_token, database_url
):
    own, other = tenants
    customer = as_token(issue(api, "customer", own.id))
    before = snapshot(database_url)
    wrong = []
    for method, template in routes:
        if (method, template) not in CUSTOMER_MAY:
            continue
        response = call(customer, other, method, template)
        if response.status_code != 404:
            wrong.append(f"{method} {template}: {response.status_code} {response.text[:120]}")
    assert wrong == []
    assert snapshot(database_url) == before, "a refused request changed the database"
    # The same answer as for an object that does not exist, but for the id it names.
    unknown = str(uuid.uuid4())
    seen = customer.get(f"/v1/lines/{other.line['id']}").text.replace(other.line["id"], unknown)
    assert seen == customer.get(f"/v1/lines/{unknown}").text


def test_a_customer_token_does_what_it_may_on_its_own_objects(api, routes, tenants, as_token):
    own, _ = tenants
    customer = as_token(issue(api, "customer", own.id))
    wrong = []
    for method, template in routes:
        if (method, template) not in CUSTOMER_MAY or template in ON_REAL_OBJECTS:
            continue  # hanging up its own call: on a real call, below
        if (method, template) in SHOWN_ELSEWHERE:
            continue
        response = call(customer, own, method, template)
        if not response.is_success:
            wrong.append(f"{method} {template}: {response.status_code} {response.text[:160]}")
    assert wrong == []
    # Its lists hold its own objects only, asked with or without its customer id.
    lines = customer.get("/v1/lines").json()["items"]
    assert {line["customer_id"] for line in lines} == {own.id}
    groups = customer.get("/v1/ring-groups").json()
    assert {g["customer_id"] for g in groups} == {own.id}


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_calls", 10), ("max_call_duration_s", 60), ("media_encryption", "sdes_optional")],
)
def test_a_customer_may_not_change_its_line_s_limits(
    api, tenants, as_token, database_url, field, value
):
    own, _ = tenants
    customer = as_token(issue(api, "customer", own.id))
    before = snapshot(database_url)
    response = customer.patch(f"/v1/lines/{own.line['id']}", json={"label": "x", field: value})
    assert response.status_code == 403, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert snapshot(database_url) == before


def test_operator_read_reads_everything_and_changes_nothing(
    api, routes, tenants, as_token, database_url
):
    own, _ = tenants
    reader = as_token(issue(api, "operator:read"))
    before = snapshot(database_url)
    wrong = []
    for method, template in routes:
        response = call(reader, own, method, template)
        if method == "GET":
            if response.status_code in (401, 403):
                wrong.append(f"{method} {template}: {response.status_code}")
        elif response.status_code != 403:
            wrong.append(f"{method} {template}: {response.status_code} {response.text[:120]}")
    assert wrong == []
    assert snapshot(database_url) == before


def test_a_revoked_token_is_refused_from_the_next_request(api, as_token):
    row = issued(api, "operator:read")
    reader = as_token(row["token"])
    assert reader.get("/v1/tokens").status_code == 200
    assert api.delete(f"/v1/tokens/{row['id']}").status_code == 204
    response = reader.get("/v1/tokens")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_an_expired_token_is_refused(api, as_token, wait_until):
    soon = datetime.now(UTC) + timedelta(seconds=3)
    reader = as_token(issue(api, "operator:read", expires_at=soon.isoformat()))
    assert reader.get("/v1/destinations").status_code == 200
    wait_until(lambda: reader.get("/v1/destinations").status_code == 401, 10, "expired")
    assert reader.get("/v1/destinations").json() == {"detail": "this token has expired"}


def test_tokens_are_shown_once_and_only_a_hash_is_kept(api, tenants, database_url):
    own, _ = tenants
    token = issue(api, "customer", own.id)
    listed = api.get("/v1/tokens").json()
    assert all("token" not in row for row in listed)
    stored = sql(database_url, "SELECT * FROM api_tokens")
    assert all(token not in str(dict(row)) for row in stored)
    secret = token.split("_", 2)[2]  # the secret itself may contain "_"
    assert all(secret not in str(dict(row)) for row in stored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scope": "customer"}, "customer_id"),
        ({"name": "x", "scope": "operator", "customer_id": str(uuid.uuid4())}, "customer_id"),
        ({"name": "x", "scope": "customer", "customer_id": str(uuid.uuid4())}, "customer_id"),
        ({"name": "x", "scope": "root"}, "scope"),
        ({"name": "x", "scope": "operator", "expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_bad_token_requests_name_the_field(api, body, field):
    response = api.post("/v1/tokens", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert field in response.json()["detail"][0]["loc"], response.text


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz",
     "Bearer cxt_00000000000000000000000000000000_" + "A" * 43],
)  # fmt: skip
def test_no_or_a_wrong_token_is_401(api, header):
    headers = {"Authorization": header} if header else {}
    response = httpx.get(api.base_url.join("/v1/destinations"), headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_health_metrics_and_docs_need_no_token(api):
    for path in ("health/live", "metrics", "docs", "openapi.json"):
        assert httpx.get(api.base_url.join(f"/{path}")).status_code == 200, path


# --- on real phones -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def customer(tenants) -> dict:
    """The own tenant, for make_line and answering_line (tests/conftest.py)."""
    return {"id": tenants[0].id}


def test_a_customer_renews_its_own_line_s_credentials_not_another_s(
    api, tenants, as_token, make_line, settings
):
    own, other = tenants
    customer = as_token(issue(api, "customer", own.id))
    line, phone = make_line("renewed by its customer")
    phone.register(free_udp_port()).expect_success()

    renewed = customer.post(f"/v1/lines/{line['id']}/credentials", json=WHO)
    assert renewed.status_code == 200, renewed.text
    phone.register_refused(free_udp_port()).expect_success()  # the old password: refused
    new = SipEndpoint(phone.username, renewed.json()["sip_password"], phone.server)
    new.register(free_udp_port()).expect_success()

    # Another customer's line: as if it did not exist, and its password still works.
    refused = customer.post(f"/v1/lines/{other.line['id']}/credentials", json=WHO)
    assert refused.status_code == 404, refused.text
    theirs = SipEndpoint(other.line["sip_username"], other.line["sip_password"], phone.server)
    theirs.register(free_udp_port()).expect_success()


def test_a_customer_hangs_up_its_own_call_and_no_one_else_s(
    api, tenants, as_token, make_line, answering_line, control_service, wait_until
):
    own, other = tenants
    mine = as_token(issue(api, "customer", own.id))
    theirs = as_token(issue(api, "customer", other.id))
    target_line, target = answering_line()
    _, caller = make_line("caller")
    running = caller.call(target.username, hold_ms=60_000, timeout_s=90)
    try:
        wait_until(lambda: api.get(f"/v1/lines/{target_line['id']}/calls").json(), 15, "a call")
        (call,) = mine.get(f"/v1/lines/{target_line['id']}/calls").json()
        assert theirs.delete(f"/v1/calls/{call['id']}").status_code == 404
        assert mine.delete(f"/v1/calls/{call['id']}").status_code == 204
        wait_until(
            lambda: api.get(f"/v1/lines/{target_line['id']}/calls").json() == [], 15, "hung up"
        )
    finally:
        running.process.kill()
        running.process.wait()


def test_restrictions_and_renewals_name_the_token_that_acted(api, tenants, as_token):
    own, _ = tenants
    noc = issued(api, "operator")
    lifter = issued(api, "operator")
    line = own.line["id"]
    body = {"level": "national_only", "reason": "a test", "actor": "claims to be the CEO"}
    made = as_token(noc["token"]).post(f"/v1/lines/{line}/restrictions", json=body)
    assert made.status_code == 201, made.text
    lifted = as_token(lifter["token"]).post(f"/v1/restrictions/{made.json()['id']}/lift", json=WHO)
    assert lifted.status_code == 200, lifted.text
    (row,) = [r for r in api.get(f"/v1/lines/{line}/restrictions").json()
              if r["id"] == made.json()["id"]]  # fmt: skip
    assert (row["principal"], row["principal_token_id"]) == (noc["name"], noc["id"])
    assert row["actor"] == "claims to be the CEO"  # a note, not the identity
    assert (row["lifted_by_principal"], row["lifted_by_principal_token_id"]) == (
        lifter["name"], lifter["id"],
    )  # fmt: skip
    customer = issued(api, "customer", own.id)
    renewed = as_token(customer["token"]).post(f"/v1/lines/{line}/credentials", json=WHO)
    assert renewed.json()["renewal"]["principal"] == customer["name"]
    assert renewed.json()["renewal"]["principal_token_id"] == customer["id"]


def test_token_issue_and_revoke_are_audited_without_the_secret(api, database_url):
    row = issued(api, "operator:read")
    assert api.delete(f"/v1/tokens/{row['id']}").status_code == 204
    entries = api.get("/v1/audit", params={"object_type": "token", "object_id": row["id"]})
    assert entries.status_code == 200, entries.text
    changes = [(e["change"], e["operation"]) for e in entries.json()["items"]]
    assert changes == [("created", "POST /v1/tokens"), ("updated", "DELETE /v1/tokens/{token_id}")]
    secret = row["token"].split("_", 2)[2]  # the secret itself may contain "_"
    stored = sql(database_url, "SELECT before::text, after::text, withheld::text FROM audit_log")
    assert all(secret not in str(tuple(r)) for r in stored)
    assert all(tokens_hash(secret) not in str(tuple(r)) for r in stored)
