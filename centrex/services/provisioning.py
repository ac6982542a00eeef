"""Pushing provisioned objects into Asterisk (the projection of the database)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from centrex import metrics
from centrex.asterisk.ari import AriClient
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.asterisk.pjsip_objects import (
    LINE_OBJECT_TYPES,
    PJSIP_OBJECT_TYPES,
    LineSpec,
    PjsipObject,
    TrunkSpec,
    line_objects,
    trunk_objects,
)
from centrex.config import Settings
from centrex.db.models import Line, Trunk

PJSIP = "res_pjsip"


class AsteriskProjector:
    """Writes and removes res_pjsip objects over ARI; every call is idempotent."""

    def __init__(self, ari: AriClient, media_address: str, qualify_frequency_s: int = 0) -> None:
        self.ari = ari
        self.media_address = media_address
        self.qualify_frequency_s = qualify_frequency_s

    @classmethod
    def from_settings(cls, ari: AriClient, settings: Settings) -> AsteriskProjector:
        return cls(ari, settings.rtp_address, settings.sip_qualify_frequency_s)

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

    async def put(self, obj: PjsipObject) -> None:
        await self.ari.put_object(PJSIP, obj.type, obj.id, obj.fields)

    async def delete(self, object_type: str, object_id: str) -> None:
        await self.ari.delete_object(PJSIP, object_type, object_id)

    async def push_line(self, line: Line) -> None:
        async with counted("line", "push"):
            for obj in self.line_objects(line):
                await self.put(obj)

    async def drop_registrations(self, line: Line) -> None:
        """Remove every registered device (contact) of the line; calls in progress stay up.

        res_pjsip has no AMI or ARI action that unregisters a device of an inbound
        registration (``PJSIPUnregister`` is for Asterisk's own outbound registrations), and
        contact ids hash the device's URI, which centrex does not know. Deleting the aor makes
        res_pjsip delete its contacts (location.c, ``aor_deleted_observer``); the aor is
        written again at once. A call placed to the line in between finds no device (480),
        as it would after this anyway; dialogs in progress never look the aor up again."""
        aor = next(o for o in self.line_objects(line) if o.type == "aor")
        async with counted("line", "drop_registrations"):
            await self.delete(aor.type, aor.id)
            await self.put(aor)

    async def remove_line(self, username: str) -> None:
        async with counted("line", "remove"):
            for object_type in reversed(LINE_OBJECT_TYPES):
                await self.delete(object_type, username)

    async def push_trunk(self, trunk: Trunk) -> None:
        async with counted("trunk", "push"):
            for obj in self.trunk_objects(trunk):
                await self.put(obj)

    async def remove_trunk(self, trunk: Trunk) -> None:
        endpoint_id = self.trunk_objects(trunk)[-1].id
        async with counted("trunk", "remove"):
            for object_type in reversed(PJSIP_OBJECT_TYPES):
                await self.delete(object_type, endpoint_id)


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
