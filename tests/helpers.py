"""Looking into the real Asterisk from the tests, independently of centrex's own clients."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx

from centrex.config import Settings
from centrex.sandbox.asterisk import AsteriskSandbox


def ari_object(settings: Settings, object_type: str, object_id: str) -> dict | None:
    response = httpx.get(
        f"{settings.ari_url}/asterisk/config/dynamic/res_pjsip/{object_type}/{object_id}",
        auth=(settings.ari_username, settings.ari_password.get_secret_value()),
        timeout=5,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return {t["attribute"]: t["value"] for t in response.json()}


def put_ari_object(settings: Settings, object_type: str, object_id: str, fields: dict) -> None:
    response = httpx.put(
        f"{settings.ari_url}/asterisk/config/dynamic/res_pjsip/{object_type}/{object_id}",
        auth=(settings.ari_username, settings.ari_password.get_secret_value()),
        json={"fields": [{"attribute": k, "value": v} for k, v in fields.items()]},
        timeout=5,
    )
    response.raise_for_status()


def delete_ari_object(settings: Settings, object_type: str, object_id: str) -> None:
    httpx.delete(
        f"{settings.ari_url}/asterisk/config/dynamic/res_pjsip/{object_type}/{object_id}",
        auth=(settings.ari_username, settings.ari_password.get_secret_value()),
        timeout=5,
    )


def provisioned_keys(asterisk: AsteriskSandbox) -> set[str]:
    """Every astdb key holding a provisioned object (``/centrex/<type>/<id>``)."""
    out = asterisk.cli("database show centrex")
    return {ln.split(":")[0].strip() for ln in out.splitlines() if ln.startswith("/centrex/")}


def emergency_route(asterisk: AsteriskSandbox) -> str | None:
    """The trunk the reconciler keeps in astdb for emergency calls nobody can decide."""
    out = asterisk.cli("database get centrex_routes emergency_trunk")
    return out.split("Value:", 1)[1].strip() if "Value:" in out else None


def sql(database_url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """One statement straight against PostgreSQL, from synchronous test code."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def crash_asterisk(asterisk: AsteriskSandbox, control_service, wait_until, callers) -> None:
    """SIGKILL Asterisk (its calls vanish: no HANGUP, no LINKEDID_END, ever), start it again,
    stop the callers' sipps, and wait until the daemon has reconnected."""
    from centrex.sandbox.processes import DAEMON_READY

    registrations = control_service.log_text().count(DAEMON_READY)
    os.kill(asterisk.status().pid, signal.SIGKILL)
    wait_until(lambda: not asterisk.is_running(), 10, "Asterisk dead")
    asterisk.start()
    for run in callers:
        run.process.kill()
    wait_until(
        lambda: control_service.log_text().count(DAEMON_READY) > registrations, 20, "reconnect"
    )
