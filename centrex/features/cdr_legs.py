"""A forward's own CDR (issue 15): the call's record says who called whom; the forward's says
that the forwarding line called on, to where, and is billed to that line (an outside forward is
an outbound call of the forwarding line). ``leg_of`` links it to the call's record.

:func:`forward_leg` is pure; :func:`write_forward_legs` is the shipper's hook, in the
transaction that writes the calls' records.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from centrex.core.cdr import CDR_COLUMNS, cdr_destination, destination_country

LEG_COLUMNS = (*CDR_COLUMNS, "leg_of")
_AT = {name: i for i, name in enumerate(CDR_COLUMNS)}

FORWARDS_OF = """
SELECT f.channel_id, f.hop, f.line_id, f.target, f.target_line_id, f.direction, f.condition,
       f.decided_at, l.customer_id, coalesce(l.main_number, l.sip_username)
FROM call_forwards f JOIN lines l ON l.id = f.line_id
WHERE f.node = $1 AND f.channel_id = ANY($2::text[])
ORDER BY f.channel_id, f.hop
"""


def forward_leg(call: Sequence[Any], forward: Sequence[Any]) -> tuple[Any, ...]:
    """The forward's record, from the call's (a row in CDR_COLUMNS order) and its
    ``FORWARDS_OF`` row. It starts when the forward was decided; it ends, and was answered
    (or not), with the call: the forwarded leg is the one that rang last."""
    _channel, hop, line_id, target, target_line_id, direction, condition, decided_at, customer, \
        caller = forward  # fmt: skip
    start = max(call[_AT["start_at"]], decided_at)
    end = max(call[_AT["end_at"]], start)
    values = dict(zip(CDR_COLUMNS, call, strict=True))
    values.update(
        id=uuid.uuid4(),
        linkedid=f"{call[_AT['linkedid']]};fwd{hop}",  # unique per node, like the call's
        customer_id=customer,
        caller_line_id=line_id,
        callee_line_id=target_line_id,
        ring_group_id=None,
        dialled_number=None,
        direction=direction,
        caller=caller,
        callee=target,
        destination_country=destination_country(target),
        destination=cdr_destination(target) if direction == "outbound" else None,
        start_at=start,
        duration_ms=int((end - start).total_seconds() * 1000),
        reason=f"forward ({condition})",
        transfer_of=None,  # a transfer's part has its own record (docs/transfers.md)
        paid_by_line_id=None,  # its caller, the forwarding line, pays
    )
    return (*(values[c] for c in CDR_COLUMNS), call[_AT["id"]])


async def write_forward_legs(
    conn: asyncpg.Connection, node: str, rows: Sequence[Sequence[Any]]
) -> None:
    """Write the forwards' records of these calls (just written), and forget the forwards."""
    linkedids = [row[_AT["linkedid"]] for row in rows]
    forwards = await conn.fetch(FORWARDS_OF, node, linkedids)
    if not forwards:
        return
    by_call = {row[_AT["linkedid"]]: row for row in rows}
    legs = [forward_leg(by_call[f[0]], f) for f in forwards if f[0] in by_call]
    columns = ", ".join(LEG_COLUMNS)
    values = ", ".join(f"${i}" for i in range(1, len(LEG_COLUMNS) + 1))
    await conn.executemany(
        f"INSERT INTO cdrs ({columns}) VALUES ({values}) ON CONFLICT (node, linkedid) DO NOTHING",
        legs,
    )
    await conn.execute(
        "DELETE FROM call_forwards WHERE node = $1 AND channel_id = ANY($2::text[])",
        node, linkedids,
    )  # fmt: skip
