"""Telling Asterisk that a line or trunk changed in the database (docs/provisioning-realtime.md).

Asterisk reads lines and trunks from PostgreSQL itself (sorcery realtime: views over centrex's
tables), through a memory cache. Nothing is pushed: creating a line needs nothing at all (a
cache miss reads the new row); changing or deleting one drops its cached copy over AMI, after
the transaction committed, so the next lookup reads the row as it is now. A renewal of its
credentials also removes the devices registered with the old ones (their contacts, which the
registrar keeps per node in astdb).

Each piece of work opens a short AMI session and closes it: while any AMI session is open,
Asterisk renders every event of every channel as text (docs/benchmarks.md).

A node whose AMI refused a connection is known down (centrex.core.node_health): changes fail
at once for it (committed already; the line stays pending and the reconciler delivers the
expiry later) instead of each waiting for AMI to time out, and a probe in the background tries
it again with a growing backoff; the first successful login marks it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from centrex import metrics
from centrex.asterisk.ami import AmiClient
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.asterisk.pjsip_objects import (
    TRUNK_PREFIX,
    LineSpec,
    PjsipObject,
    TrunkSpec,
    line_objects,
    sorcery_cache_name,
    trunk_objects,
)
from centrex.asterisk.realtime import contacts_of, line_cache_entries, trunk_cache_entries
from centrex.config import Settings
from centrex.core.node_health import NodeHealth
from centrex.db.models import Line, Trunk

log = logging.getLogger(__name__)

#: The registrar's astdb family: one key ``<aor>;@<hash>`` per registered device.
CONTACTS_FAMILY = "registrar/contact"


class AsteriskProjector:
    """Expires what Asterisk caches of lines and trunks; every call is idempotent."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.media_address = settings.rtp_address
        self.qualify_frequency_s = settings.sip_qualify_frequency_s
        self.clock = clock
        # Per process (each API worker learns for itself): a wrong guess only defers an
        # expiry to the reconciler, which reads what is pending from the database.
        self.health = NodeHealth()
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._wake_probes = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> AsteriskProjector:
        return cls(settings)

    # What Asterisk serves for a line or trunk (the views of migration 0023 say the same; the
    # tests compare the two).
    def line_objects(self, line: Line) -> list[PjsipObject]:
        return line_objects(
            LineSpec(
                username=line.sip_username,
                ha1=line.sip_ha1,
                realm=line.sip_realm,
                media_address=self.media_address,
                media_encryption=line.media_encryption,
                qualify_frequency_s=self.qualify_frequency_s,
            )
        )

    def trunk_objects(self, trunk: Trunk) -> list[PjsipObject]:
        return trunk_objects(
            TrunkSpec(
                name=trunk.name,
                host=trunk.host,
                port=trunk.port,
                username=trunk.username,
                password=trunk.password,
                media_address=self.media_address,
                edge=self.settings.sip_proxy,
            )
        )

    @contextlib.asynccontextmanager
    async def ami_session(self, node: tuple[str, int] | None = None) -> AsyncIterator[AmiClient]:
        """A short AMI session with this node's Asterisk, or another ``node`` (host, port)."""
        s = self.settings
        host, port = node or (s.asterisk_host, s.ami_port)
        ami = AmiClient(
            host, port, s.ami_username, s.ami_secret.get_secret_value(),
            timeout=s.asterisk_timeout_s, track_connection=False,
        )  # fmt: skip
        ami.start()
        try:
            await ami.wait_connected(s.asterisk_timeout_s, fail_fast=True)
            yield ami
        finally:
            ami.close()

    def nodes(self) -> list[tuple[str, int]]:
        """This node first, then the others (CENTREX_ASTERISK_CACHE_NODES)."""
        s = self.settings
        nodes = [(s.asterisk_host, s.ami_port)]
        for node in s.asterisk_cache_nodes:
            host, _, port = node.rpartition(":")
            nodes.append((host, int(port)))
        return nodes

    def _node_down(self, node: tuple[str, int], exc: AsteriskError) -> None:
        name = node_name(node)
        if not self.health.is_down(name):
            log.warning("Asterisk %s marked down (%s); cache expiries left to the reconciler "
                        "until it answers again", name, exc)  # fmt: skip
            self.health.mark_down(name, self.clock())
            metrics.CACHE_NODE_UP.labels(name).set(0)
        probe = self._probes.get(name)
        if probe is None or probe.done():
            self._probes[name] = asyncio.get_running_loop().create_task(self._probe(node))

    async def _probe(self, node: tuple[str, int]) -> None:
        """Try a down node again, after a backoff that grows, until it logs us in."""
        name = node_name(node)
        while self.health.is_down(name):
            # Woken early when Asterisk is seen back (the reconciler's ARI watch).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake_probes.wait(), self.health.wait_s(name, self.clock())
                )
            self._wake_probes.clear()
            try:
                async with self.ami_session(node):
                    pass
            except AsteriskError:
                self.health.mark_down(name, self.clock())
                continue
            self.health.mark_up(name)
            metrics.CACHE_NODE_UP.labels(name).set(1)
            log.info("Asterisk %s answers AMI again", name)

    def asterisk_answers(self) -> None:
        """Asterisk was seen answering (ARI): probe every node known down now, not at the end
        of its backoff, so changes reach it again at once."""
        self._wake_probes.set()

    def close(self) -> None:
        for probe in self._probes.values():
            probe.cancel()

    async def forget_line(
        self, username: str, *, drop_registrations: bool = False, ami: AmiClient | None = None
    ) -> None:
        """Drop the line's cached objects (and, if asked, its registered devices) on every
        node; ``ami``: a session with this node's Asterisk already open."""

        async def work(session: AmiClient) -> None:
            await expire(session, line_cache_entries(username))
            if drop_registrations:  # each node holds the devices registered to it
                await drop_contacts(session, username)

        async with counted("line", "expire"):
            await self._on_every_node(work, ami)

    async def forget_trunk(self, name: str, *, ami: AmiClient | None = None) -> None:
        """Drop the trunk's cached objects, and the identify cache, which holds every trunk's
        (read whole: a new trunk is seen only once it is read again); then read them again, so
        they are cached before any call needs them: an emergency call goes out through the
        trunk even while the database does not answer."""

        async def work(session: AmiClient) -> None:
            await expire(session, trunk_cache_entries(name))
            await refill(session, sorcery_cache_name("identify"))
            await warm_trunk(session, name)

        async with counted("trunk", "expire"):
            await self._on_every_node(work, ami)

    async def _on_every_node(
        self, work: Callable[[AmiClient], Awaitable[None]], ami: AmiClient | None
    ) -> None:
        """This node first, then the others (CENTREX_ASTERISK_CACHE_NODES): every one is tried;
        the first failure is raised afterwards (the line stays pending, the reconciler retries
        them all: expiring twice is harmless)."""
        failure: AsteriskError | None = None
        for index, node in enumerate(self.nodes()):
            name = node_name(node)
            try:
                if index == 0 and ami is not None:
                    await work(ami)  # the caller's own session with this node
                    continue
                if self.health.is_down(name):
                    raise AsteriskUnavailable(f"Asterisk {name} known down (probed meanwhile)")
                async with self.ami_session(node) as session:
                    await work(session)
            except AsteriskError as exc:
                if isinstance(exc, AsteriskUnavailable) and not self.health.is_down(name):
                    self._node_down(node, exc)
                metrics.CACHE_EXPIRIES_UNDELIVERED.labels(name).inc()
                failure = failure or exc
        if failure is not None:
            raise failure


def node_name(node: tuple[str, int]) -> str:
    return f"{node[0]}:{node[1]}"


async def expire(ami: AmiClient, entries: list[tuple[str, str]]) -> None:
    for cache, object_id in entries:
        # False when the object was not cached (or Asterisk has no such cache): nothing to do.
        await ami.sorcery_cache_expire_object(cache, object_id)


async def refill(ami: AmiClient, cache: str) -> None:
    """Empty a whole-table cache and read the table into it again at once: emptied only, it
    would be read at the next SIP request, which might then wait on a database that does not
    answer (every request goes through identify)."""
    with contextlib.suppress(AsteriskError):  # no such cache: nothing cached
        await ami.action({"Action": "SorceryMemoryCachePopulate", "Cache": cache})


async def warm_trunk(ami: AmiClient, name: str) -> None:
    """Have Asterisk read a trunk's endpoint, aor and auth (PJSIPShowEndpoint loads each, into
    the cache)."""
    with contextlib.suppress(AsteriskError):  # deleted: nothing to read
        await ami.action(
            {"Action": "PJSIPShowEndpoint", "Endpoint": f"{TRUNK_PREFIX}{name}"}, as_list=True
        )


async def drop_contacts(ami: AmiClient, aor: str) -> int:
    """Remove every device registered to ``aor`` on this node. res_pjsip has no AMI or ARI
    action that unregisters a device of an inbound registration; the registrar reads contacts
    from astdb at every lookup, so deleting the keys is enough (a call to the line then finds no
    device; dialogs in progress never look the aor up again).

    A contact's key is ``<aor>;@<md5 of its URI>`` (res_pjsip location.c): the endpoint's
    contacts (PJSIPShowEndpoint) give the URIs, so the cost does not grow with the number of
    lines. Should a key not be where its URI says, the whole family is read instead."""
    try:
        events = await ami.action({"Action": "PJSIPShowEndpoint", "Endpoint": aor}, as_list=True)
        listed = True
    except AsteriskError:
        events, listed = [], False  # no such endpoint (any more): look in the family itself
    uris = [
        e.get("URI", "")
        for e in (events if isinstance(events, list) else [events])
        if e.get("Event") == "ContactStatusDetail" and e.get("AOR") == aor
    ]
    dropped = 0
    for uri in uris:
        if await ami.db_del(CONTACTS_FAMILY, f"{aor};@{hashlib.md5(uri.encode()).hexdigest()}"):
            dropped += 1
    if listed and dropped == len(uris):
        return dropped
    for key in contacts_of(aor, await ami.db_get_tree(CONTACTS_FAMILY)):
        if await ami.db_del(CONTACTS_FAMILY, key):
            dropped += 1
    return dropped


@contextlib.asynccontextmanager
async def counted(kind: str, operation: str) -> AsyncIterator[None]:
    try:
        yield
    except AsteriskUnavailable:
        metrics.PROVISIONING_OPS.labels(kind, operation, "deferred").inc()  # reconciler's job
        raise
    except AsteriskError:
        metrics.PROVISIONING_OPS.labels(kind, operation, "failed").inc()
        raise
    metrics.PROVISIONING_OPS.labels(kind, operation, "ok").inc()
