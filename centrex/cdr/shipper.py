"""Ships Asterisk's CEL journal into PostgreSQL as CDRs: batched, exactly once, restart-safe.

Each pass reads the journal lines appended since the last pass, folds them into ended calls
(:class:`~centrex.core.cdr.CallAssembler`), and writes the ended calls in one transaction:
COPY into a temporary table, ``INSERT … ON CONFLICT (node, linkedid) DO NOTHING`` into
``cdrs``, delete the matching ``call_attempts``, and move the checkpoint. The checkpoint is the
journal position of the first event of the oldest call not yet written, so after a crash (of
this process, of PostgreSQL, of the machine) the shipper reads from there again: calls already
written are dropped by the natural key, the others are written. Nothing is lost as long as the
journal is (see :mod:`.journal`); nothing is written twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from centrex import metrics
from centrex.asterisk.ari import AriClient
from centrex.asterisk.errors import AsteriskError
from centrex.cdr.journal import LIVE, Journal, Position
from centrex.cdr.journal_path import journal_path
from centrex.config import Settings
from centrex.core.cdr import (
    CDR_COLUMNS,
    Attempt,
    CallAssembler,
    EndedCall,
    LineRef,
    build_cdr,
    feed_all,
)
from centrex.core.node_liveness import LOST
from centrex.core.policy import DiallerThresholds, WindowStats, dialler_signs, period_start
from centrex.core.routing import endpoint_of_channel
from centrex.db.session import asyncpg_dsn
from centrex.features.cdr_legs import write_forward_legs

log = logging.getLogger(__name__)

# What makes one CDR row unstorable, every time: PostgreSQL's data errors (SQLSTATE class 22),
# and asyncpg's own refusal to encode a value (an integer beyond its column, ...). Connection
# and server failures are not in it: those are retried, the batch whole.
ROW_REFUSED = (asyncpg.DataError, OverflowError, ValueError, TypeError)

RETRY_MAX_S = 5.0
DIALLER_RECHECK_S = 10.0
# Per line, over the window: attempts, answered, answered seconds, answered under 60 s, span
# from first to last attempt, and attempts to the previous attempt's number plus or minus one.
DIALLER_WINDOW = """
    WITH w AS (
        SELECT caller_line_id AS line, start_at, answer_at, billed_s,
               CASE WHEN callee ~ '^\\+[0-9]{6,15}$' THEN substr(callee, 2)::numeric END AS n,
               lag(CASE WHEN callee ~ '^\\+[0-9]{6,15}$' THEN substr(callee, 2)::numeric END)
                   OVER (PARTITION BY caller_line_id ORDER BY start_at) AS prev
        FROM cdrs
        WHERE caller_line_id = ANY($1::uuid[]) AND start_at >= $2 AND direction <> 'inbound'
    )
    SELECT line, count(*)::int, count(answer_at)::int,
           coalesce(sum(billed_s) FILTER (WHERE answer_at IS NOT NULL), 0)::float8,
           count(*) FILTER (WHERE answer_at IS NOT NULL AND billed_s < 60)::int,
           extract(epoch FROM max(start_at) - min(start_at))::float8,
           count(*) FILTER (WHERE abs(n - prev) = 1)::int
    FROM w GROUP BY line HAVING count(*) >= $3
"""
# A call's record is written once; the one exception is a call a surviving node recorded
# "lost" with this node (centrex/control/reaper.py): the journal's record, the call as
# Asterisk saw it, takes its place, its id included (no rating refers to a lost record).
INSERT_BATCH = (
    "INSERT INTO cdrs SELECT * FROM cdr_batch ON CONFLICT (node, linkedid) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in CDR_COLUMNS if c not in ("node", "linkedid"))
    + ", written_at = clock_timestamp()"
    + f" WHERE cdrs.disposition = '{LOST}'"
)
LOST_CALLS_CHECK_S = 2.0
STALE_ATTEMPTS_EVERY_S = 600.0  # decisions whose call never reached the journal: cleaned up


def asterisk_started_at(info: dict[str, Any]) -> float:
    """Epoch seconds of Asterisk's start, from ARI ``GET /asterisk/info``."""
    stamp = info["status"]["startup_time"]  # e.g. 2026-12-02T16:00:00.123+0000
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class CdrShipper:
    def __init__(
        self, settings: Settings, journal: Journal | None = None, ari: AriClient | None = None
    ) -> None:
        self.settings = settings
        self.ari = ari  # Asterisk's start time: calls of an earlier run are over
        self._lost_checked = 0.0
        self.node = settings.node_name
        self.journal = journal or Journal(journal_path(settings))
        self.assembler = CallAssembler()
        self.pending: list[EndedCall] = []  # ended, not yet written
        self.position: Position | None = None  # where the next read starts
        self.pool: asyncpg.Pool | None = None
        self.written_total = 0
        self._stored: Position | None = None
        self._dialler_checked: dict[uuid.UUID, float] = {}
        self._dialler_dirty: set[uuid.UUID] = set()
        self._last_cleanup = 0.0

    # --- the loop ---------------------------------------------------------------------------
    async def run_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                busy = await self.step()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.CDR_WRITE_ERRORS.inc()
                if isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
                    log.warning(
                        "CDRs: cannot write (%s); %d ended calls wait, in the journal; "
                        "retry in %.1fs", exc, len(self.pending), backoff,
                    )  # fmt: skip
                else:  # never end the task: CDRs would silently stop until a restart
                    log.exception(
                        "CDRs: unexpected error; %d ended calls wait, in the journal; "
                        "retry in %.1fs", len(self.pending), backoff,
                    )  # fmt: skip
                await self._drop_pool()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            if not busy:
                await asyncio.sleep(self.settings.cdr_ship_interval_s)

    async def step(self) -> bool:
        """One pass; True if there may be more to do right away."""
        pool = await self._pool()
        if self.position is None:
            self.position = await self._load_checkpoint(pool)
            log.info("CDRs: shipping %s from %s", self.journal.path, self.position)
        more = False
        if len(self.pending) < self.settings.cdr_batch_max * 4:  # bounded memory
            # Reading and parsing run in a thread: the daemon's event loop keeps deciding calls.
            # (Only this task touches the assembler, and it waits for the thread.)
            ended, self.position, count = await asyncio.to_thread(self._read_and_fold)
            self.pending.extend(ended)
            more = count > 0
            if not more:  # caught up: whatever a dead Asterisk left open is all read
                self.pending.extend(await self._close_lost_calls())
        self._maybe_rotate()
        while self.pending:
            batch = self.pending[: self.settings.cdr_batch_max]
            rest = self.pending[len(batch) :]
            try:
                await self.write(pool, batch, self._checkpoint(rest))
            except ROW_REFUSED:
                # A row of this batch cannot be stored. Retried as it is, the batch would fail
                # forever and no CDR would be written after it: write its calls one by one.
                await self._write_one_by_one(pool, batch, rest)
            self.pending = rest
        await self.judge_diallers(pool)
        if not more:
            await self.write_checkpoint_only(pool)
        self._publish()
        if time.monotonic() - self._last_cleanup > STALE_ATTEMPTS_EVERY_S:
            await pool.execute(
                "DELETE FROM call_attempts"
                " WHERE node = $1 AND decided_at < now() - interval '1 day'",
                self.node,
            )
            self._last_cleanup = time.monotonic()
        return more

    async def _close_lost_calls(self) -> list[EndedCall]:
        """Calls whose Asterisk restarted before journalling their end (a crash): recorded
        with the last thing known, instead of waiting forever and pinning the checkpoint."""
        if not self.assembler.open_calls or self.ari is None:
            return []
        if time.monotonic() - self._lost_checked < LOST_CALLS_CHECK_S:
            return []
        self._lost_checked = time.monotonic()
        try:
            started = asterisk_started_at(await self.ari.info())
        except (AsteriskError, KeyError, ValueError) as exc:
            log.debug("CDRs: Asterisk's start time unknown (%s); open calls stay open", exc)
            return []
        lost = self.assembler.close_lost(started)
        if lost:
            metrics.CDR_CALLS_CLOSED_UNENDED.inc(len(lost))
            log.warning(
                "CDRs: %d calls of an Asterisk that stopped before journalling their end "
                "(restarted at %s); each recorded as ended at its last event",
                len(lost), datetime.fromtimestamp(started, UTC).isoformat(),
            )  # fmt: skip
        return lost

    def _read_and_fold(self) -> tuple[list[EndedCall], Position, int]:
        assert self.position is not None
        lines, position = self.journal.read(self.position)
        skipped_before = self.assembler.skipped
        ended = feed_all(self.assembler, lines)
        if skipped := self.assembler.skipped - skipped_before:
            # A crash mid-write, or a record of no format this reader knows; read again (and
            # counted again) after a restart from an earlier checkpoint.
            log.warning("CDRs: %d journal lines were not a CEL record; skipped", skipped)
            metrics.CEL_LINES_SKIPPED.inc(skipped)
        return ended, position, len(lines)

    def _publish(self) -> None:
        metrics.CDR_PENDING_CALLS.set(len(self.pending))
        if self._stored is not None:
            metrics.CDR_JOURNAL_BACKLOG_BYTES.set(self.journal.bytes_after(self._stored))

    def _checkpoint(self, unwritten: list[EndedCall]) -> Position:
        assert self.position is not None
        first = [c.first_position for c in unwritten]
        return min([self.assembler.low_water(self.position), *first])

    def _maybe_rotate(self) -> None:
        assert self.position is not None
        if self.position.segment != LIVE:
            return
        if self.position.offset < self.settings.cdr_journal_rotate_bytes:
            return
        segment = self.journal.rotate()
        log.info("CDRs: journal rotated to %s", self.journal.name_of(segment))

        def moved(p: Any) -> Any:
            return Position(segment, p.offset) if p.segment == LIVE else p

        self.position = moved(self.position)
        for call in [*self.assembler.open_calls.values(), *self.pending]:
            call.first_position = moved(call.first_position)

    # --- PostgreSQL ---------------------------------------------------------------------------
    # --- fraud control on what was just written (art. 16) -------------------------------------
    async def _fraud_checks(self, conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> None:
        """Long calls, judged from the CDRs (so also for calls that ended while the daemon was
        down), raised in the CDRs' transaction; the lines that placed calls are marked for the
        automated-dialling judgement (:meth:`judge_diallers`)."""
        s = self.settings
        placed: set[uuid.UUID] = set()
        for row in rows:
            cdr = dict(zip(CDR_COLUMNS, row, strict=True))
            line = cdr["caller_line_id"]
            if line is None or cdr["direction"] == "inbound":
                continue
            placed.add(line)  # type: ignore[arg-type]
            if cdr["disposition"] == "cut" or cdr["billed_s"] >= s.fraud_long_call_s:  # type: ignore[operator]
                evidence = {"linkedid": cdr["linkedid"], "billed_s": cdr["billed_s"],
                            "start_at": cdr["start_at"].isoformat(),  # type: ignore[union-attr]
                            "threshold_s": s.fraud_long_call_s}  # fmt: skip
                await self._raise(conn, line, "long_call", evidence)  # type: ignore[arg-type]
        self._dialler_dirty |= placed

    async def judge_diallers(self, pool: asyncpg.Pool) -> None:
        """Automated dialling, for lines with new calls, each judged at most every
        DIALLER_RECHECK_S (the window query reads the line's recent CDRs; a busy line would
        otherwise be re-judged on every batch). A line not yet due stays marked for later."""
        moment = time.monotonic()
        due = {
            line for line in self._dialler_dirty
            if moment - self._dialler_checked.get(line, -DIALLER_RECHECK_S) >= DIALLER_RECHECK_S
        }  # fmt: skip
        if not due:
            return
        self._dialler_dirty -= due
        for line in due:
            self._dialler_checked[line] = moment
        if len(self._dialler_checked) > 100_000:  # forget lines judged long ago
            self._dialler_checked = {
                k: v for k, v in self._dialler_checked.items() if moment - v < DIALLER_RECHECK_S
            }
        s = self.settings
        thresholds = DiallerThresholds(
            window_s=s.dialler_window_s, min_attempts=s.dialler_min_attempts,
            max_acd_s=s.dialler_max_acd_s, min_short_ratio=s.dialler_min_short_ratio,
            min_attempts_per_minute=s.dialler_min_attempts_per_minute,
            max_asr=s.dialler_max_asr, min_sequential_ratio=s.dialler_min_sequential_ratio,
        )  # fmt: skip
        since = datetime.now(UTC).timestamp() - thresholds.window_s
        async with pool.acquire() as conn:
            for record in await conn.fetch(
                DIALLER_WINDOW, list(due), datetime.fromtimestamp(since, UTC),
                thresholds.min_attempts,
            ):  # fmt: skip
                stats = WindowStats(*list(record.values())[1:])
                signs = dialler_signs(stats, thresholds)
                if signs:
                    evidence = {"signs": signs, "window_s": thresholds.window_s,
                                "attempts": stats.attempts, "asr": round(stats.asr, 3),
                                "acd_s": round(stats.acd_s, 1),
                                "short_ratio": round(stats.short_ratio, 3),
                                "attempts_per_minute": round(stats.attempts_per_minute, 2),
                                "sequential_ratio": round(stats.sequential_ratio, 3)}  # fmt: skip
                    await self._raise(conn, record["line"], "automated_dialling", evidence)

    async def _raise(
        self, conn: asyncpg.Connection, line: uuid.UUID, rule: str, evidence: dict[str, Any]
    ) -> None:
        # The contract's hard rules take the customer's action, else the platform's; the
        # automated-dialling heuristic has its own (flag only by default).
        heuristic = rule == "automated_dialling"
        action = self.settings.dialler_action if heuristic else self.settings.fraud_action
        raised = await conn.fetchval(
            "SELECT centrex_raise_suspicion($1, $2, $3, $4::jsonb, $5, $6)",
            line, rule, period_start(datetime.now(UTC)), json.dumps(evidence), action,
            not heuristic,
        )  # fmt: skip
        if raised:
            metrics.FRAUD_SUSPICIONS.labels(rule).inc()
            log.warning("line %s: fraud suspicion (%s): %s", line, rule, evidence)

    async def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                asyncpg_dsn(self.settings.database_url_required),
                min_size=1,
                max_size=2,
                command_timeout=30,
            )
        return self.pool

    async def _drop_pool(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.terminate()

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _load_checkpoint(self, pool: asyncpg.Pool) -> Position:
        row = await pool.fetchrow(
            'SELECT journal, "offset" FROM cdr_checkpoints WHERE node = $1', self.node
        )
        if row is None:
            return self.journal.resume_from(None, 0)
        return self.journal.resume_from(row["journal"], row["offset"])

    async def write_checkpoint_only(self, pool: asyncpg.Pool) -> None:
        """Idle: move the checkpoint over lines that ended no call."""
        at = self._checkpoint([])
        if at != self._stored:
            async with pool.acquire() as conn:
                await self._store_checkpoint(conn, at)
            await self._checkpoint_stored(at)

    async def _checkpoint_stored(self, at: Position) -> None:
        """Committed: rotated segments wholly before it are shipped and can go."""
        self._stored = at
        if at.segment != LIVE or self.journal.rotated_segments():
            await asyncio.to_thread(self.journal.drop_segments_before, at.segment)

    async def _store_checkpoint(self, conn: asyncpg.Connection, at: Position) -> None:
        await conn.execute(
            """
            INSERT INTO cdr_checkpoints (node, journal, "offset", updated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (node) DO UPDATE
            SET journal = excluded.journal, "offset" = excluded."offset",
                updated_at = excluded.updated_at
            """,
            self.node, self.journal.name_of(at.segment), at.offset, datetime.now(UTC),
        )  # fmt: skip

    async def _write_one_by_one(
        self, pool: asyncpg.Pool, batch: list[EndedCall], rest: list[EndedCall]
    ) -> None:
        for i, call in enumerate(batch):
            checkpoint = self._checkpoint(batch[i + 1 :] + rest)
            try:
                await self.write(pool, [call], checkpoint)
            except ROW_REFUSED as exc:
                # Logged whole, since the journal segment holding it goes once shipped.
                metrics.CDRS_REFUSED.inc()
                log.error(
                    "CDRs: PostgreSQL refuses the CDR of call %s (%s); skipped. The call as "
                    "read from the journal: %r", call.linkedid, exc, call,
                )  # fmt: skip
                async with pool.acquire() as conn:
                    await self._store_checkpoint(conn, checkpoint)
                await self._checkpoint_stored(checkpoint)

    async def write(self, pool: asyncpg.Pool, calls: list[EndedCall], checkpoint: Position) -> int:
        """Write these calls' CDRs and move the checkpoint, in one transaction."""
        linkedids = [c.linkedid for c in calls]
        started = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            attempts = {
                r["channel_id"]: Attempt(*list(r.values())[1:])
                for r in await conn.fetch(
                    """
                    SELECT channel_id, call_id, outcome, direction, caller, callee,
                           caller_line_id, callee_line_id, ring_group_id, max_duration_s,
                           reason, transfer_of, paid_by_line_id, deadline_at
                    FROM call_attempts WHERE node = $1 AND channel_id = ANY($2::text[])
                    """,
                    self.node,
                    linkedids,
                )
            }
            usernames = {
                ep
                for c in calls
                for ep in (endpoint_of_channel(c.channel), endpoint_of_channel(c.answered_by))
                if ep
            }
            lines = {
                r["sip_username"]: LineRef(r["id"], r["customer_id"], r["main_number"])
                for r in await conn.fetch(
                    "SELECT sip_username, id, customer_id, main_number FROM lines"
                    " WHERE sip_username = ANY($1::text[])",
                    list(usernames),
                )
            }
            group_ids = list({a.ring_group_id for a in attempts.values() if a.ring_group_id})
            groups: dict[uuid.UUID, uuid.UUID] = {}
            if group_ids:
                groups = {
                    r["id"]: r["customer_id"]
                    for r in await conn.fetch(
                        "SELECT id, customer_id FROM ring_groups WHERE id = ANY($1::uuid[])",
                        group_ids,
                    )
                }
            rows = [
                build_cdr(
                    c,
                    node=self.node,
                    attempt=attempts.get(c.linkedid),
                    lines=lines,
                    group_customers=groups,
                )
                for c in calls
            ]
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS cdr_batch (LIKE cdrs INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("cdr_batch", records=rows, columns=CDR_COLUMNS)
            status = await conn.execute(INSERT_BATCH)
            await write_forward_legs(conn, self.node, rows)  # issue 15: a forward's own record
            await conn.execute(
                "DELETE FROM call_attempts WHERE node = $1 AND channel_id = ANY($2::text[])",
                self.node, linkedids,
            )  # fmt: skip
            await self._fraud_checks(conn, rows)
            await self._store_checkpoint(conn, checkpoint)
        await self._checkpoint_stored(checkpoint)
        inserted = int(status.rsplit(" ", 1)[-1])
        metrics.CDR_WRITE_SECONDS.observe(time.perf_counter() - started)
        metrics.CDRS_WRITTEN.inc(inserted)
        self.written_total += inserted
        log.debug("CDRs: %d written (%d already there)", inserted, len(calls) - inserted)
        return inserted
