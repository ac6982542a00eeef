"""`centrex control`: the daemon's process — its database pools, its Asterisk clients, its
health endpoint — around :class:`centrex.control.daemon.CallControl`."""

from __future__ import annotations

from centrex.asterisk.ari import AriClient
from centrex.asterisk.ari_events import AriWebSocket
from centrex.asterisk.file_tail import FileTail
from centrex.cdr.journal_path import journal_path
from centrex.config import Settings
from centrex.control.call_registry import CallRegistry
from centrex.control.daemon import CallControl
from centrex.db.session import make_engine
from centrex.metrics import DAEMON_REGISTRY
from centrex.service_http import health_served


async def run_daemon(settings: Settings) -> None:
    # The call path has its own asyncpg pool in the registry (a fixed set of connections: a
    # burst of calls waits its turn for one rather than forking a backend per call); this engine
    # only records the rare cutoff.
    engine = make_engine(
        settings.database_url_required,
        pool_size=2,
        max_overflow=2,
        # A broken connection is dropped by the pool on its first error rather than pinged
        # before every use.
        pool_pre_ping=False,
        pool_timeout=settings.call_path_db_timeout_s,
        connect_args={
            "timeout": settings.call_path_db_timeout_s,
            "command_timeout": settings.call_path_db_timeout_s,
        },
    )
    registry = CallRegistry(
        engine, settings.node_name, settings.max_call_duration_s, pool_size=20, settings=settings
    )
    websocket = AriWebSocket(settings)
    ari = AriClient(websocket)  # per-call requests ride the events websocket
    ari_http = AriClient.from_settings(settings, "control")
    control = CallControl(settings, registry, ari, FileTail(journal_path(settings)), ari_http)
    # CDRs are another process's business (`centrex cdr`, centrex/cdr/): a slow CDR batch or a
    # crash of the shipper never delays or stops a call decision.

    async def database_reachable() -> bool:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        return True

    async def ari_connected() -> bool:
        return control.connected.is_set()

    async def following_calls() -> bool:
        # cel_custom writes into this directory (and does not create it): without it, answers
        # and hang-ups would only be seen by the sweep.
        return control.following and control.cel.path.parent.is_dir()

    checks = {"ari": ari_connected, "cel": following_calls, "database": database_reachable}
    try:
        async with health_served(
            "centrex call control", DAEMON_REGISTRY, checks,
            host=settings.control_http_host, port=settings.control_http_port,
        ):  # fmt: skip
            await control.run(websocket)
    finally:
        control.cutoffs.cancel_all()
        await ari.aclose()
        await ari_http.aclose()
        await registry.aclose()
        await engine.dispose()
