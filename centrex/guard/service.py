"""``centrex guard``: bans the source addresses that keep failing SIP authentication.

It follows Asterisk's security log (``tail -F``, like the daemon follows the CEL journal),
counts failures per address (:mod:`centrex.core.sip_bans`), and bans an address past the
threshold in its own nftables table, so its packets are dropped before Asterisk spends anything
on them. Bans are rows in PostgreSQL: the API lists and lifts them, and every
``CENTREX_SIP_BAN_RECONCILE_S`` (and at start) the guard makes the kernel's ban set match the
rows in force, so a lift reaches the kernel within that interval and a restarted guard, or a
flushed table, is repaired. Its ``/metrics`` and health are on
``CENTREX_GUARD_HTTP_HOST:CENTREX_GUARD_HTTP_PORT``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from centrex import metrics
from centrex.asterisk.file_tail import FileTail
from centrex.config import Settings
from centrex.core.sip_bans import (
    AuthFailure,
    BanDecision,
    BanPolicy,
    FailureCounter,
    IPAddress,
    Skipped,
    ban_seconds,
    parse_security_line,
)
from centrex.db.session import asyncpg_dsn
from centrex.guard.nft import NftTable, table_name
from centrex.service_http import health_served

log = logging.getLogger(__name__)

READY = "guard: watching"
POLL_S = 0.1  # how often the security log is read: a ban lands within this of the last failure


def security_log_path(settings: Settings) -> Path:
    if settings.security_log is not None:
        return settings.security_log
    # Production sets CENTREX_SECURITY_LOG (the host's Asterisk); this is `centrex up`'s sandbox.
    from centrex.sandbox.asterisk import AsteriskSandbox

    return AsteriskSandbox(settings).security_log


def policy_from(settings: Settings) -> BanPolicy:
    return BanPolicy(
        max_failures=settings.sip_ban_max_failures,
        window_s=settings.sip_ban_window_s,
        ban_s=settings.sip_ban_s,
        max_ban_s=settings.sip_ban_max_s,
        allow=tuple(settings.sip_ban_allow),
    )


def nft_table(settings: Settings) -> NftTable:
    return NftTable(
        name=settings.sip_ban_table or table_name(settings.asterisk_instance),
        sip_ports=(settings.sip_port,),
        allow=tuple(settings.sip_ban_allow),
        flood_packets_per_s=settings.sip_flood_packets_per_s,
        flood_burst=settings.sip_flood_burst,
    )


class Guard:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.policy = policy_from(settings)
        self.counter = FailureCounter(self.policy)
        self.table = nft_table(settings)
        self.tail = FileTail(security_log_path(settings))
        self.clock = clock
        self.pool: asyncpg.Pool | None = None
        self.in_force: dict[IPAddress, float] = {}  # address -> until (epoch), as last applied
        self.unsaved: list[tuple[BanDecision, float, float]] = []  # the database was down

    async def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                asyncpg_dsn(self.settings.database_url_required),
                min_size=1, max_size=2, command_timeout=5,
            )  # fmt: skip
        return self.pool

    async def run_forever(self) -> None:
        await self.table.create()
        self.tail.start_at_end()
        await self._reconcile_logged()
        log.info(
            "%s %s (table inet %s, %s)", READY, self.tail.path, self.table.name, self.policy.rule
        )
        next_reconcile = time.monotonic() + self.settings.sip_ban_reconcile_s
        while True:
            for line in self.tail.read_lines():
                await self.handle(line)
            if time.monotonic() >= next_reconcile:
                await self._reconcile_logged()
                self.counter.forget_older_than(self.clock())
                next_reconcile = time.monotonic() + self.settings.sip_ban_reconcile_s
            await asyncio.sleep(POLL_S)

    async def handle(self, line: str) -> None:
        parsed = parse_security_line(line)
        if parsed is None:
            return
        if isinstance(parsed, Skipped):
            metrics.SECURITY_LINES_SKIPPED.inc()
            log.warning("guard: security line skipped (%s): %r", parsed.reason, line[:300])
            return
        assert isinstance(parsed, AuthFailure)
        now = self.clock()
        decision = self.counter.record(parsed, now)
        metrics.AUTH_FAILURES.labels("allowed" if decision == "allowed" else "counted").inc()
        if isinstance(decision, BanDecision) and self.in_force.get(decision.address, 0) <= now:
            await self.ban(decision, now)

    async def ban(self, decision: BanDecision, now: float) -> None:
        previous = await self._previous_bans(decision.address, now)
        seconds = ban_seconds(self.policy, previous)
        until = now + seconds
        await self.table.apply({decision.address: int(seconds)}, ())
        self.in_force[decision.address] = until
        metrics.SIP_BANS.labels("issued").inc()
        metrics.SIP_BANNED_ADDRESSES.set(len(self.in_force))
        log.warning(
            "guard: %s banned for %ds (%d failed authentications, ban %d of the last %ds)",
            decision.address, seconds, decision.failures, previous + 1, self.policy.max_ban_s,
        )  # fmt: skip
        try:
            await self._save(decision, now, until)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.error(
                "guard: ban of %s not saved yet (%s); kept in the kernel", decision.address, exc
            )
            self.unsaved.append((decision, now, until))

    async def _previous_bans(self, address: IPAddress, now: float) -> int:
        try:
            pool = await self._pool()
            since = datetime.fromtimestamp(now - self.policy.max_ban_s, UTC)
            return await pool.fetchval(
                "SELECT count(*) FROM sip_bans WHERE address = $1::inet AND banned_at > $2",
                str(address), since,
            )  # fmt: skip
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return 0  # a first ban's length rather than none

    async def _save(self, decision: BanDecision, now: float, until: float) -> None:
        evidence = {"events": [asdict(e) for e in decision.evidence]}
        pool = await self._pool()
        await pool.execute(
            "INSERT INTO sip_bans (id, address, banned_at, until, failures, rule, evidence, node)"
            " VALUES (gen_random_uuid(), $1::inet, $2, $3, $4, $5, $6::jsonb, $7)",
            str(decision.address), datetime.fromtimestamp(now, UTC),
            datetime.fromtimestamp(until, UTC), decision.failures, decision.rule,
            json.dumps(evidence), self.settings.node_name,
        )  # fmt: skip

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except Exception:
            log.exception("guard: reconcile failed; the kernel's bans are left as they are")

    async def reconcile(self) -> None:
        """Make the kernel's ban set the bans in force in the database; count lifts and
        expiries of the bans this guard last applied."""
        while self.unsaved:
            decision, at, until = self.unsaved[0]
            await self._save(decision, at, until)
            self.unsaved.pop(0)
        pool = await self._pool()
        rows = await pool.fetch(
            "SELECT host(address) AS address, max(until) AS until FROM sip_bans"
            " WHERE lifted_at IS NULL AND until > now() GROUP BY address"
        )
        want = {ipaddress.ip_address(r["address"]): r["until"].timestamp() for r in rows}
        now = self.clock()
        for address, until in self.in_force.items():
            if address not in want:
                metrics.SIP_BANS.labels("expired" if until <= now + 1 else "lifted").inc()
                if until > now + 1:
                    log.info("guard: ban of %s lifted", address)
        if not await self.table.intact():
            log.warning("guard: table inet %s missing or altered: rebuilt", self.table.name)
            await self.table.create()
        kernel = await self.table.banned()
        add = {a: int(until - now) + 1 for a, until in want.items() if a not in kernel}
        remove = [a for a in kernel if a not in want]
        await self.table.apply(add, remove)
        self.in_force = want
        metrics.SIP_BANNED_ADDRESSES.set(len(want))

    async def aclose(self) -> None:
        self.tail.close()
        if self.pool is not None:
            await self.pool.close()


async def run_guard(settings: Settings) -> None:
    guard = Guard(settings)

    async def database_reachable() -> bool:
        pool = await guard._pool()
        await pool.fetchval("SELECT 1", timeout=2)
        return True

    try:
        async with health_served(
            "centrex guard", metrics.GUARD_REGISTRY,
            {"database": database_reachable, "nftables": guard.table.intact},
            host=settings.guard_http_host, port=settings.guard_http_port,
        ):  # fmt: skip
            await guard.run_forever()
    finally:
        await guard.aclose()
