"""The ``centrex`` command: run the platform, its parts, and the local sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import httpx
import typer
from pydantic import SecretStr, ValidationError

from centrex import logsafe
from centrex.config import WILDCARD_ADDRESSES, Settings, settings_env
from centrex.supervisor import Supervisor

app = typer.Typer(no_args_is_help=True, help=__doc__)
sandbox_app = typer.Typer(no_args_is_help=True, help="The local Asterisk (real, on loopback).")
db_app = typer.Typer(no_args_is_help=True, help="The local PostgreSQL cluster.")
billing_app = typer.Typer(no_args_is_help=True, help="Billing runs, without an HTTP request.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(db_app, name="db")
app.add_typer(billing_app, name="billing")

log = logging.getLogger("centrex")

#: What `centrex up` starts and restarts (centrex/supervisor.py).
CHILDREN = ("api", "control", "cdr", "guard")
#: The commands that are long-running services of the platform, each on the database.
SERVICES = frozenset(CHILDREN)


def _setup_logging(verbose: bool = False, node: str | None = None) -> None:
    # A node's daemon and shipper in the clustered shape name their node in every line
    # (docs/cluster.md); the one-node shape's lines stay as they were.
    where = f"[{node}] " if node else ""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s {where}%(levelname)s %(name)s: %(message)s",
    )
    logsafe.install()  # callers control much of what is logged: one record, one line
    # One line per ARI request or alembic plugin drowns the decisions the operator looks for.
    for noisy in ("httpx", "httpcore", "alembic.runtime.plugins", "centrex.ami.panoramisk"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _node_label(settings: Settings) -> str | None:
    """The node name for a daemon's or shipper's log lines and metrics (NODE_INFO)."""
    from centrex.metrics import NODE_INFO

    NODE_INFO.labels(settings.node_name).set(1)
    return settings.node_name if settings.sip_proxy else None


def _settings(process: str | None = None) -> Settings:
    """The configuration, or a clear message naming each bad variable and exit status 2: an
    invalid value, or a secret ``process`` uses (config.SECRETS_OF; None: all) left empty or
    at its shipped placeholder."""
    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo("centrex: invalid configuration (environment or var/centrex.env):", err=True)
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = field if field.isupper() else f"CENTREX_{field.upper()}"
            got = f" (got {error['input']!r})" if error.get("type") != "missing" else ""
            if field in Settings.model_fields and Settings.model_fields[field].annotation in (
                SecretStr,
                "SecretStr",
            ):
                got = ""  # a secret, even a wrong one, is not written to a terminal or a log
            typer.echo(f"  {variable}: {error['msg']}{got}", err=True)
        raise typer.Exit(2) from None
    if unset := settings.default_secrets(process):
        typer.echo(
            f"centrex: {', '.join(unset)} empty or at the shipped placeholder: set a secret of "
            "your own (environment or var/centrex.env; `centrex up` generates them)",
            err=True,
        )
        raise typer.Exit(2)
    if process in SERVICES and not settings.database_url:
        typer.echo(
            "centrex: DATABASE_URL is not set: point it at the platform's PostgreSQL, or start "
            "everything with `centrex up`, which starts its own and sets it",
            err=True,
        )
        raise typer.Exit(2)
    _warn_if_control_ports_public(settings)
    _warn_if_media_address_unknown(settings)
    return settings


def _warn_if_media_address_unknown(settings: Settings) -> None:
    if settings.media_address is None and settings.sip_bind in WILDCARD_ADDRESSES:
        log.warning(
            "SIP listens on every address (CENTREX_SIP_BIND=%s) but RTP binds to %s, which "
            "phones may not reach: set CENTREX_MEDIA_ADDRESS to the address phones reach.",
            settings.sip_bind,
            settings.rtp_address,
        )


def _warn_if_control_ports_public(settings: Settings) -> None:
    host = settings.asterisk_host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return
    log.warning(
        "AMI and ARI listen on %s, not on loopback: whoever reaches them can dial past every "
        "policy and read every line's HA1. Keep CENTREX_ASTERISK_HOST on 127.0.0.1 and expose "
        "only SIP (CENTREX_SIP_BIND).",
        host,
    )


# --- secrets generated on first run -------------------------------------------------------
_GENERATED_SECRETS = (
    "CENTREX_API_TOKEN",
    "CENTREX_AMI_SECRET",
    "CENTREX_ARI_PASSWORD",
    "CENTREX_ARI_CONTROL_PASSWORD",
    "CENTREX_ARI_CDR_PASSWORD",
    "CENTREX_ASTERISK_DB_PASSWORD",
    "CENTREX_EDGE_DB_PASSWORD",
)


def ensure_env_file(var_dir: Path) -> Path:
    """Write ``var/centrex.env`` with fresh secrets for whatever the environment doesn't set."""
    path = var_dir / "centrex.env"
    var_dir.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    lines = [ln for ln in existing.splitlines() if ln.strip()]
    present = {ln.split("=", 1)[0] for ln in lines}
    for name in _GENERATED_SECRETS:
        if name not in present and name not in os.environ:
            lines.append(f"{name}={secrets.token_urlsafe(24)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


# --- sandbox: Asterisk --------------------------------------------------------------------
def _asterisk(settings: Settings):
    from centrex.sandbox.asterisk import AsteriskSandbox

    return AsteriskSandbox(settings)


@sandbox_app.command("up")
def sandbox_up() -> None:
    """Install Asterisk if needed, render asterisk-config/, start it and wait until booted."""
    _setup_logging()
    sandbox = _asterisk(_settings("asterisk"))
    sandbox.ensure_installed()
    sandbox.render_config()
    sandbox.start()
    typer.echo(sandbox.status())


@sandbox_app.command("down")
def sandbox_down() -> None:
    """Stop Asterisk cleanly."""
    _setup_logging()
    _asterisk(_settings()).stop()


@sandbox_app.command("status")
def sandbox_status() -> None:
    typer.echo(_asterisk(_settings()).status())


# --- db: PostgreSQL -----------------------------------------------------------------------
def _postgres(settings: Settings):
    from centrex.sandbox.postgres import PostgresCluster

    return PostgresCluster(settings)


def start_database(settings: Settings) -> str:
    """Start the private cluster unless DATABASE_URL is set; migrate; return the URL."""
    from centrex.db.migrate import upgrade_to_head

    cluster = _postgres(settings)
    if not cluster.external:
        cluster.ensure_installed()
        cluster.init()
        cluster.start()
    url = cluster.url
    upgrade_to_head(url)
    if asyncio.run(_is_superuser(url)):
        log.warning(
            "the database role of DATABASE_URL is a superuser: give centrex a role that owns "
            "its database and nothing more (see docs/database.md)"
        )
    return url


async def _is_superuser(url: str) -> bool:
    import asyncpg

    from centrex.db.session import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return bool(
            await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
    finally:
        await conn.close()


@db_app.command("up")
def db_up() -> None:
    """Start PostgreSQL (private cluster) and run the migrations."""
    _setup_logging()
    typer.echo(start_database(_settings()))


@db_app.command("down")
def db_down() -> None:
    _setup_logging()
    _postgres(_settings()).stop()


@app.command()
def migrate() -> None:
    """Run the database migrations up to the newest."""
    from centrex.db.migrate import upgrade_to_head

    _setup_logging()
    upgrade_to_head(_settings().database_url_required)


# --- billing runs (docs/billing.md): the API's runs, from a shell or a timer ----------------
async def _with_sessions(work):
    from centrex.db.session import make_engine, make_sessionmaker

    engine = make_engine(_settings("billing").database_url_required)
    try:
        return await work(make_sessionmaker(engine))
    finally:
        await engine.dispose()


@billing_app.command("rate")
def billing_rate() -> None:
    """Rate every answered call not rated yet (as POST /v1/billing/rating-runs)."""
    from centrex.billing.rating import rate_pending

    async def work(sessions):
        async with sessions() as session:
            return await rate_pending(session)

    _setup_logging()
    result = asyncio.run(_with_sessions(work))
    typer.echo(f"rated {result.rated}, unpriced {len(result.unpriced)}")


@billing_app.command("invoice-run")
def billing_invoice_run(
    month: str = typer.Option(..., help="The usage month, YYYY-MM (it must have ended)."),
    issued_on: str = typer.Option(None, help="Issue date, YYYY-MM-DD (default: today, Paris)."),
) -> None:
    """Invoice a month (as POST /v1/billing/invoice-runs): safe to repeat or to resume."""
    from datetime import UTC, date, datetime

    from centrex.billing.invoicing import run_month
    from centrex.billing.rules.rating import billing_day
    from centrex.services.errors import ServiceError

    try:
        period = date.fromisoformat(f"{month}-01")
        issued = date.fromisoformat(issued_on) if issued_on else billing_day(datetime.now(UTC))
    except ValueError as exc:
        typer.echo(f"centrex billing invoice-run: {exc}", err=True)
        raise typer.Exit(2) from None
    _setup_logging()
    settings = _settings("billing")
    try:
        result = asyncio.run(_with_sessions(lambda s: run_month(s, period, issued, settings)))
    except ServiceError as exc:
        typer.echo(f"centrex billing invoice-run: {exc.field}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"issued {len(result.issued)}, already there {result.not_issued}, held back "
        f"{len(result.unpriced)}, documents {result.documents}, emailed {result.emailed}"
    )


# --- the services -------------------------------------------------------------------------
@app.command()
def api() -> None:
    """Run the provisioning API (and its reconciler)."""
    import uvicorn

    from centrex.api.app import create_app

    _setup_logging()
    settings = _settings("api")
    if settings.api_workers > 1:
        # Processes of their own, each building its app from the same environment.
        uvicorn.run(
            "centrex.api.app:app_from_environment",
            factory=True,
            workers=settings.api_workers,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            access_log=True,
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=True,
    )


@app.command()
def cdr() -> None:
    """Run the CDR shipper: Asterisk's CEL journal into PostgreSQL, exactly once."""
    from centrex.cdr.service import run_shipper

    settings = _settings("cdr")
    _setup_logging(node=_node_label(settings))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_shipper(settings))


@app.command()
def guard() -> None:
    """Run the guard: ban the addresses that keep failing SIP authentication (nftables)."""
    from centrex.guard.service import run_guard

    _setup_logging()
    settings = _settings("guard")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_guard(settings))


@app.command()
def control(verbose: bool = False) -> None:
    """Run the call-control daemon (ARI Stasis app + AMI)."""
    from centrex.control.process import run_daemon

    settings = _settings("control")
    _setup_logging(verbose, node=_node_label(settings))
    try:
        # uvloop (a dependency of uvicorn[standard]) when present: the daemon is a loop of
        # small network reads and writes (ARI websocket, AMI, PostgreSQL), which libuv's loop
        # runs with less CPU than asyncio's own (see docs/benchmarks.md).
        try:
            import uvloop
        except ImportError:
            asyncio.run(run_daemon(settings))
        else:
            uvloop.run(run_daemon(settings))
    except KeyboardInterrupt:
        pass


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def _banner(settings: Settings, database_url: str) -> str:
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    token = settings.api_token.get_secret_value()
    daemon_url = f"http://{settings.control_http_host}:{settings.control_http_port}"
    return f"""
== centrex is running
API          {api_url}   (OpenAPI: {api_url}/docs)
API token    {token}   (in var/centrex.env)
SIP          udp/tcp {settings.sip_bind_address}:{settings.sip_port}   realm {settings.sip_realm}
SIP/TLS      {settings.sip_bind_address}:{settings.tls_port}   (certificate: docs/tls.md)
AMI / ARI    {settings.asterisk_host}:{settings.ami_port} / {settings.ari_url}
Database     {database_url.split("@")[-1]}
Metrics      {api_url}/metrics (API), {daemon_url}/metrics (daemon),
             http://{settings.cdr_http_host}:{settings.cdr_http_port}/metrics (CDRs),
             http://{settings.guard_http_host}:{settings.guard_http_port}/metrics (bans),
             http://{settings.api_host}:{settings.supervisor_http_port}/metrics (restarts)
             (Prometheus config and alerts: deploy/prometheus/, Grafana: deploy/grafana/)

Register a softphone:
  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
       -d '{{"name": "Acme"}}' {api_url}/v1/customers
  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
       -d '{{"customer_id": "<id from above>", "label": "Reception"}}' {api_url}/v1/lines
  then in the softphone: server {settings.asterisk_host}:{settings.sip_port} (UDP),
  username = sip_username, password = sip_password (shown only in that response).
  Dial another line's sip_username to call it.

A process that dies (API, daemon, CDR shipper, guard) is started again; Asterisk and PostgreSQL
keep running. Ctrl-C stops everything.
"""


@app.command()
def up() -> None:
    """Start everything: PostgreSQL, Asterisk, the API, the daemon, the CDR shipper and the
    guard, and keep the last four running. Ctrl-C stops it all."""
    _setup_logging()
    ensure_env_file(Path("var"))
    settings = _settings()
    typer.echo("== PostgreSQL")
    cluster = _postgres(settings)  # before DATABASE_URL is set: the cluster we start and stop
    database_url = start_database(settings)
    settings = settings.model_copy(update={"database_url": database_url})
    typer.echo("== Asterisk")
    sandbox = _asterisk(settings)
    sandbox.ensure_installed()
    sandbox.render_config()
    sandbox.start()

    env = {**os.environ, **settings_env(settings)}
    supervisor = Supervisor(
        {name: [sys.executable, "-m", "centrex", name] for name in CHILDREN},
        env,
    )
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    supervisor.start_all()
    _serve_supervisor_metrics(settings)
    try:
        _wait_http(f"http://{settings.api_host}:{settings.api_port}/health/live", 30)
        typer.echo(_banner(settings, database_url))
        while not stopping:
            supervisor.poll()
            time.sleep(0.2)
    finally:
        supervisor.stop_all()
        typer.echo("== stopping Asterisk and PostgreSQL")
        sandbox.stop()
        cluster.stop()


def _cluster_banner(shape, database_url: str) -> str:
    api = shape.api_settings
    api_url = f"http://{api.api_host}:{api.api_port}"
    nodes = "\n".join(
        f"Node {n.plan.name}      SIP {n.plan.address}:{n.plan.sip_port}, AMI/ARI "
        f"{n.plan.address}:{api.ami_port}/{api.http_port}, daemon metrics "
        f"http://{n.settings.control_http_host}:{n.settings.control_http_port}/metrics"
        for n in shape.nodes
    )
    edge_tls = f"{shape.kamailio.listen_ip}:{shape.kamailio.tls_port}"
    return f"""
== centrex is running, clustered (docs/cluster.md)
API          {api_url}   token {api.api_token.get_secret_value()} (in var/centrex.env)
SIP edge     udp and tcp {shape.edge}, tls {edge_tls} (Kamailio): phones register and call
             here, never at a node
{nodes}
Database     {database_url.split("@")[-1]}
Logs         {shape.kamailio.directory.parent}
Create lines as with `centrex up` (POST /v1/customers, POST /v1/lines), then point a softphone
at the SIP edge. Nothing is restarted if it dies here. Ctrl-C stops everything.
"""


@app.command()
def cluster() -> None:
    """The clustered shape on this machine (docs/cluster.md): PostgreSQL, Kamailio on
    CENTREX_CLUSTER_EDGE_ADDRESS:CENTREX_SIP_PORT in front of one Asterisk node per
    CENTREX_CLUSTER_NODE_ADDRESSES (each with its daemon and CDR shipper) and the API.
    Ctrl-C stops it all."""
    from centrex.sandbox.cluster import Cluster
    from centrex.sandbox.processes import API_READY, ServiceProcess

    _setup_logging()
    ensure_env_file(Path("var"))
    settings = _settings()
    _settings("edge")  # and the edge's own database role's password
    typer.echo("== PostgreSQL")
    database = _postgres(settings)
    database_url = start_database(settings)
    settings = settings.model_copy(update={"database_url": database_url})
    shape = Cluster(
        settings,
        edge_address=settings.cluster_edge_address,
        node_addresses=settings.cluster_node_addresses,
        log_dir=settings.var_dir / "cluster",
    )
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    api_process = ServiceProcess("api", shape.api_settings, settings.var_dir / "cluster")
    try:
        typer.echo("== Asterisk nodes and Kamailio")
        shape.start()
        api_process.start_and_wait(API_READY)
        typer.echo(_cluster_banner(shape, database_url))
        while not stopping:
            time.sleep(0.2)
    finally:
        api_process.stop()
        shape.stop()
        database.stop()


def _serve_supervisor_metrics(settings: Settings) -> None:
    if not settings.supervisor_http_port:
        return
    from prometheus_client import start_http_server

    from centrex.metrics import SUPERVISOR_REGISTRY

    try:
        start_http_server(
            settings.supervisor_http_port, settings.api_host, registry=SUPERVISOR_REGISTRY
        )
    except OSError as exc:
        log.error("restart metrics not served on port %d: %s", settings.supervisor_http_port, exc)


@app.command()
def down() -> None:
    """Stop Asterisk and the private PostgreSQL cluster (after a `centrex up` that was killed)."""
    _setup_logging()
    settings = _settings()
    _asterisk(settings).stop()
    _postgres(settings).stop()
