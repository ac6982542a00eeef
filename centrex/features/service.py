"""Reading and changing a line's features (the API's side; the daemon's is call_path.py).

A forward target is checked when it is set, with the facts :data:`TARGET_FACTS` reads in one
query (the daemon checks a target set with ``*21*`` with the same query and rule), and again at
every call: a destination suspended after the forward was set refuses the forwarded call.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from centrex.core.policy import destination_of
from centrex.db.models import Line
from centrex.features.models import LineFeatureSettings
from centrex.features.rules import (
    ForwardTarget,
    TargetError,
    TargetFacts,
    TargetKind,
    parse_target,
    target_refusal,
)
from centrex.services.errors import ServiceError

FORWARD_FIELDS = ("forward_unconditional", "forward_busy", "forward_no_answer",
                  "forward_unregistered")  # fmt: skip

# $1 the forwarding line, $2 an extension, $3 an E.164 number, $4 the number's destination.
# The extension and number columns: NULL when there is none, else whether it is the line's own
# (false for a ring group's, or another line's).
TARGET_FACTS = """
SELECT l.main_number IS NOT NULL,
       centrex_policy_level(l.id, l.customer_id),
       (SELECT coalesce(e.line_id = l.id, false) FROM extensions e
        WHERE e.customer_id = l.customer_id AND e.extension = $2),
       (SELECT coalesce(n.line_id = l.id, false) OR n.e164 = l.main_number FROM numbers n
        WHERE n.e164 = $3 AND n.status = 'assigned'),
       d.code IS NOT NULL, d.suspended_at IS NOT NULL,
       (SELECT e.line_id IS NOT NULL FROM extensions e
        WHERE e.customer_id = l.customer_id AND e.extension = $2)
FROM lines l LEFT JOIN destinations d ON d.code = $4
WHERE l.id = $1
"""


class FeatureRefused(ServiceError):
    status_code = 422
    error_type = "invalid_target"


def target_query_args(line_id: uuid.UUID, target: ForwardTarget) -> tuple[Any, ...]:
    number = target.value if target.kind is TargetKind.number else None
    extension = target.value if target.kind is TargetKind.extension else None
    return (
        line_id,
        extension or target.mailbox_extension,
        number,
        destination_of(number) if number else None,
    )


def facts_of_row(row: Any) -> TargetFacts:
    has_number, level, ext_is_self, number_is_self, listed, suspended, ext_is_line = row
    return TargetFacts(
        names_line_itself=bool(ext_is_self) or bool(number_is_self),
        extension_exists=ext_is_self is not None,
        extension_is_line=bool(ext_is_line),
        on_platform=number_is_self is not None,
        destination_listed=bool(listed),
        destination_suspended=bool(suspended),
        destination=None,  # filled by the caller from the target
        policy_level=level or "none",
        has_number=bool(has_number),
    )


async def checked_target(session: AsyncSession, line: Line, field: str, text: str) -> str:
    """The target as stored (E.164 for numbers), or 422 naming ``field``."""
    try:
        target = parse_target(text)
    except TargetError as exc:
        raise FeatureRefused(field, f"{text[:24]!r}: {exc}") from None
    args = target_query_args(line.id, target)
    conn = await session.connection()
    row = (await conn.exec_driver_sql(TARGET_FACTS, args)).one()
    facts = facts_of_row(row)
    facts = TargetFacts(**{**facts.__dict__, "destination": args[3]})
    if why := target_refusal(target, facts):
        raise FeatureRefused(field, f"{target.value}: {why}")
    return target.value


async def features_of(session: AsyncSession, line: Line) -> LineFeatureSettings:
    """The line's settings; a fresh row with the defaults (not added) if it has none."""
    row = await session.get(LineFeatureSettings, line.id)
    if row is None:
        row = LineFeatureSettings(line_id=line.id, forward_no_answer_s=20, dnd=False, privacy=False)
    return row


async def update_features(
    session: AsyncSession, line: Line, changes: dict[str, Any]
) -> LineFeatureSettings:
    row = await features_of(session, line)
    for field in FORWARD_FIELDS:
        if changes.get(field) is not None:
            changes[field] = await checked_target(session, line, field, changes[field])
    for field, value in changes.items():
        if value is None and field not in FORWARD_FIELDS:
            raise FeatureRefused(field, f"{field} cannot be null")
        setattr(row, field, value)
    if row not in session:
        session.add(row)
    await session.commit()
    return row
