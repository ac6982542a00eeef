"""Bad input gets a 4xx naming the field and the problem, and changes nothing."""

from __future__ import annotations

import uuid

import httpx
import pytest
from helpers import provisioned_keys

from centrex.sandbox.asterisk import AsteriskSandbox

pytestmark = pytest.mark.integration


def line_count(api: httpx.Client) -> int:
    return len(api.get("/v1/lines", params={"limit": 1000}).json()["items"])


def locs(response: httpx.Response) -> list[list]:
    return [e["loc"] for e in response.json()["detail"]]


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    response = api.post("/v1/customers", json={"name": "Input Checks", "external_ref": "ACC-1"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def unchanged(api: httpx.Client, asterisk: AsteriskSandbox, customer: dict):
    """Asserts, after the test, that neither the database nor Asterisk changed."""
    before_lines, before_keys = line_count(api), provisioned_keys(asterisk)
    yield
    assert line_count(api) == before_lines
    assert provisioned_keys(asterisk) == before_keys


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"label": "x"}, "customer_id", "missing"),
        ({"customer_id": "not-a-uuid", "label": "x"}, "customer_id", "uuid_parsing"),
        ({"customer_id": None, "label": "x"}, "customer_id", "uuid_type"),
        ({"customer_id": "@C", "label": ""}, "label", "string_too_short"),
        ({"customer_id": "@C", "label": 12}, "label", "string_type"),
        ({"customer_id": "@C", "label": "x", "max_calls": 0}, "max_calls", "greater_than_equal"),
        ({"customer_id": "@C", "label": "x", "max_calls": "two"}, "max_calls", "int_type"),
        # JSON's integers only, as the schema says: not text that reads as one, nor a boolean.
        ({"customer_id": "@C", "label": "x", "max_calls": "2"}, "max_calls", "int_type"),
        ({"customer_id": "@C", "label": "x", "max_calls": True}, "max_calls", "int_type"),
        ({"customer_id": "@C", "label": "  "}, "label", "string_too_short"),
        ({"customer_id": "@C", "label": "x", "lable": "y"}, "lable", "extra_forbidden"),
    ],
)
def test_invalid_line_body_names_the_field(api, customer, unchanged, body, field, problem):
    body = {k: (customer["id"] if v == "@C" else v) for k, v in body.items()}
    response = api.post("/v1/lines", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == ["body", field] and e["type"] == problem for e in errors), errors


def test_unknown_customer_is_named(api, unchanged):
    missing = str(uuid.uuid4())
    response = api.post("/v1/lines", json={"customer_id": missing, "label": "x"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "customer_id"]
    assert missing in error["msg"]


def test_malformed_json(api, unchanged):
    response = api.post(
        "/v1/lines", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_duplicate_customer_reference_conflicts(api, customer):
    response = api.post("/v1/customers", json={"name": "Again", "external_ref": "ACC-1"})
    assert response.status_code == 409
    assert locs(response) == [["body", "external_ref"]]


def test_customer_name_required(api):
    response = api.post("/v1/customers", json={"name": "   "})
    assert response.status_code == 422
    assert locs(response) == [["body", "name"]]


def test_unknown_ids_are_404_and_bad_ids_422(api):
    assert api.get(f"/v1/customers/{uuid.uuid4()}").status_code == 404
    assert api.get(f"/v1/lines/{uuid.uuid4()}").status_code == 404
    assert api.delete(f"/v1/lines/{uuid.uuid4()}").status_code == 404
    response = api.get("/v1/lines/12")
    assert response.status_code == 422 and locs(response) == [["path", "line_id"]]
    response = api.get("/v1/lines", params={"cursor": "garbage!"})
    assert response.status_code == 400 and locs(response) == [["query", "cursor"]]
    response = api.get("/v1/lines", params={"limit": 0})
    assert response.status_code == 422 and locs(response) == [["query", "limit"]]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdA==", "Bearer"])
def test_operator_token_required(api, header, unchanged, customer):
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=str(api.base_url), headers=headers) as anonymous:
        response = anonymous.post("/v1/lines", json={"customer_id": customer["id"], "label": "x"})
        assert response.status_code == 401
        assert anonymous.get("/v1/lines").status_code == 401


def test_pagination_walks_every_line_once(api, customer):
    other = api.post("/v1/customers", json={"name": "Paginated"}).json()
    created = {
        api.post("/v1/lines", json={"customer_id": other["id"], "label": f"l{i}"}).json()["id"]
        for i in range(5)
    }
    seen, cursor = [], None
    while True:
        params = {"customer_id": other["id"], "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/lines", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(created) and len(seen) == 5
