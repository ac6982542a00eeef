"""``centrex cdr``: the CDR shipper as a process of its own.

It shares nothing with the call-control daemon but the journal it reads and the database it
writes: a slow batch, a long fraud query or a crash here never delays or stops a call decision,
and the daemon dying never stops CDRs. Its ``/metrics`` and health are on
``CENTREX_CDR_HTTP_HOST:CENTREX_CDR_HTTP_PORT``.
"""

from __future__ import annotations

import logging

from centrex.asterisk.ari import AriClient
from centrex.cdr.shipper import CdrShipper
from centrex.config import Settings
from centrex.metrics import CDR_REGISTRY
from centrex.service_http import health_served

log = logging.getLogger(__name__)

READY = "CDRs: shipping"  # logged once the checkpoint is loaded (see CdrShipper.step)


async def run_shipper(settings: Settings) -> None:
    ari = AriClient.from_settings(settings, "cdr")
    shipper = CdrShipper(settings, ari=ari)

    async def database_reachable() -> bool:
        pool = await shipper._pool()
        await pool.fetchval("SELECT 1", timeout=2)
        return True

    async def journal_directory() -> bool:
        # cel_custom writes into this directory and does not create it.
        return shipper.journal.path.parent.is_dir()

    try:
        async with health_served(
            "centrex CDR shipper", CDR_REGISTRY,
            {"database": database_reachable, "journal": journal_directory},
            host=settings.cdr_http_host, port=settings.cdr_http_port,
        ):  # fmt: skip
            await shipper.run_forever()
    finally:
        await shipper.aclose()
        await ari.aclose()
