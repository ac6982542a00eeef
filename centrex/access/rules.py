"""What each scope may do: the one place it is decided.

- ``operator``: everything.
- ``operator:read``: every GET, nothing else.
- ``customer``: the routes of CUSTOMER_ROUTES, on its own customer's objects only (the routes
  check ownership with :func:`sees`: another customer's object answers 404, exactly like one
  that does not exist), and on the routes of CUSTOMER_FIELDS only those fields.

A route in none of these tables is the operator's: a new route is closed to customers until
it is added here (tests/test_access.py lists every route of the app against these rules).
"""

from __future__ import annotations

import uuid

from centrex.access.principal import Principal

READ_METHODS = frozenset({"GET", "HEAD"})

#: (method, route path) a customer token may call, on its own objects.
CUSTOMER_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/v1/customers/{customer_id}"),
        # Its lines: read, label, credential renewal (contract art. 16-17), calls in progress.
        ("GET", "/v1/lines"),
        ("GET", "/v1/lines/{line_id}"),
        ("PATCH", "/v1/lines/{line_id}"),
        ("POST", "/v1/lines/{line_id}/credentials"),
        ("GET", "/v1/lines/{line_id}/credential-renewals"),
        ("GET", "/v1/lines/{line_id}/calls"),
        ("DELETE", "/v1/calls/{call_id}"),
        # Its lines' forwarding, do-not-disturb and privacy (what a line sets with feature codes).
        ("GET", "/v1/lines/{line_id}/features"),
        ("PATCH", "/v1/lines/{line_id}/features"),
        # Its lines' voicemail: settings, greeting, messages (issue 15).
        ("GET", "/v1/lines/{line_id}/voicemail"),
        ("PATCH", "/v1/lines/{line_id}/voicemail"),
        ("PUT", "/v1/lines/{line_id}/voicemail/greeting"),
        ("DELETE", "/v1/lines/{line_id}/voicemail/greeting"),
        ("GET", "/v1/lines/{line_id}/voicemails"),
        ("GET", "/v1/lines/{line_id}/voicemails/{msg_id}"),
        ("DELETE", "/v1/lines/{line_id}/voicemails/{msg_id}"),
        # Its music on hold (issue 15): what its held calls hear.
        ("GET", "/v1/customers/{customer_id}/music-on-hold"),
        ("PUT", "/v1/customers/{customer_id}/music-on-hold"),
        ("DELETE", "/v1/customers/{customer_id}/music-on-hold"),
        # Its numbers and where its aliases ring, among its own lines and groups.
        ("GET", "/v1/numbers/{number}"),
        ("PUT", "/v1/numbers/{number}/destination"),
        ("DELETE", "/v1/numbers/{number}/destination"),
        # Its numbers' RIOs (issue 16: what it gives a new operator to port one out).
        ("GET", "/v1/numbers/{number}/rio"),
        # Its ring groups: read, and their members among its own lines.
        ("GET", "/v1/ring-groups"),
        ("GET", "/v1/ring-groups/{ring_group_id}"),
        ("PATCH", "/v1/ring-groups/{ring_group_id}"),
        # Its CDRs and usage.
        ("GET", "/v1/cdrs"),
        ("GET", "/v1/cdrs.csv"),
        ("GET", "/v1/lines/{line_id}/usage"),
        # Its restrictions and fraud suspicions: read.
        ("GET", "/v1/lines/{target_id}/restrictions"),
        ("GET", "/v1/customers/{target_id}/restrictions"),
        ("GET", "/v1/fraud-suspicions"),
        # Its rated usage (billing, issue 17): read.
        ("GET", "/v1/customers/{customer_id}/usage"),
        ("GET", "/v1/customers/{customer_id}/rated-calls.csv"),
        # Its invoices, and their archived PDF (art. 11.2: in the customer area for 5 years).
        ("GET", "/v1/invoices"),
        ("GET", "/v1/invoices/{invoice_id}"),
        ("GET", "/v1/invoices/{invoice_id}.pdf"),
        ("GET", "/v1/customers/{customer_id}/balance"),
        ("GET", "/v1/invoices/{invoice_id}/disputes"),
        # Its service-level credits and the invoice lines that used them (art. 11.2, 18.1).
        ("GET", "/v1/customers/{customer_id}/service-credits"),
        # The catalogue items it subscribes to (alias numbers, options…).
        ("GET", "/v1/customers/{customer_id}/item-subscriptions"),
        # Its contracts (issue 18): terms, charges, what happened to them. Read only: a notice
        # is a registered letter the operator records.
        ("GET", "/v1/contracts"),
        ("GET", "/v1/contracts/{contract_id}"),
        ("GET", "/v1/contracts/{contract_id}/charges"),
        ("GET", "/v1/contracts/{contract_id}/events"),
        # The changes notified to it (art. 21) and the interruptions recorded (art. 10).
        ("GET", "/v1/contracts/{contract_id}/changes"),
        ("GET", "/v1/interruptions"),
        # The devices it was lent (art. 12): read, their repairs, and what its phone is set up
        # with (never the password: not stored). It accepts or declines a repair quote.
        ("GET", "/v1/equipment"),
        ("GET", "/v1/equipment/{equipment_id}/repairs"),
        ("POST", "/v1/equipment/{equipment_id}/repairs/{repair_id}/decision"),
        ("GET", "/v1/equipment/{equipment_id}/provisioning"),
        # Its numbers' universal directory preferences (art. 13): its own choice.
        ("GET", "/v1/numbers/{number}/directory"),
        ("PUT", "/v1/numbers/{number}/directory"),
        # What the platform holds on it (art. 13: right of access).
        ("GET", "/v1/customers/{customer_id}/personal-data"),
    }
)

#: On these routes a customer may change only these fields (limits, policy and the rest stay
#: the operator's).
CUSTOMER_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("PATCH", "/v1/lines/{line_id}"): frozenset({"label"}),
    ("PATCH", "/v1/ring-groups/{ring_group_id}"): frozenset({"members"}),
}

#: Operator scopes only, reads included: who holds which token, the audit trail.
OPERATOR_ONLY_PREFIXES = ("/v1/tokens", "/v1/audit")


def may_call(principal: Principal, method: str, route: str) -> bool:
    if principal.scope == "operator":
        return True
    if principal.scope == "operator:read":
        return method in READ_METHODS
    return (method, route) in CUSTOMER_ROUTES and not route.startswith(OPERATOR_ONLY_PREFIXES)


def fields_refused(principal: Principal, method: str, route: str, fields: set[str]) -> set[str]:
    """The fields of a change ``principal`` may not make on this route (empty: all allowed)."""
    if principal.scope != "customer" or (method, route) not in CUSTOMER_FIELDS:
        return set()
    return fields - CUSTOMER_FIELDS[(method, route)]


def sees(principal: Principal, customer_id: uuid.UUID | None) -> bool:
    """Whether an object of ``customer_id`` exists for ``principal``."""
    return principal.scope != "customer" or customer_id == principal.customer_id
