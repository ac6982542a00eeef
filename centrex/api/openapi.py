"""The OpenAPI document tells the truth: every operation lists the errors it can answer.

FastAPI documents what a route returns and its 422; the rest of the errors come from elsewhere
(the middlewares of centrex/api/limits.py and centrex/access/middleware.py, the exception
handlers of centrex/api/app.py, the services' ServiceError). They are added here, in one place,
from what each route is: 401/429/503 on everything under /v1/, 403 where a scope can forbid
(centrex/access/rules.py), 404 where the path or ``customer_id`` names an object, 409 where a
conflict can arise (CONFLICTS), 413 where there is a body. Rules a schema cannot express (an
unknown id in a body, ``until`` after ``since``, a number that is not a French one...) are
named in DEEPER_RULES and written into the operation's 400/422 description.

tests/test_openapi_contract.py holds the API to this document with schemathesis.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from centrex.access.rules import CUSTOMER_ROUTES, OPERATOR_ONLY_PREFIXES, READ_METHODS

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

ERROR = "#/components/schemas/Error"
ERROR_SCHEMAS: dict[str, Any] = {
    "Error": {
        "title": "Error",
        "type": "object",
        "description": "Every error of this API: `detail` is a sentence, or a list naming each "
        "refused field (FastAPI's shape for validation errors). A refused import adds "
        "`error_count` and `errors` (one per bad row).",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/ErrorItem"}},
                ]
            },
            "error_count": {"type": "integer"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "field", "msg"],
                    "properties": {
                        "row": {"type": "integer"},
                        "field": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "msg": {"type": "string"},
                    },
                },
            },
        },
    },
    "ErrorItem": {
        "title": "ErrorItem",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {
                "type": "string",
                "description": "not_found, conflict, forbidden, unknown_reference, invalid, "
                "invalid_file, or one of pydantic's (missing, extra_forbidden, ...)",
            },
        },
    },
}

#: Where a 409 can arise, and why.
CONFLICTS: dict[tuple[str, str], str] = {
    ("POST", "/v1/customers"): "the external_ref is already a customer's",
    ("POST", "/v1/customers/import"): "an external_ref was taken while importing",
    ("POST", "/v1/lines"): "the extension is taken in this customer",
    ("PATCH", "/v1/lines/{line_id}"): "the extension is taken, or the main number is another "
    "line's or an alias",
    ("POST", "/v1/lines/{line_id}/credentials"): "another renewal of the line at the same time",
    ("POST", "/v1/ring-groups"): "the extension is taken in this customer",
    ("PATCH", "/v1/ring-groups/{ring_group_id}"): "the extension is taken in this customer",
    ("DELETE", "/v1/ring-groups/{ring_group_id}"): "an alias number still rings the group",
    ("POST", "/v1/number-blocks"): "numbers of the range are already in the inventory",
    ("POST", "/v1/numbers/allocate"): "the number asked for is not free, or none is",
    ("POST", "/v1/numbers/{number}/release"): "the number is not assigned",
    ("PUT", "/v1/numbers/{number}/destination"): "the number is not assigned, or is a line's "
    "main number",
    ("POST", "/v1/destinations"): "the destination is already on the list",
    ("POST", "/v1/destinations/{code}/suspend"): "the destination is already suspended",
    ("POST", "/v1/restrictions/{restriction_id}/lift"): "the restriction is already lifted",
    ("POST", "/v1/trunks"): "a trunk of that name exists",
    ("DELETE", "/v1/calls/{call_id}"): "the call is on another node",
    # Billing (docs/billing.md).
    ("POST", "/v1/billing/plans"): "the plan changed meanwhile, or a version starts that day",
    ("POST", "/v1/billing/subscriptions"): "the customer has a subscription on these days",
    ("POST", "/v1/billing/invoice-runs"): "documents are already issued on a later day "
    "(numbering is chronological)",
    ("POST", "/v1/billing/mandates"): "the mandate reference exists",
    ("POST", "/v1/billing/interim-runs"): "documents are already issued on a later day "
    "(numbering is chronological)",
    ("POST", "/v1/billing/reference-rates"): "a rate of that kind from that day exists",
    ("POST", "/v1/billing/items"): "the item changed meanwhile, or a version starts that day",
    ("POST", "/v1/billing/item-subscriptions/{subscription_id}/end"): "it has ended already",
    ("POST", "/v1/billing/bank-files"): "the file was imported before, or an entry was already "
    "booked by an earlier file",
    ("POST", "/v1/billing/disputes/{dispute_id}/resolution"): "the dispute is already resolved, "
    "or a document is issued on a later day",
    # Contracts (docs/contracts.md).
    ("POST", "/v1/contracts"): "the customer already has a contract in force",
    ("POST", "/v1/contracts/{contract_id}/notice"): "the contract is already ending or ended",
    ("POST", "/v1/contracts/{contract_id}/early-termination"): "the contract is already ending "
    "or ended; the special termination (ground interruption) without 30 consecutive days of "
    "interruption attributable to the operator (art. 10)",
    ("POST", "/v1/equipment"): "a device with this serial or MAC is in the ledger",
    ("POST", "/v1/equipment/{equipment_id}/return"): "the device was already returned",
    ("POST", "/v1/customers/{customer_id}/erasure"): "a contract is in force, or lines are",
    ("POST", "/v1/interruptions/{interruption_id}/end"): "the interruption has already ended",
    ("POST", "/v1/contracts/{contract_id}/changes"): "the contract is ending or ended",
    ("POST", "/v1/equipment/{equipment_id}/condition"): "the device is not returned, or its "
    "condition already checked, or the 45 days of the check are over (art. 12)",
    ("POST", "/v1/equipment/{equipment_id}/repairs"): "the device is not in service; the "
    "replacement's serial or MAC is in the ledger",
    ("POST", "/v1/equipment/{equipment_id}/repairs/{repair_id}/decision"): "the quote is "
    "already decided; the replacement's serial or MAC is in the ledger",
    ("GET", "/v1/equipment/{equipment_id}/provisioning"): "the device is tied to no line in "
    "service",
    ("GET", "/v1/numbers/{number}/directory"): "the number is not assigned to a customer",
    ("PUT", "/v1/numbers/{number}/directory"): "the number is not assigned to a customer",
}

#: Rules a schema-valid request can still break, that no JSON schema can say: (the statuses
#: they answer, what they are). tests/test_openapi_contract.py accepts these statuses for
#: schema-valid requests on these operations only.
DEEPER_RULES: dict[tuple[str, str], tuple[frozenset[int], str]] = {
    ("GET", "/v1/lines"): (frozenset({400}), "a cursor this API never issued"),
    ("GET", "/v1/audit"): (
        frozenset({400}), "a cursor this API never issued; until before since"),
    ("GET", "/v1/cdrs"): (
        frozenset({400}), "a cursor this API never issued; until before since; number is not a "
        "telephone number"),
    ("GET", "/v1/cdrs.csv"): (
        frozenset({400}), "until before since; number is not a telephone number"),
    ("GET", "/v1/lines/{line_id}/usage"): (frozenset({400}), "until before since"),
    ("POST", "/v1/lines"): (frozenset({422}), "customer_id names no customer"),
    ("PATCH", "/v1/lines/{line_id}"): (
        frozenset({400}), "main_number is not a number assigned to the line's customer"),
    ("POST", "/v1/ring-groups"): (
        frozenset({400, 422}), "customer_id or a member names nothing; a member is another "
        "customer's line, or appears twice"),
    ("PATCH", "/v1/ring-groups/{ring_group_id}"): (
        frozenset({400, 422}), "a member names no line, is another customer's, or appears twice"),
    ("POST", "/v1/tokens"): (
        frozenset({400, 422}), "customer_id is given for an operator scope or missing for a "
        "customer one, or names no customer; expires_at is past"),
    ("POST", "/v1/number-blocks"): (
        frozenset({400}), "first and last are not French numbers of one kind and zone, in order, "
        "at most 10,000 apart"),
    ("POST", "/v1/number-tier-rules"): (
        frozenset({400}), "pattern is not a regular expression, or matches every number"),
    ("POST", "/v1/numbers/allocate"): (
        frozenset({400, 422}), "customer_id names no customer, or one not residing in "
        "metropolitan France with verified documents; the kind or zone is not allocatable; "
        "number is not a free Silver or Gold number of the inventory"),
    ("GET", "/v1/numbers/{number}"): (frozenset({400}), "number is not a French number"),
    ("POST", "/v1/numbers/{number}/release"): (frozenset({400}), "number is not a French number"),
    ("PUT", "/v1/numbers/{number}/destination"): (
        frozenset({400, 422}), "number is not a French number; the line or group names "
        "nothing, or another customer's"),
    ("DELETE", "/v1/numbers/{number}/destination"): (
        frozenset({400}), "number is not a French number"),
    ("PATCH", "/v1/lines/{line_id}/voicemail"): (
        frozenset({400}), "enabled is null; pin is one digit repeated or a run of consecutive "
        "digits"),
    ("PUT", "/v1/lines/{line_id}/voicemail/greeting"): (
        frozenset({400}), "the body is not an 8000 Hz 16-bit mono PCM WAV, or is shorter than "
        "0.5 s or longer than CENTREX_VOICEMAIL_MAX_GREETING_S"),
    ("PUT", "/v1/customers/{customer_id}/music-on-hold"): (
        frozenset({400}), "the body is not an 8000 Hz 16-bit mono PCM WAV, or is shorter than "
        "1 s, longer than CENTREX_MOH_MAX_S or larger than CENTREX_MOH_MAX_BYTES"),
    ("GET", "/v1/lines/{line_id}/voicemails/{msg_id}"): (
        frozenset({400}), "msg_id is not a message id"),
    ("DELETE", "/v1/lines/{line_id}/voicemails/{msg_id}"): (
        frozenset({400}), "msg_id is not a message id"),
    ("POST", "/v1/lines/import"): (
        frozenset({422}), "the file cannot be read (CSV or a JSON array), or a row breaks the "
        "rules of POST /v1/lines: every bad row is named in `errors`"),
    ("POST", "/v1/customers/import"): (
        frozenset({422}), "the file cannot be read (CSV or a JSON array), or a row breaks the "
        "rules of POST /v1/customers: every bad row is named in `errors`"),
    # Line features (issue 15, docs/features.md).
    ("PATCH", "/v1/lines/{line_id}/features"): (
        frozenset({422}), "a forward target the line may not use: an emergency number, an "
        "extension its customer does not have, the line itself, a number it may not call "
        "(premium, unlisted or suspended destination, a restricted line, no number of its own)"),
    # Portability (issue 16, docs/portability.md).
    ("GET", "/v1/numbers/{number}/rio"): (frozenset({400}), "number is not a French number"),
    ("POST", "/v1/port-ins"): (
        frozenset({400, 422}), "number is not a French number; requested_date is more than 60 "
        "days ahead; not exactly one of line_id and ring_group_id; customer_id, line_id or "
        "ring_group_id names nothing in that customer"),
    ("POST", "/v1/port-outs"): (
        frozenset({400}), "number is not a French number; requested_date or slot_start is past "
        "or more than 60 days ahead"),
    # Billing (docs/billing.md).
    ("POST", "/v1/billing/plans"): (
        frozenset({400}), "a prefix appears twice; a new version starts in the past"),
    ("POST", "/v1/billing/subscriptions"): (
        frozenset({400, 422}), "customer_id or plan_code names nothing; ends_on before starts_on"),
    ("POST", "/v1/billing/invoice-runs"): (
        frozenset({400}), "the month has not ended yet"),
    ("POST", "/v1/billing/mandates"): (
        frozenset({400, 422}), "customer_id names no customer; the IBAN or BIC is not a valid "
        "one, or not of one country; the reference is not a SEPA mandate reference"),
    ("POST", "/v1/billing/sepa-collections"): (
        frozenset({400}), "no SEPA creditor is configured"),
    ("POST", "/v1/billing/payments"): (frozenset({422}), "invoice_id names no invoice"),
    ("POST", "/v1/billing/bank-files"): (
        frozenset({400, 422}), "the body is not a pain.002.001.11 or camt.054.001.08 file valid "
        "against its XSD (or has a DOCTYPE); an entry's amount differs from the debit's (400); "
        "an end-to-end id or mandate names no debit of ours (422)"),
    ("POST", "/v1/invoices/{invoice_id}/disputes"): (
        frozenset({400}), "received more than 30 days after the invoice; no line at that VAT "
        "rate; more than is left to dispute"),
    ("POST", "/v1/billing/disputes/{dispute_id}/resolution"): (
        frozenset({400}), "resolved_on before the dispute was received"),
    ("POST", "/v1/billing/service-credits"): (
        frozenset({400, 422}), "customer_id names no customer; granted_on in the future"),
    ("POST", "/v1/billing/items"): (frozenset({400}), "a new version starts in the past"),
    ("POST", "/v1/billing/item-subscriptions"): (
        frozenset({400, 422}), "customer_id or item_code names nothing; starts_on before the "
        "item's first price; ends_on before starts_on"),
    ("POST", "/v1/billing/item-subscriptions/{subscription_id}/end"): (
        frozenset({400}), "ends_on before the subscription's start"),
    ("POST", "/v1/billing/reratings"): (
        frozenset({400, 422}), "customer_id names no customer; to_month before from_month or a "
        "month to come"),
    # Contracts (docs/contracts.md).
    ("POST", "/v1/contracts"): (
        frozenset({400, 422}), "customer_id names no customer; accepted_at in the future"),
    ("POST", "/v1/contracts/{contract_id}/notice"): (
        frozenset({400}), "received_on in the future, or too late for the term (the message "
        "names the day it needed)"),
    ("POST", "/v1/contracts/{contract_id}/early-termination"): (
        frozenset({400}), "effective_on in the past, or on or after the term (a notice then); "
        "the special termination asked by the operator"),
    ("POST", "/v1/equipment"): (
        frozenset({422}), "customer_id names no customer, line_id no line of it"),
    ("POST", "/v1/equipment/{equipment_id}/return"): (
        frozenset({400}), "returned_on before the device was provided, or in the future"),
    ("POST", "/v1/interruptions"): (
        frozenset({400, 422}), "customer_id names no customer, line_ids lines of another; "
        "started_at in the future; ended_at not after started_at or in the future"),
    ("POST", "/v1/interruptions/{interruption_id}/end"): (
        frozenset({400}), "ended_at not after started_at, or in the future"),
    ("POST", "/v1/contracts/{contract_id}/changes"): (
        frozenset({400, 422}), "a tariff change without plan_code or naming no plan; "
        "plan_code on a conditions change"),
    ("POST", "/v1/equipment/{equipment_id}/condition"): (
        frozenset({400}), "checked_on before the return or in the future"),
    ("POST", "/v1/equipment/{equipment_id}/repairs"): (
        frozenset({400}), "reported_on before the device was provided or in the future; no "
        "quote_cents when the warranty does not cover it; an exchange without the "
        "replacement's serial and MAC"),
    ("POST", "/v1/equipment/{equipment_id}/repairs/{repair_id}/decision"): (
        frozenset({400}), "decided_on before the report or in the future; an accepted "
        "exchange without the replacement's serial and MAC"),
    ("GET", "/v1/numbers/{number}/directory"): (frozenset({400}), "number is not a French "
                                                "number"),
    ("PUT", "/v1/numbers/{number}/directory"): (frozenset({400}), "number is not a French "
                                                "number"),
}  # fmt: skip


def _error(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR}}},
    }
    if headers:
        response["headers"] = {
            name: {"description": why, "schema": {"type": "string"}}
            for name, why in headers.items()
        }
    return response


def _may_forbid(method: str, path: str) -> bool:
    """Whether some scope is refused this operation (centrex.access.rules.may_call)."""
    customer_reads = method in READ_METHODS and (method, path) in CUSTOMER_ROUTES
    return not (customer_reads and not path.startswith(OPERATOR_ONLY_PREFIXES))


def errors_of(method: str, path: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The error responses ``method path`` can give, from what it is."""
    method = method.upper()
    deeper = DEEPER_RULES.get((method, path), (frozenset(), ""))[1]
    has_body = "requestBody" in operation
    params = operation.get("parameters", [])
    out = {
        "400": _error(
            "A malformed request: a Content-Length that is not one number"
            + (", a body that is not JSON" if has_body else "")
            + (f"; or: {deeper}" if deeper else "")
        )
    }
    if not path.startswith("/v1/"):
        return out
    out["401"] = _error(
        "No bearer token, or a malformed, unknown, revoked or expired one.",
        **{"WWW-Authenticate": "Bearer"},
    )
    if _may_forbid(method, path):
        out["403"] = _error("The token's scope may not do this (or change this field).")
    names_object = "{" in path or any(p.get("name") == "customer_id" for p in params)
    if names_object:
        out["404"] = _error(
            "The object named in the path (or customer_id) does not exist, or is another "
            "customer's (a customer token)."
        )
    if (method, path) in CONFLICTS:
        out["409"] = _error(f"Conflict: {CONFLICTS[(method, path)]}.")
    if has_body:
        out["413"] = _error("The body is larger than the API accepts.")
    if has_body or params:
        out["422"] = _error(
            "A value is missing, of the wrong type, out of range or unknown (named in `loc`)"
            + (f"; or: {deeper}" if deeper else "")
            + "."
        )
    out["429"] = _error("Too many requests with this token.", **{"Retry-After": "Seconds to wait."})
    out["503"] = _error(
        "The token could not be checked (database), or Asterisk is unreachable where the "
        "request cannot proceed without it; nothing was done."
    )
    return out


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses to every operation of ``schema`` (FastAPI's document)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(ERROR_SCHEMAS)
    # FastAPI's own 422 schemas are replaced by Error (the same shape, and the one parsed).
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if (operation := item.get(method)) is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, response in errors_of(method, path, operation).items():
                responses.setdefault(status, response)
    return schema


def install(app: FastAPI) -> None:
    """``app.openapi()`` (``/openapi.json``, ``/docs``) answers the document with its errors."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
