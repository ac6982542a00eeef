"""Keeps Asterisk holding exactly the lines the database says: at start, periodically, and
whenever Asterisk comes back (a restart, a wiped astdb, a manual edit).

Order matters for correctness: Asterisk's state is read *before* the database's, so an object
created through the API between the two reads is at worst pushed twice (idempotent), never
deleted as a stray.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select, text, update
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
    PjsipObject,
    sorcery_cache_name,
)
from centrex.config import Settings
from centrex.control.call_registry import OUTBOUND_TRUNK
from centrex.core.sync_plan import ObjectKey, plan_sync
from centrex.db.models import Line, SyncState, Trunk
from centrex.services.credentials import mark_registrations_purged
from centrex.services.provisioning import AsteriskProjector

log = logging.getLogger(__name__)

PUSH_CONCURRENCY = 8


@dataclass
class ReconcileReport:
    put: int = 0
    deleted: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "<type>/<id>" written or removed


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
            fields = {}  # unreadable: treated as drifted, rewritten
        objects[(object_type, object_id)] = {str(k): str(v) for k, v in fields.items()}
    return objects


async def read_asterisk_objects(ami: AmiClient) -> dict[ObjectKey, dict[str, str]]:
    return parse_astdb_objects(await ami.db_get_tree(ASTDB_FAMILY))


async def put_past_the_cache(
    projector: AsteriskProjector, ami: AmiClient, obj: PjsipObject
) -> None:
    """PUT over ARI, as astdb says. What we read was astdb; what ARI works against is sorcery,
    memory cache first. An object removed from astdb behind sorcery's back can still be cached:
    ARI would then *update* the cached copy, answer 200, and astdb, which refuses to update a
    missing key, would stay without it. So first drop this object from the cache: ARI then
    finds astdb as we read it and creates or updates it there (and caches it again)."""
    await ami.sorcery_cache_expire_object(sorcery_cache_name(obj.type), obj.id)
    await projector.put(obj)


async def read_desired_objects(
    session: AsyncSession, projector: AsteriskProjector
) -> dict[str, list[PjsipObject]]:
    """Every object Asterisk should hold, by the line (SIP username) or trunk it belongs to."""
    lines = await session.scalars(select(Line).where(Line.deleted_at.is_(None)))
    desired = {line.sip_username: projector.line_objects(line) for line in lines}
    for trunk in await session.scalars(select(Trunk)):
        desired[f"trunk:{trunk.name}"] = projector.trunk_objects(trunk)
    return desired


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
    sessionmaker: async_sessionmaker[AsyncSession], projector: AsteriskProjector, ami: AmiClient
) -> ReconcileReport:
    actual = await read_asterisk_objects(ami)  # first: see the module docstring
    async with sessionmaker() as session:
        # Before the desired objects: a line is purged with the hash read here, which the
        # objects read next carry too (or a newer one, and then the purge is not marked done).
        to_purge = list(
            await session.scalars(
                select(Line).where(Line.deleted_at.is_(None), Line.registrations_purge_pending)
            )
        )
        desired_by_line = await read_desired_objects(session, projector)
    desired = [obj for objs in desired_by_line.values() for obj in objs]
    plan = plan_sync(desired, actual)
    report = ReconcileReport()
    failed_users: set[str] = set()
    # Writes go type by type (auths, then aors, then endpoints: what an endpoint names exists
    # before it), each type a few requests at a time: Asterisk works through its sorcery
    # observers far faster that way than line by line, and a restore of 10,000 lines is not
    # 30,000 sequential round trips.
    gate = asyncio.Semaphore(PUSH_CONCURRENCY)

    async def put(obj: PjsipObject) -> None:
        async with gate:
            try:
                await put_past_the_cache(projector, ami, obj)
            except AsteriskUnavailable:
                raise
            except AsteriskError as exc:
                report.failed += 1
                report.errors.append(str(exc))
                failed_users.add(obj.id)
                metrics.RECONCILE_REPAIRS.labels(obj.type, "put", "failed").inc()
                return
        report.put += 1
        report.changed.append(f"{obj.type}/{obj.id}")
        metrics.RECONCILE_REPAIRS.labels(obj.type, "put", "ok").inc()

    for object_type in PJSIP_OBJECT_TYPES:
        await asyncio.gather(*(put(o) for o in plan.put if o.type == object_type))
    for object_type, object_id in plan.delete:
        await projector.delete(object_type, object_id)
        # An astdb entry sorcery cannot load (hand-written, or from an older Asterisk) is
        # invisible to ARI, whose delete then answers 404: remove the key itself.
        await ami.db_del(f"{ASTDB_FAMILY}/{object_type}", object_id)
        report.deleted += 1
        report.changed.append(f"{object_type}/{object_id}")
        metrics.RECONCILE_REPAIRS.labels(object_type, "delete", "ok").inc()
    await purge_old_registrations(sessionmaker, projector, to_purge, report, failed_users)
    if plan.put or plan.delete:
        log.info(
            "reconciled Asterisk: %d objects written, %d removed, %d failed: %s",
            report.put,
            report.deleted,
            report.failed,
            " ".join(report.changed[:20]) + (" ..." if len(report.changed) > 20 else ""),
        )
    metrics.LINES_PROVISIONED.set(sum(1 for key in desired_by_line if not key.startswith("trunk:")))
    async with sessionmaker() as session:
        synced = set(desired_by_line) - failed_users
        if synced:
            await session.execute(
                update(Line)
                .where(Line.sip_username.in_(synced), Line.sync_state != SyncState.synced)
                .values(sync_state=SyncState.synced, sync_error=None)
            )
            await session.commit()
    return report


async def purge_old_registrations(
    sessionmaker: async_sessionmaker[AsyncSession],
    projector: AsteriskProjector,
    lines: list[Line],
    report: ReconcileReport,
    failed_users: set[str],
) -> None:
    """Lines whose credentials were renewed while Asterisk could not be told: the new hash is
    in Asterisk now (written above), so remove the devices registered with the old one."""
    for line in lines:
        if line.sip_username in failed_users:
            continue  # its new auth did not go in: the old devices could register again
        try:
            await projector.drop_registrations(line)
        except AsteriskUnavailable:
            raise
        except AsteriskError as exc:
            report.failed += 1
            report.errors.append(str(exc))
            failed_users.add(line.sip_username)
            continue
        async with sessionmaker() as session:
            await mark_registrations_purged(session, line.id, line.sip_ha1)
        report.changed.append(f"contacts/{line.sip_username}")
        log.info("line %s: registrations made with its old credentials removed", line.sip_username)


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
                    if self._asterisk_started is not None:
                        log.info("Asterisk restarted (%s); reconciling", started)
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
                    self.last_report = await reconcile_lines(self.sessionmaker, self.projector, ami)
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
