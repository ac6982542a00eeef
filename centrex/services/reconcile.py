"""What is left to reconcile once Asterisk reads lines and trunks from the database itself
(docs/provisioning-realtime.md): its caches, and strays.

- Lines changed while Asterisk could not be told (``sync_state`` pending): their cached copies
  are dropped now, and the devices registered with renewed credentials removed.
- Trunks changed since the last pass (or at the first): their cached copies and the identify
  cache are dropped.
- Objects left in astdb (family ``centrex``: pushed by hand over ARI, or by centrex before
  migration 0023) are removed: the database alone says what a line is.
- The emergency route (astdb, for the dialplan when the daemon cannot decide).

A pass reads only what changed (pending lines) and what is small (trunks, the astdb family of
strays, normally empty): its cost does not grow with the number of lines. Asterisk restarted
or its astdb wiped needs nothing: every line is read from the database at its first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from centrex import metrics
from centrex.asterisk.ami import AmiClient
from centrex.asterisk.ari import AriClient
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.asterisk.pjsip_objects import (
    ASTDB_FAMILY,
    EMERGENCY_TRUNK_KEY,
    PJSIP_OBJECT_TYPES,
    TRUNK_PREFIX,
    sorcery_cache_name,
)
from centrex.config import Settings
from centrex.control.call_registry import OUTBOUND_TRUNK
from centrex.core.sync_plan import ObjectKey
from centrex.db.models import Line, SyncState, Trunk
from centrex.services.credentials import mark_registrations_purged
from centrex.services.provisioning import AsteriskProjector

log = logging.getLogger(__name__)

#: What identifies a trunk's objects in Asterisk: a change to any of it is expired.
TrunkKey = tuple[str, str, int, str | None, str | None]


@dataclass
class ReconcileReport:
    expired: int = 0  # lines and trunks whose cached copies were dropped
    deleted: int = 0  # stray astdb objects removed
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "<type>/<id>" expired or removed
    trunks: frozenset[TrunkKey] = frozenset()  # as read this pass: the next compares


def parse_astdb_objects(entries: Mapping[str, str]) -> dict[ObjectKey, dict[str, str]]:
    """astdb keys ``<type>/<id>`` with a JSON object of fields, as res_sorcery_astdb writes them."""
    objects: dict[ObjectKey, dict[str, str]] = {}
    for key, value in entries.items():
        object_type, _, object_id = key.partition("/")
        if object_type not in PJSIP_OBJECT_TYPES or not object_id:
            continue
        try:
            fields = json.loads(value)
        except ValueError:
            fields = {}
        objects[(object_type, object_id)] = {str(k): str(v) for k, v in fields.items()}
    return objects


async def read_asterisk_objects(ami: AmiClient) -> dict[ObjectKey, dict[str, str]]:
    """Objects in astdb under the ``centrex`` family: strays, since migration 0023."""
    return parse_astdb_objects(await ami.db_get_tree(ASTDB_FAMILY))


async def reconcile_emergency_route(
    sessionmaker: async_sessionmaker[AsyncSession], ami: AmiClient
) -> None:
    """Keep in astdb the trunk emergency calls leave through, for the dialplan to put them
    through when the daemon cannot decide them (``centrex-emergency`` in extensions.conf.j2).
    astdb, not a dialplan global: it survives an Asterisk restart with the daemon down."""
    async with sessionmaker() as session:  # the daemon's own rule for the way out
        name = (await session.execute(text(OUTBOUND_TRUNK))).scalar()
    desired = f"{TRUNK_PREFIX}{name}" if name else None
    family, key = EMERGENCY_TRUNK_KEY
    # DBGetTree, not DBGet: Asterisk 22 answers DBGet in a way panoramisk waits on forever.
    if (await ami.db_get_tree(family)).get(key) == desired:
        return
    if desired is None:
        await ami.db_del(family, key)
    else:
        await ami.db_put(family, key, desired)
    log.info("emergency calls' fallback route: %s", desired or "none (no trunk)")


async def reconcile_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
    projector: AsteriskProjector,
    ami: AmiClient,
    *,
    trunks_seen: frozenset[TrunkKey] | None = None,
) -> ReconcileReport:
    """One pass; ``trunks_seen``: the trunks as the previous pass read them (None: expire all)."""
    report = ReconcileReport()
    for object_type, object_id in await read_asterisk_objects(ami):
        await ami.db_del(f"{ASTDB_FAMILY}/{object_type}", object_id)
        await ami.sorcery_cache_expire_object(sorcery_cache_name(object_type), object_id)
        report.deleted += 1
        report.changed.append(f"{object_type}/{object_id}")
        metrics.RECONCILE_REPAIRS.labels(object_type, "delete", "ok").inc()

    async with sessionmaker() as session:
        pending = list(
            await session.scalars(select(Line).where(Line.sync_state != SyncState.synced))
        )
        trunks = frozenset(
            (t.name, t.host, t.port, t.username, t.password)
            for t in await session.scalars(select(Trunk))
        )
        live = await session.scalar(
            select(func.count()).select_from(Line).where(Line.deleted_at.is_(None))
        )
    metrics.LINES_PROVISIONED.set(live or 0)

    for line in pending:
        await _expire_line(sessionmaker, projector, ami, line, report)

    report.trunks = trunks
    if trunks_seen is None or trunks != trunks_seen:
        names = {t[0] for t in trunks | (trunks_seen or frozenset())}
        for name in sorted(names):
            await projector.forget_trunk(name, ami=ami)
            report.expired += 1
            report.changed.append(f"trunk/{name}")
    if report.deleted or pending:
        log.info(
            "reconciled Asterisk: %d strays removed, %d cached copies expired, %d failed: %s",
            report.deleted,
            report.expired,
            report.failed,
            " ".join(report.changed[:20]) + (" ..." if len(report.changed) > 20 else ""),
        )
    return report


async def _expire_line(
    sessionmaker: async_sessionmaker[AsyncSession],
    projector: AsteriskProjector,
    ami: AmiClient,
    line: Line,
    report: ReconcileReport,
) -> None:
    """A line changed while Asterisk could not be told: drop its cached copy, and the devices
    registered with credentials renewed meanwhile."""
    purge = line.registrations_purge_pending and line.deleted_at is None
    try:
        await projector.forget_line(line.sip_username, drop_registrations=purge, ami=ami)
    except AsteriskError as exc:  # this node answered (the pass began with it): another did not
        report.failed += 1
        report.errors.append(str(exc))
        metrics.RECONCILE_REPAIRS.labels("line", "expire", "failed").inc()
        return
    report.expired += 1
    report.changed.append(f"line/{line.sip_username}")
    metrics.RECONCILE_REPAIRS.labels("line", "expire", "ok").inc()
    async with sessionmaker() as session:
        if purge:
            # Only if the hash is still the one read: a renewal since has its own to remove.
            await mark_registrations_purged(session, line.id, line.sip_ha1)
            log.info("line %s: registrations made with its old credentials removed",
                     line.sip_username)  # fmt: skip
            return
        await session.execute(
            update(Line)
            # Unless it changed again meanwhile (and its own expiry failed): then next pass.
            .where(Line.id == line.id, Line.sync_error.is_not_distinct_from(line.sync_error))
            .values(sync_state=SyncState.synced, sync_error=None)
            .execution_options(audited="bookkeeping only")
        )
        await session.commit()


class Reconciler:
    """Runs :func:`reconcile_lines` periodically and as soon as Asterisk is back (started again,
    or reachable again).

    It opens an AMI session for each pass and closes it after: while any AMI session is open,
    Asterisk renders every event of every channel as AMI text, about 1 ms of its CPU per call
    (docs/benchmarks.md). Between passes it watches Asterisk over ARI (``/asterisk/info``, a
    small HTTP request every ``asterisk_watch_interval_s``): a new start time, or Asterisk
    answering again after it did not, triggers a pass at once.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        projector: AsteriskProjector,
        ari: AriClient,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.projector = projector
        self.ari = ari
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._asterisk_started: str | None = None  # Asterisk's startup time, as last seen
        self.passes = 0
        self.last_report: ReconcileReport | None = None
        self._trunks_seen: frozenset[TrunkKey] | None = None

    def trigger(self) -> None:
        self._wake.set()

    async def watch_asterisk(self) -> None:
        while True:
            try:
                status = (await self.ari.info()).get("status", {})
            except AsteriskError:
                if self._asterisk_started is not None:
                    log.warning("Asterisk not answering ARI; repair when it is back")
                self._asterisk_started = None
                metrics.ASTERISK_CONNECTED.labels("ari").set(0)
            else:
                started = str(status.get("startup_time", "?"))
                metrics.ASTERISK_CONNECTED.labels("ari").set(1)
                if started != self._asterisk_started:
                    self.projector.asterisk_answers()  # AMI known down: try it again now
                    if self._asterisk_started is not None:
                        log.info("Asterisk restarted (%s); reconciling", started)
                    # Its caches are empty: the trunks are read into them again at once, for
                    # emergency calls to go out even if the database then does not answer.
                    self._trunks_seen = None
                    metrics.ASTERISK_RECONNECTS.labels("ari").inc()
                    self._asterisk_started = started
                    self.trigger()
            await asyncio.sleep(self.settings.asterisk_watch_interval_s)

    @contextlib.asynccontextmanager
    async def ami_session(self) -> AsyncIterator[AmiClient]:
        ami = AmiClient.from_settings(self.settings, track_connection=False)
        ami.start()
        try:
            await ami.wait_connected(self.settings.asterisk_timeout_s)
            yield ami
        finally:
            ami.close()

    async def run_forever(self) -> None:
        self._watcher = asyncio.create_task(self.watch_asterisk())
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.reconcile_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            started = time.perf_counter()
            try:
                async with self.ami_session() as ami:
                    self.last_report = await reconcile_lines(
                        self.sessionmaker, self.projector, ami, trunks_seen=self._trunks_seen
                    )
                    self._trunks_seen = self.last_report.trunks
                    await reconcile_emergency_route(self.sessionmaker, ami)
                    await self._count_registered(ami)
                self.passes += 1
                metrics.RECONCILE_PASSES.labels("ok").inc()
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
            except AsteriskUnavailable as exc:
                metrics.RECONCILE_PASSES.labels("asterisk_unavailable").inc()
                log.warning("reconcile postponed, Asterisk unavailable: %s", exc)
            except Exception:
                metrics.RECONCILE_PASSES.labels("failed").inc()
                log.exception("reconcile pass failed; retrying at the next interval")

    async def _count_registered(self, ami: AmiClient) -> None:
        """Lines with a device registered: one contact per line (max_contacts=1), kept by the
        registrar in astdb family ``registrar/contact`` as ``<aor>;@<hash>``."""
        contacts = await ami.db_get_tree("registrar/contact")
        aors = {key.split(";@", 1)[0] for key in contacts}
        metrics.LINES_REGISTERED.set(sum(1 for aor in aors if not aor.startswith("trunk-")))

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
