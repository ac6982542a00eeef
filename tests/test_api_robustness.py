"""A 500 is a bug: every operation of the API, fed hostile input, answers 4xx.

The operations and their bodies' fields come from the API's own OpenAPI document, so a new
route or field is covered without editing this file. Each field of a body that would otherwise
pass gets, one at a time, values of the wrong type, out of range, too long, with a NUL byte
(which PostgreSQL refuses in text), and so on; every path parameter gets ids that are
malformed or unknown.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import sql

from centrex.config import Settings

pytestmark = pytest.mark.integration

HOSTILE_VALUES: list[Any] = [
    None, True, -1, 0, 2**31, 2**63, 10**30, 1.5, "", " ", "y" * 150, "z" * 250, "x" * 10_000,
    "nul\u0000byte", "💥", "'; DROP TABLE lines; --", "(((", "+", "0" * 40, [], {}, ["a"], {"a": 1},
]  # fmt: skip
HOSTILE_IDS = [
    "not-an-id", "0" * 40, "-1", "99999999999999999999999", "%00", "x" * 3000, "💥",
    str(uuid.uuid4()), "+33", "33-premium", "..",
]  # fmt: skip
HOSTILE_RAW_BODIES = [b"{", b"[]", b"null", b'"text"', b"{}", b"\xff\xfe", b'{"a": NaN}']


@pytest.fixture(scope="module")
def known(api: httpx.Client) -> dict[str, str]:
    """Real objects, so hostile bodies reach the services instead of stopping at a 404."""
    customer = api.post("/v1/customers", json={"name": "Robustness"}).json()
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "fuzz"}).json()
    group = api.post(
        "/v1/ring-groups",
        json={"customer_id": customer["id"], "name": "fuzz", "strategy": "hunt",
              "members": [line["id"]]},
    ).json()  # fmt: skip
    return {"customer": customer["id"], "line": line["id"], "ring_group": group["id"]}


def valid_bodies(known: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """A body that passes, per operation, for those that need more than their hostile field."""
    change = {"actor": "fuzzer", "reason": "robustness test"}
    return {
        ("post", "/v1/customers"): {"name": "fuzz"},
        ("patch", "/v1/customers/{customer_id}"): {"name": "fuzz"},
        ("post", "/v1/lines"): {"customer_id": known["customer"], "label": "fuzz"},
        ("patch", "/v1/lines/{line_id}"): {"label": "fuzz"},
        ("post", "/v1/ring-groups"): {
            "customer_id": known["customer"],
            "name": "fuzz",
            "strategy": "ring_all",
            "members": [known["line"]],
        },
        ("patch", "/v1/ring-groups/{ring_group_id}"): {"name": "fuzz"},
        ("post", "/v1/trunks"): {"name": "fuzz", "host": "127.0.0.9"},
        ("put", "/v1/numbers/{number}/destination"): {"line_id": known["line"]},
        ("post", "/v1/lines/{target_id}/restrictions"): {"level": "national_only", **change},
        ("post", "/v1/customers/{target_id}/restrictions"): {"level": "national_only", **change},
        ("post", "/v1/restrictions/{restriction_id}/lift"): change,
        ("post", "/v1/destinations/{code}/suspend"): change,
        ("post", "/v1/destinations/{code}/resume"): change,
        # Platform-wide objects that other tests rely on: bodies the services refuse after
        # pydantic let them through (a reversed range, a regex that does not compile, a
        # customer that does not exist), so no mutation of one field creates anything.
        ("post", "/v1/number-blocks"): {"first": "0199000009", "last": "0199000000"},
        ("post", "/v1/number-tier-rules"): {
            "tier": "gold",
            "name": "fuzz",
            "pattern": "(((",
            "monthly_fee_cents": 100,
        },
        ("post", "/v1/numbers/allocate"): {"customer_id": str(uuid.uuid4()), "kind": "geographic"},
        ("post", "/v1/destinations"): {"code": "998", "name": "fuzz"},
    }


def real_path_value(name: str, known: dict[str, str]) -> str:
    return {
        "customer_id": known["customer"], "line_id": known["line"],
        "ring_group_id": known["ring_group"], "target_id": known["line"],
    }.get(name, str(uuid.uuid4()))  # fmt: skip


def schema_fields(spec: dict, ref: dict | None) -> list[str]:
    if not ref or "$ref" not in ref:
        return []
    schema = spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
    return list(schema.get("properties", {}))


def hostile_requests(
    spec: dict, known: dict[str, str]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    bodies = valid_bodies(known)
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            path_params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            query_params = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            body_ref = (
                op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ).get("schema")
            real_path = path.format(**{n: real_path_value(n, known) for n in path_params})
            # Every path parameter hostile (deletes only ever reach unknown or malformed ids).
            for bad in HOSTILE_IDS:
                target = path.format(**{n: bad.replace("/", "_") for n in path_params})
                if path_params:
                    yield method, target, {"json": bodies.get((method, path), {})}
            for name in query_params:
                for bad in HOSTILE_VALUES:
                    value = json.dumps(bad) if not isinstance(bad, str) else bad
                    yield method, real_path, {"params": {name: value}}
            if body_ref is None or method == "delete":
                continue
            for raw in HOSTILE_RAW_BODIES:
                headers = {"content-type": "application/json"}
                yield method, real_path, {"content": raw, "headers": headers}
            base = bodies.get((method, path), {})
            for field in [*schema_fields(spec, body_ref), "unknown_field"]:
                for bad in HOSTILE_VALUES:
                    yield method, real_path, {"json": {**base, field: bad}}


@pytest.fixture
def platform_restored(api: httpx.Client, settings: Settings) -> Iterator[None]:
    """Trunks, destinations and tier rules are platform-wide: what the test created goes."""

    url = settings.database_url_required

    def snapshot() -> tuple[set[str], set[str], set[str], int]:
        trunks = {t["id"] for t in api.get("/v1/trunks").json()}
        destinations = {d["code"] for d in api.get("/v1/destinations").json()}
        rules = {r["id"] for r in sql(url, "SELECT id::text AS id FROM number_tier_rules")}
        (numbers,) = sql(url, "SELECT count(*) AS n FROM numbers")
        return trunks, destinations, rules, numbers["n"]

    trunks, destinations, rules, numbers = snapshot()
    try:
        yield
    finally:
        after = snapshot()
        for trunk_id in after[0] - trunks:
            api.delete(f"/v1/trunks/{trunk_id}")
        for code in after[1] - destinations:
            api.delete(f"/v1/destinations/{code}")
        if after[2] - rules:
            sql(
                url,
                "DELETE FROM number_tier_rules WHERE id::text = ANY($1)",
                list(after[2] - rules),
            )
    assert after[3] == numbers, "the test must not create or remove numbers"


def test_no_input_makes_the_api_fail_with_a_500(
    api: httpx.Client, known: dict[str, str], platform_restored
):
    spec = api.get("/openapi.json").json()
    failures: list[str] = []
    tried = 0
    for method, path, kwargs in hostile_requests(spec, known):
        if method == "delete" and any(known_id in path for known_id in known.values()):
            continue
        tried += 1
        sent = kwargs.get("json", kwargs.get("params", kwargs.get("content")))
        try:
            response = api.request(method.upper(), path, **kwargs)
        except httpx.TransportError as exc:
            failures.append(f"{method.upper()} {path[:80]} {str(sent)[:120]} -> {exc!r}")
            continue
        if response.status_code >= 500:
            failures.append(
                f"{method.upper()} {path[:80]} {str(sent)[:120]} -> "
                f"{response.status_code} {response.text[:160]}"
            )
        elif response.status_code >= 400:
            detail = response.json().get("detail")
            assert detail, f"{method.upper()} {path}: a 4xx must say why: {response.text[:200]}"
    assert tried > 1000, tried
    assert not failures, f"{len(failures)} of {tried} requests got a 5xx:\n" + "\n".join(
        failures[:40]
    )
