"""Recording every change made through the API, in the transaction of the change.

Who and what come from :func:`audit_context`, set once per API request (``centrex.api.app``
wires it on every secured router). While it is set, each flush of an :class:`AuditedSession`
(the API's sessions) writes one audit row per object it created, updated or deleted, on the
flush's own connection: a change cannot commit without its record, and a rolled-back change
takes its record with it. Outside such a context (the reconciler, the CDR purge, the daemon and
the other processes) nothing is recorded: those are not changes made through the API.

What the ORM does not see is recorded explicitly with :func:`record`: statements that write
rows without ORM objects (``session.execute(update(...))``) and operations that change nothing
in the database (hanging up a call through ARI). So that none is forgotten, such a statement
run inside an audit context is refused unless it carries the execution option ``audited``
saying how it is accounted for (see :data:`AUDITED_OPTION`).

Never a secret: each model declares its secret columns in :data:`AUDITED`; a secret that
changed is named in the row's ``withheld``, its value never written. A model missing from
:data:`AUDITED` is recorded with every value withheld.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, ORMExecuteState, Session
from sqlalchemy.sql import ClauseElement

from centrex.access.models import ApiToken
from centrex.access.principal import Principal
from centrex.audit.models import AuditEntry
from centrex.db import models as m
from centrex.extensions.models import Extension
from centrex.features.models import CallForward, LineFeatureSettings
from centrex.moh.models import CustomerMusicOnHold
from centrex.portability.models import PortIn, PortOut
from centrex.voicemail.models import VoicemailBox, VoicemailDelivery, VoicemailPlatform

log = logging.getLogger(__name__)

#: The execution option a writing statement run in an audit context must carry: a short note of
#: how its change is recorded (e.g. "record() below", "bookkeeping only").
AUDITED_OPTION = "audited"


class AuditError(RuntimeError):
    """A change that would escape the audit trail, refused."""


# --- who and what ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditContext:
    principal: Principal
    operation: str  # "PATCH /v1/lines/{line_id}": the route's method and path template


_current: ContextVar[AuditContext | None] = ContextVar("centrex_audit_context", default=None)


@contextmanager
def audit_context(principal: Principal, operation: str) -> Iterator[AuditContext]:
    """Changes made inside are recorded as ``operation`` by ``principal``."""
    ctx = AuditContext(principal, operation)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def current_context() -> AuditContext | None:
    return _current.get()


# --- what each model may show ---------------------------------------------------------------------
@dataclass(frozen=True)
class Audited:
    """How a model's changes are recorded: under which object type; which columns are secrets
    (named when they change, their values never recorded); which are bookkeeping (the sync state
    with Asterisk, also written by the reconciler: not recorded at all)."""

    object_type: str
    secret: frozenset[str] = field(default_factory=frozenset)
    bookkeeping: frozenset[str] = field(default_factory=frozenset)


def _audited(object_type: str, *, secret: tuple[str, ...] = (), bookkeeping: tuple[str, ...] = ()):
    return Audited(object_type, frozenset(secret), frozenset(bookkeeping))


#: Every mapped model, declared (tests/unit/test_audit_recorder.py checks none is missing). A new
#: model with a secret column MUST name it in ``secret``.
AUDITED: dict[type, Audited] = {
    m.Customer: _audited("customer"),
    m.Line: _audited(
        "line",
        secret=("sip_ha1",),  # the digest hash: as good as the password against Asterisk
        bookkeeping=("sync_state", "sync_error", "registrations_purge_pending"),
    ),
    m.Trunk: _audited("trunk", secret=("password",)),
    m.NumberBlock: _audited("number_block"),
    m.PhoneNumber: _audited("number"),
    m.NumberTierRule: _audited("number_tier_rule"),
    m.RingGroup: _audited("ring_group"),
    m.RingGroupMember: _audited("ring_group_member"),
    m.Destination: _audited("destination"),
    m.PolicyRestriction: _audited("restriction"),
    m.CredentialRenewal: _audited("credential_renewal"),
    m.SipBan: _audited("sip_ban"),
    ApiToken: _audited("token", secret=("secret_sha256",)),
    Extension: _audited("extension"),
    PortIn: _audited("port_in"),
    PortOut: _audited("port_out"),
    LineFeatureSettings: _audited("line_features"),
    # The PIN opens the mailbox from a phone: never in the trail.
    VoicemailBox: _audited("voicemail_box", secret=("pin",)),
    VoicemailPlatform: _audited("voicemail_platform"),
    VoicemailDelivery: _audited("voicemail_delivery"),
    CustomerMusicOnHold: _audited("music_on_hold"),
    # Written by the daemon, the CDR shipper or fraud control, not by the API; declared so that
    # an API change to them one day is recorded like any other.
    m.ActiveCall: _audited("call"),
    m.ActiveCallLeg: _audited("call_leg"),
    m.CallCutoff: _audited("call_cutoff"),
    m.CallAttempt: _audited("call_attempt"),
    m.Cdr: _audited("cdr"),
    m.CdrCheckpoint: _audited("cdr_checkpoint"),
    m.ClusterNode: _audited("cluster_node"),
    m.FraudSuspicion: _audited("fraud_suspicion"),
    m.LinePeriodNumber: _audited("line_period_number"),
    m.LinePeriodCount: _audited("line_period_count"),
    CallForward: _audited("call_forward"),
}


class _Undeclared(Audited):
    """A model nobody declared: every column is treated as a secret."""


def declared(model: type) -> Audited:
    for cls in model.__mro__:
        if cls in AUDITED:
            return AUDITED[cls]
    mapper = inspect(model)
    log.error("audit: model %s is not declared in AUDITED; its values are withheld", model)
    return _Undeclared(
        mapper.local_table.name, frozenset(a.key for a in mapper.column_attrs), frozenset()
    )


# --- rows -----------------------------------------------------------------------------------------
def _json(value: Any) -> Any:
    """A column value as JSON keeps it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _json(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, ClauseElement):
        return f"(SQL: {value})"  # a value PostgreSQL computed in the statement
    return str(value)


def _split(
    audited: Audited, values: Mapping[str, Any] | None, withheld: set[str]
) -> dict[str, Any] | None:
    """``values`` without bookkeeping, secrets moved to ``withheld`` (by name only)."""
    if values is None:
        return None
    out = {}
    for key, value in values.items():
        if key in audited.bookkeeping:
            continue
        if key in audited.secret:
            withheld.add(key)
            continue
        out[key] = _json(value)
    return out


def _row(
    ctx: AuditContext,
    audited: Audited,
    object_id: object,
    change: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> dict[str, Any]:
    withheld: set[str] = set()
    return {
        "id": uuid.uuid4(),
        "token_id": ctx.principal.token_id,
        "token_name": ctx.principal.name,
        "operation": ctx.operation,
        "object_type": audited.object_type,
        "object_id": str(object_id),
        "change": change,
        "before": _split(audited, before, withheld),
        "after": _split(audited, after, withheld),
        "withheld": sorted(withheld),
    }


def _object_id(mapper: Mapper, obj: object) -> str:
    return "/".join(str(v) for v in mapper.primary_key_from_instance(obj))


def _values(mapper: Mapper, obj: object) -> dict[str, Any]:
    """Every column value the object holds (an unloaded one is left out)."""
    state = inspect(obj)
    return {a.key: state.dict[a.key] for a in mapper.column_attrs if a.key in state.dict}


def values_of(obj: object) -> dict[str, Any]:
    """An ORM object's column values, for an explicit :func:`record` of it (secrets and
    bookkeeping are taken out there)."""
    return _values(inspect(obj).mapper, obj)


def _not_null_secrets(audited: Audited, values: dict[str, Any]) -> dict[str, Any]:
    # A secret column left empty is no secret: it is not named as withheld.
    return {k: v for k, v in values.items() if not (k in audited.secret and v is None)}


def _flush_rows(ctx: AuditContext, session: Session) -> list[dict[str, Any]]:
    rows = []
    for obj in session.new:
        mapper, audited = inspect(obj).mapper, declared(type(obj))
        after = _not_null_secrets(audited, _values(mapper, obj))
        rows.append(_row(ctx, audited, _object_id(mapper, obj), "created", None, after))
    for obj in session.dirty:
        state = inspect(obj)
        mapper, audited = state.mapper, declared(type(obj))
        before, after = {}, {}
        for attr in mapper.column_attrs:
            history = state.attrs[attr.key].history
            if not history.has_changes() or attr.key in audited.bookkeeping:
                continue
            if history.deleted:  # absent when the old value was not loaded
                before[attr.key] = history.deleted[0]
            after[attr.key] = history.added[0] if history.added else None
        if after:
            rows.append(_row(ctx, audited, _object_id(mapper, obj), "updated", before, after))
    for obj in session.deleted:
        mapper, audited = inspect(obj).mapper, declared(type(obj))
        before = _not_null_secrets(audited, _values(mapper, obj))
        rows.append(_row(ctx, audited, _object_id(mapper, obj), "deleted", before, None))
    return rows


# --- the session ----------------------------------------------------------------------------------
class AuditedSession(Session):
    """The API's sessions: their flushes inside an :func:`audit_context` are recorded."""


@event.listens_for(AuditedSession, "before_flush")
def _only_the_recorder_writes_the_log(session: Session, flush_context, instances) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, AuditEntry):
            raise AuditError("the audit log is written by centrex.audit.recorder only")


@event.listens_for(AuditedSession, "after_flush")
def _record_flush(session: Session, flush_context) -> None:
    ctx = _current.get()
    if ctx is None:
        return
    rows = _flush_rows(ctx, session)
    if rows:
        # The flush's own connection and transaction: the records commit with the change.
        session.connection().execute(insert(AuditEntry.__table__), rows)


@event.listens_for(AuditedSession, "do_orm_execute")
def _statements_must_be_accounted_for(state: ORMExecuteState) -> None:
    if _current.get() is None or not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) == AuditEntry.__tablename__:
        return  # record()'s own insert
    if AUDITED_OPTION not in state.execution_options:
        raise AuditError(
            f"a statement writing {getattr(table, 'name', '?')} bypasses the audit trail: record "
            f"its change with centrex.audit.recorder.record() and mark the statement "
            f".execution_options({AUDITED_OPTION}=...)"
        )


async def record(
    session: AsyncSession,
    model: type,
    object_id: object,
    change: str,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Record a change the ORM does not see, in ``session``'s transaction (committed with it).

    ``model`` names the object type and its secrets (withheld like a flush's); nothing is
    recorded outside an :func:`audit_context`.
    """
    ctx = _current.get()
    if ctx is None:
        return
    row = _row(ctx, declared(model), object_id, change, before, after)
    await session.execute(insert(AuditEntry.__table__), [row])
