"""Which node is lost, and the record of a call lost with it (centrex/core/node_liveness.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from centrex.core.cdr import CDR_COLUMNS
from centrex.core.node_liveness import LOST, LostCall, lost_cdr, lost_end, lost_nodes

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_node_silent_longer_than_the_bound_is_lost():
    seen = {"n1": ago(1), "n2": ago(61), "n3": ago(60)}
    assert lost_nodes(seen, NOW, 60, own="n1") == {"n2"}  # exactly 60 s: not yet


def test_a_node_is_never_lost_to_itself():
    assert lost_nodes({"n1": ago(3600), "n2": ago(3600)}, NOW, 60, own="n1") == {"n2"}


def test_a_node_without_a_heartbeat_is_never_lost():
    # The single-machine shape, or a node whose daemon predates heartbeats: no row, no reaping.
    assert lost_nodes({}, NOW, 60, own="main") == frozenset()


def call(**changes: object) -> LostCall:
    fields: dict[str, object] = dict(
        call_id=uuid.uuid4(), node="n2", channel_id="1700000000.42", direction="outbound",
        caller="+33100000001", callee="+442071234567", caller_line_id=uuid.uuid4(),
        callee_line_id=None, ring_group_id=None, started_at=ago(100), answered_at=ago(90),
        deadline_at=ago(90) + timedelta(hours=2), transfer_of=None, customer_id=uuid.uuid4(),
        last_seen_at=ago(30),
    )  # fmt: skip
    fields.update(changes)
    return LostCall(**fields)  # type: ignore[arg-type]


def test_a_lost_call_ends_when_its_node_was_last_seen():
    record = dict(zip(CDR_COLUMNS, lost_cdr(call()), strict=True))
    assert record["end_at"] == ago(30)
    assert record["billed_s"] == 60  # answered 90 s ago, node last seen 30 s ago
    assert record["duration_ms"] == 70_000
    assert record["disposition"] == LOST
    assert record["sip_code"] == 200
    assert record["node"] == "n2" and record["linkedid"] == "1700000000.42"
    assert record["destination_country"] == "GB"
    assert "lost with node n2" in str(record["reason"])


def test_a_lost_call_never_outlasts_its_deadline():
    deadline = ago(80)
    assert lost_end(call(deadline_at=deadline)) == deadline


def test_a_call_answered_after_its_node_was_last_seen_is_billed_nothing():
    # Possible: the answer is stamped by the node's clock, the heartbeat by PostgreSQL's.
    record = dict(zip(CDR_COLUMNS, lost_cdr(call(answered_at=ago(20))), strict=True))
    assert record["end_at"] == ago(20)
    assert record["billed_s"] == 0


def test_an_unanswered_lost_call_is_billed_nothing():
    record = dict(zip(CDR_COLUMNS, lost_cdr(call(answered_at=None)), strict=True))
    assert (record["answer_at"], record["billed_s"], record["sip_code"]) == (None, 0, 503)
    assert record["end_at"] == ago(30)
