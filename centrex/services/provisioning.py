"""Telling Asterisk that a line or trunk changed in the database (docs/provisioning-realtime.md).

Asterisk reads lines and trunks from PostgreSQL itself (sorcery realtime: views over centrex's
tables), through a memory cache. Nothing is pushed: creating a line needs nothing at all (a
cache miss reads the new row); changing or deleting one drops its cached copy over AMI, after
the transaction committed, so the next lookup reads the row as it is now. A renewal of its
credentials also removes the devices registered with the old ones (their contacts, which the
registrar keeps per node in astdb).

Each piece of work opens a short AMI session and closes it: while any AMI session is open,
Asterisk renders every event of every channel as text (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import hashlib
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
from centrex.db.models import Line, Trunk

#: The registrar's astdb family: one key ``<aor>;@<hash>`` per registered device.
CONTACTS_FAMILY = "registrar/contact"


class AsteriskProjector:
    """Expires what Asterisk caches of lines and trunks; every call is idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.media_address = settings.rtp_address
        self.qualify_frequency_s = settings.sip_qualify_frequency_s

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
            await ami.wait_connected(s.asterisk_timeout_s)
            yield ami
        finally:
            ami.close()

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
        nodes: list[tuple[str, int] | None] = [None]
        for node in self.settings.asterisk_cache_nodes:
            host, _, port = node.rpartition(":")
            nodes.append((host, int(port)))
        for node in nodes:
            try:
                if node is None and ami is not None:
                    await work(ami)
                    continue
                async with self.ami_session(node) as session:
                    await work(session)
            except AsteriskError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


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
