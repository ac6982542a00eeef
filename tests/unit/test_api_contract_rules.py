"""The rules behind an honest OpenAPI document: strict input types (centrex/api/fields.py), the
error responses each operation documents (centrex/api/openapi.py), 405's Allow
(centrex/api/methods.py). The live API against its document: tests/test_openapi_contract.py."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from centrex.api.methods import allowed_methods, path_methods
from centrex.api.openapi import errors_of
from centrex.api.schemas import ChangeIn, CustomerPatch, DestinationIn, LineIn, LinePatch, TrunkIn
from centrex.core.bulk_rows import check_rows

pytestmark = pytest.mark.unit

CUSTOMER = str(uuid.uuid4())


@pytest.mark.parametrize("value", ["2", True, None])
def test_an_integer_is_a_json_integer(value):
    body = {"customer_id": CUSTOMER, "label": "x", "max_call_duration_s": value}
    if value is None:  # null: the default, as documented
        assert LineIn.model_validate(body).max_call_duration_s is None
        return
    with pytest.raises(ValidationError) as refused:
        LineIn.model_validate(body)
    assert refused.value.errors()[0]["loc"] == ("max_call_duration_s",)


def test_an_integral_float_is_an_integer_as_json_schema_says():
    body = {"customer_id": CUSTOMER, "label": "x", "max_calls": 3.0}
    assert LineIn.model_validate(body).max_calls == 3


def test_a_csv_cell_is_text_and_still_a_number():
    rows = [{"customer_id": CUSTOMER, "label": "x", "max_calls": "3"}]
    assert check_rows(rows, LineIn, text_cells=True).rows[0].max_calls == 3
    refused = check_rows(rows, LineIn)  # a JSON array's "3" is text, as in POST /v1/lines
    assert [(e.row, e.field) for e in refused.errors] == [(1, "max_calls")]


@pytest.mark.parametrize("value", [0, 1, "true"])
def test_a_boolean_is_true_or_false(value):
    with pytest.raises(ValidationError):
        CustomerPatch.model_validate({"documents_verified": value})
    assert CustomerPatch.model_validate({"documents_verified": False}).documents_verified is False


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (LinePatch, {"label": None}, "label"),
        (LinePatch, {"extension": None}, "extension"),
        (CustomerPatch, {"name": None}, "name"),
    ],
)
def test_null_is_refused_where_it_means_nothing(model, body, field):
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    assert refused.value.errors()[0]["loc"][0] == field
    properties = model.model_json_schema()["properties"][field]
    assert "anyOf" not in properties and "default" not in properties, properties
    assert model.model_validate({}).model_fields_set == set()  # omitted: nothing changes


def test_text_is_bounded_as_sent_and_never_blank():
    reason = ChangeIn.model_json_schema()["properties"]["reason"]
    assert reason["maxLength"] == 1000 and "pattern" in reason
    for refused in (" " + "r" * 1000, "   ", "nul\x00"):
        with pytest.raises(ValidationError):
            ChangeIn.model_validate({"actor": "a", "reason": refused})
    assert ChangeIn.model_validate({"actor": "a", "reason": "  why  "}).reason == "why"


def test_what_goes_together_is_in_the_schema():
    assert DestinationIn.model_json_schema()["oneOf"] == [
        {"required": ["line_id"]}, {"required": ["ring_group_id"]}]  # fmt: skip
    assert "anyOf" in TrunkIn.model_json_schema()
    with pytest.raises(ValidationError):
        TrunkIn.model_validate({"name": "t", "host": "h", "username": "u"})


def _statuses(method: str, path: str, operation: dict | None = None) -> set[str]:
    return set(errors_of(method, path, operation or {}))


def test_each_operation_documents_the_errors_it_can_give():
    body = {"requestBody": {}}
    assert _statuses("post", "/v1/customers", body) == {
        "400", "401", "403", "409", "413", "422", "429", "503"}  # fmt: skip
    # A customer token may read its lines: no 403; a path id: 404; no body: no 413.
    read = {"parameters": [{"name": "line_id", "in": "path"}]}
    assert _statuses("get", "/v1/lines/{line_id}", read) == {
        "400", "401", "404", "422", "429", "503"}  # fmt: skip
    assert "409" not in _statuses("get", "/v1/trunks")
    assert _statuses("get", "/health/live") == {"400"}  # no token, no rate limit


def test_405_lists_every_method_of_the_path_a_fixed_path_first():
    paths = path_methods({"paths": {
        "/v1/lines": {"get": {}, "post": {}},
        "/v1/lines/import": {"post": {}},
        "/v1/lines/{line_id}": {"get": {}, "patch": {}, "delete": {}},
    }})  # fmt: skip
    assert allowed_methods(paths, "/v1/lines") == {"GET", "HEAD", "POST"}
    assert allowed_methods(paths, "/v1/lines/import") == {"POST"}
    assert allowed_methods(paths, "/v1/lines/abc") == {"GET", "HEAD", "PATCH", "DELETE"}
    assert allowed_methods(paths, "/v1/lines/abc/more") is None  # not ours: 404 as before
