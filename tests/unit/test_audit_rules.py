"""The audit trail's rules that need no database: every model declared, secrets withheld,
values made JSON, the log for operators only."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from centrex.access import rules
from centrex.access.principal import Principal
from centrex.audit import recorder
from centrex.audit.models import AuditEntry
from centrex.audit.routes import request_principal
from centrex.db.models import Base, Line, SyncState, Trunk

pytestmark = pytest.mark.unit

ROBOT = Principal(token_id=uuid.uuid4(), name="robot", scope="operator")


def test_every_model_is_declared():
    mapped = {m.class_ for m in Base.registry.mappers} - {AuditEntry}
    assert mapped - set(recorder.AUDITED) == set()


def test_secrets_are_declared_and_withheld():
    assert recorder.AUDITED[Line].secret == {"sip_ha1"}
    assert recorder.AUDITED[Trunk].secret == {"password"}
    ctx = recorder.AuditContext(ROBOT, "TEST")
    before = {"sip_ha1": "0" * 32, "label": "a", "sync_state": SyncState.pending}
    after = {"sip_ha1": "f" * 32, "label": "b", "sync_state": SyncState.synced}
    row = recorder._row(ctx, recorder.AUDITED[Line], "id", "updated", before, after)
    assert row["before"] == {"label": "a"} and row["after"] == {"label": "b"}
    assert row["withheld"] == ["sip_ha1"]
    assert "0" * 32 not in repr(row) and "f" * 32 not in repr(row)
    assert (row["token_id"], row["token_name"], row["operation"]) == (ROBOT.token_id, "robot",
                                                                      "TEST")  # fmt: skip


def test_an_undeclared_model_has_every_value_withheld(monkeypatch):
    monkeypatch.delitem(recorder.AUDITED, Trunk)
    audited = recorder.declared(Trunk)
    assert audited.object_type == "trunks" and {"host", "password", "name"} <= audited.secret


def test_values_become_json():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    some = uuid.uuid4()
    assert recorder._json(
        {"a": [some, at], "b": SyncState.synced, "c": ipaddress.ip_address("192.0.2.1")}
    ) == {"a": [str(some), at.isoformat()], "b": "synced", "c": "192.0.2.1"}


def test_the_context_is_set_inside_only():
    assert recorder.current_context() is None
    with recorder.audit_context(ROBOT, "TEST") as ctx:
        assert recorder.current_context() is ctx
    assert recorder.current_context() is None


def _request(principal: Principal | None) -> Request:
    return Request({"type": "http", "state": {"principal": principal} if principal else {}})


def test_the_log_is_for_operator_scopes_only():
    """No principal is a 401, never a default; customers may not read the log (the scope
    rules, centrex/access/rules.py)."""
    with pytest.raises(HTTPException) as unauthenticated:
        request_principal(_request(None))
    assert unauthenticated.value.status_code == 401
    for scope in ("operator", "operator:read"):
        principal = Principal(uuid.uuid4(), "op", scope)  # type: ignore[arg-type]
        assert rules.may_call(principal, "GET", "/v1/audit")
    customer = Principal(uuid.uuid4(), "cust", "customer", customer_id=uuid.uuid4())
    assert not rules.may_call(customer, "GET", "/v1/audit")
