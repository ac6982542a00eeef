"""``centrex cdr``: the CDR shipper as a process of its own.

It shares nothing with the call-control daemon but the journal it reads and the database it
writes: a slow batch, a long fraud query or a crash here never delays or stops a call decision,
and the daemon dying never stops CDRs. Its ``/metrics`` and health are on
``CENTREX_CDR_HTTP_HOST:CENTREX_CDR_HTTP_PORT``.
"""

from __future__ import annotations

import asyncio
import logging

from centrex.asterisk.ari import AriClient
from centrex.cdr.shipper import CdrShipper
from centrex.config import Settings
from centrex.metrics import CDR_REGISTRY
from centrex.service_http import health_app, serve_health

log = logging.getLogger(__name__)

READY = "CDRs: shipping"  # logged once the checkpoint is loaded (see CdrShipper.step)


async def run_shipper(settings: Settings) -> None:
    ari = AriClient.from_settings(settings)
    shipper = CdrShipper(settings, ari=ari)
    background: list[asyncio.Task[None]] = []

    async def database_reachable() -> bool:
        pool = await shipper._pool()
        await pool.fetchval("SELECT 1", timeout=2)
        return True

    async def journal_directory() -> bool:
        # cel_custom writes into this directory and does not create it.
        return shipper.journal.path.parent.is_dir()

    if settings.cdr_http_port:
        app = health_app(
            "centrex CDR shipper",
            CDR_REGISTRY,
            {"database": database_reachable, "journal": journal_directory},
        )
        background.append(
            asyncio.create_task(
                serve_health(app, settings.cdr_http_host, settings.cdr_http_port, "CDRs", log)
            )
        )
    try:
        await shipper.run_forever()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await shipper.aclose()
        await ari.aclose()
