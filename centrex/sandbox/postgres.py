"""A real PostgreSQL the project starts itself, or the external one ``DATABASE_URL`` names.

Without ``DATABASE_URL`` a private cluster lives in ``<var_dir>/pg/data`` and listens on
``127.0.0.1:<pg_port>`` only. PostgreSQL refuses to run as root, so when we are root the server
runs as an unprivileged system user (``postgres`` from the Debian package, else ``centrex-pg``,
created on demand). When that user cannot reach the var dir (a checkout under ``/root``, mode
700; pytest's ``/tmp/pytest-of-root``) the data area moves to
``/var/lib/centrex/pg-<hash of var_dir>`` and a log line says so.

Authentication: TCP on loopback needs the role ``centrex`` and its password (scram-sha-256); the
password is generated once and kept in ``<var_dir>/pg/password`` (mode 0600). The unix socket
sits in a 0700 directory of the data area and admits only the server's OS user (peer, mapped to
role ``centrex``): the way back in if the password file is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from centrex.config import Settings, get_settings

log = logging.getLogger(__name__)

PG_ROOT = Path("/usr/lib/postgresql")
FALLBACK_ROOT = Path("/var/lib/centrex")
SUPERUSER = "centrex"  # the cluster's bootstrap role: administration only (socket, tests)
# What the application connects as: no superuser, no CREATEDB, no CREATEROLE; it owns its
# database (and so everything its migrations create), nothing else.
APP_ROLE = "centrex_app"
# What Asterisk reads lines and trunks as: LOGIN, and SELECT on the ps_* views only (granted by
# migration 0023_pjsip_realtime). Its password is CENTREX_ASTERISK_DB_PASSWORD.
ASTERISK_ROLE = "centrex_asterisk"
# What the SIP edge (Kamailio, clustered shape) writes its registrations as: LOGIN, and
# kamailio_location only (migration 0034_edge_location). Its password is CENTREX_EDGE_DB_PASSWORD.
EDGE_ROLE = "centrex_edge"
DEFAULT_DB = "centrex"
CANDIDATE_USERS = ("postgres", "centrex-pg")
_CONF_NAME = "centrex.conf"
_IDENT_MAP = "centrex"
_DBNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes including ".s.PGSQL.<port>" and the NUL


class PostgresError(RuntimeError):
    pass


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.name)) or (0,)


def find_pg_bin() -> Path | None:
    """The bin directory of the highest installed PostgreSQL version, if any."""
    if not PG_ROOT.is_dir():
        return None
    found = [
        d / "bin"
        for d in PG_ROOT.iterdir()
        if (d / "bin" / "initdb").is_file() and (d / "bin" / "pg_ctl").is_file()
    ]
    return max(found, key=lambda b: _version_key(b.parent)) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """The project's PostgreSQL: a private cluster, or ``settings.database_url`` when set."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.external_url: str | None = self.settings.database_url or None
        self.var_dir = Path(self.settings.var_dir).resolve()
        self.port = self.settings.pg_port
        self.password_file = self.var_dir / "pg" / "password"
        self._bin: Path | None = None
        self._user: str | None = None
        self._base: Path | None = None
        self._reset_password = False

    # --- where things are ------------------------------------------------------------------------
    @property
    def external(self) -> bool:
        return self.external_url is not None

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = find_pg_bin()
            if self._bin is None:
                raise PostgresError("PostgreSQL is not installed; call ensure_installed() first")
        return self._bin

    @property
    def user(self) -> str:
        """The OS user the server runs as."""
        if self._user is None:
            self._user = self._pick_user()
        return self._user

    @property
    def base_dir(self) -> Path:
        """The data area: holds ``data/`` (PGDATA), ``run/`` (socket) and ``log/``."""
        if self._base is None:
            self._base = self._pick_base()
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        run = self.base_dir / "run"
        if len(f"{run}/.s.PGSQL.{self.port}") <= _SOCKET_PATH_MAX:
            return run
        return Path("/tmp") / f"centrex-pg-{self._var_hash()}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "log" / "postgres.log"

    def _var_hash(self) -> str:
        return hashlib.sha256(str(self.var_dir).encode()).hexdigest()[:12]

    def _pick_user(self) -> str:
        if not self.as_root:
            return pwd.getpwuid(os.geteuid()).pw_name
        data = self.var_dir / "pg" / "data"
        fallback = FALLBACK_ROOT / f"pg-{self._var_hash()}" / "data"
        for existing in (data, fallback):  # an existing cluster decides its owner
            if (existing / "PG_VERSION").is_file():
                owner = pwd.getpwuid(existing.stat().st_uid).pw_name
                if owner != "root":
                    return owner
        for name in CANDIDATE_USERS:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        name = CANDIDATE_USERS[-1]
        log.info("creating system user %s to run PostgreSQL", name)
        _run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
        return name

    def _pick_base(self) -> Path:
        preferred = self.var_dir / "pg"
        fallback = FALLBACK_ROOT / f"pg-{self._var_hash()}"
        if not self.as_root:
            return preferred
        if (fallback / "data" / "PG_VERSION").is_file() and not (
            preferred / "data" / "PG_VERSION"
        ).is_file():
            return fallback
        preferred.mkdir(parents=True, exist_ok=True)
        if _run(["runuser", "-u", self.user, "--", "test", "-x", str(preferred)]).returncode == 0:
            return preferred
        log.warning(
            "PostgreSQL user %s cannot reach %s (a parent directory is closed to it); "
            "the cluster lives in %s instead",
            self.user,
            preferred,
            fallback,
        )
        return fallback

    # --- running commands as the server's user --------------------------------------------------
    def _as_user(self, argv: Sequence[str]) -> list[str]:
        if self.as_root:
            return ["runuser", "-u", self.user, "--", *argv]
        return list(argv)

    def _pg(
        self, tool: str, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = self._as_user([str(self.bin_dir / tool), *args])
        return _run(argv, check=check, input=input, cwd=self.base_dir)

    def _mkdir_owned(self, path: Path, mode: int = 0o700) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(path, self.user, self.user)
        path.chmod(mode)

    def _write_owned(self, path: Path, text: str, mode: int = 0o600) -> None:
        path.write_text(text)
        if self.as_root:
            shutil.chown(path, self.user, self.user)
        path.chmod(mode)

    # --- lifecycle -------------------------------------------------------------------------------
    def ensure_installed(self) -> Path:
        """Install PostgreSQL from apt when no ``initdb`` is found; returns its bin dir."""
        if self.external:
            raise PostgresError("DATABASE_URL is set: there is no local cluster to install")
        found = find_pg_bin()
        if found is None:
            if not self.as_root:
                raise PostgresError(
                    "PostgreSQL is not installed; as root: apt-get install postgresql"
                )
            log.info("installing PostgreSQL with apt-get")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            _run(["apt-get", "update"], check=True, env=env)
            _run(["apt-get", "install", "-y", "postgresql"], check=True, env=env)
            found = find_pg_bin()
            if found is None:
                raise PostgresError(f"apt-get installed postgresql but no initdb in {PG_ROOT}")
        self._bin = found
        return found

    def password(self) -> str:
        if not self.password_file.is_file():
            raise PostgresError(f"no password file {self.password_file}; call init() first")
        return self.password_file.read_text().strip()

    def _ensure_password(self) -> str:
        if self.password_file.is_file():
            return self.password()
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        pw = secrets.token_urlsafe(24)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pw + "\n")
        return pw

    def init(self) -> None:
        """Create the cluster (idempotent); rewrites its centrex.conf and auth files every time."""
        if self.external:
            return
        self.ensure_installed()
        had_password = self.password_file.is_file()
        pw = self._ensure_password()
        if self.as_root:
            FALLBACK_ROOT.mkdir(parents=True, exist_ok=True)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.as_root and self.base_dir != self.var_dir / "pg":
            self._mkdir_owned(self.base_dir)
        self._mkdir_owned(self.socket_dir)
        self._mkdir_owned(self.log_file.parent)
        if not (self.data_dir / "PG_VERSION").is_file():
            self._mkdir_owned(self.data_dir)
            pwfile = self.base_dir / ".initdb-pw"
            self._write_owned(pwfile, pw + "\n")
            try:
                self._pg(
                    "initdb",
                    "-D", str(self.data_dir),
                    "-U", SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "-E", "UTF8",
                    "--locale=C.UTF-8",
                )  # fmt: skip
            finally:
                pwfile.unlink(missing_ok=True)
            conf = self.data_dir / "postgresql.conf"
            with conf.open("a") as f:
                f.write(f"\ninclude_if_exists = '{_CONF_NAME}'\n")
            log.info("initialised PostgreSQL cluster in %s", self.data_dir)
        elif not had_password:
            self._reset_password = True  # new password for an old cluster: set it at start()
        self._write_config()

    def _write_config(self) -> None:
        self._write_owned(
            self.data_dir / _CONF_NAME,
            "# written by centrex; rewritten on every start\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n",
        )
        self._write_owned(
            self.data_dir / "pg_hba.conf",
            "# written by centrex: socket for the server's OS user, loopback TCP by password\n"
            f"local all all peer map={_IDENT_MAP}\n"
            "host all all 127.0.0.1/32 scram-sha-256\n",
        )
        self._write_owned(
            self.data_dir / "pg_ident.conf", f"{_IDENT_MAP} {self.user} {SUPERUSER}\n"
        )

    def is_running(self) -> bool:
        if self.external:
            return True
        if find_pg_bin() is None or not (self.data_dir / "PG_VERSION").is_file():
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Init if needed and start; returns once the server accepts connections (idempotent)."""
        if self.external:
            return
        self.init()
        if not self.is_running():
            res = self._pg(
                "pg_ctl", "start", "-w", "-t", str(int(timeout)),
                "-D", str(self.data_dir), "-l", str(self.log_file),
                check=False,
            )  # fmt: skip
            if res.returncode != 0:
                raise PostgresError(
                    f"pg_ctl start failed ({res.returncode}): {res.stdout}{res.stderr}\n"
                    f"--- {self.log_file} ---\n{_tail(self.log_file)}"
                )
            log.info("PostgreSQL listening on 127.0.0.1:%d (data %s)", self.port, self.data_dir)
        if self._reset_password:
            self._psql(f"ALTER ROLE {SUPERUSER} PASSWORD {_literal(self.password())}")
            self._reset_password = False
        self._ensure_app_role()
        self._ensure_asterisk_role()
        self._ensure_edge_role()
        self.create_database_sync(DEFAULT_DB)

    def _ensure_app_role(self) -> None:
        self._psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
            f"{_literal(APP_ROLE)}) THEN CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB "
            "NOCREATEROLE NOREPLICATION; END IF; END $$;\n"
            f"ALTER ROLE {APP_ROLE} PASSWORD {_literal(self.password())};"
        )

    def _ensure_asterisk_role(self) -> None:
        self._ensure_login_role(ASTERISK_ROLE, self.settings.asterisk_db_password)

    def _ensure_edge_role(self) -> None:
        self._ensure_login_role(EDGE_ROLE, self.settings.edge_db_password)

    def _ensure_login_role(self, role: str, password: SecretStr) -> None:
        self._psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
            f"{_literal(role)}) THEN CREATE ROLE {role} LOGIN NOSUPERUSER "
            "NOCREATEDB NOCREATEROLE NOREPLICATION; END IF; END $$;\n"
            f"ALTER ROLE {role} PASSWORD {_literal(password.get_secret_value())};"
        )

    def stop(self) -> None:
        """Fast shutdown (idempotent)."""
        if self.external or not self.is_running():
            return
        self._pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def destroy(self) -> None:
        """Stop and delete the data area and password (tests; never for an external DB)."""
        if self.external:
            raise PostgresError("refusing to destroy an external database")
        self.stop()
        for path in (self.data_dir, self.socket_dir, self.log_file.parent, self.password_file):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self.base_dir.parent == FALLBACK_ROOT:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _psql(self, sql: str) -> str:
        res = self._pg(
            "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
            "-f", "-",
            input=sql,
        )  # fmt: skip
        return res.stdout.strip()

    # --- databases and URLs ----------------------------------------------------------------------
    def url_for(self, dbname: str, *, role: str = APP_ROLE) -> str:
        """What the application connects with (the application role), or with ``role``."""
        if self.external_url:
            return make_url(self.external_url).set(database=dbname).render_as_string(False)
        return (
            f"postgresql+asyncpg://{role}:{quote(self.password(), safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}"
        )

    @property
    def url(self) -> str:
        return self.external_url or self.url_for(DEFAULT_DB)

    @property
    def admin_url(self) -> str:
        """Creating and dropping databases: the bootstrap role here, the given URL's outside."""
        return self.external_url or self.url_for("postgres", role=SUPERUSER)

    def create_database_sync(self, name: str) -> None:
        """CREATE DATABASE unless it exists. Private cluster only (runs psql on the socket)."""
        _check_dbname(name)
        if self.external:
            raise PostgresError("use 'await create_database()' for an external server")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = {_literal(name)}")
        if exists != "1":
            self._psql(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
            return
        owner = self._psql(
            f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {_literal(name)}"
        )
        if owner != APP_ROLE:
            # Made before the application role existed: its objects belong to the bootstrap
            # role, which owns the system catalogs too, so they cannot simply be handed over.
            raise PostgresError(
                f"database {name} belongs to {owner}, not to {APP_ROLE} (it predates the "
                f"application role): dump and restore it, or remove {self.data_dir} for a new "
                "cluster"
            )

    async def create_database(self, name: str) -> str:
        """CREATE DATABASE unless it exists, here or on the external server; returns its URL."""
        _check_dbname(name)
        conn = await _admin_connect(self.admin_url)
        owner = "" if self.external else f" OWNER {APP_ROLE}"
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                with contextlib.suppress(_duplicate_database()):
                    await conn.execute(f'CREATE DATABASE "{name}"{owner}')
        finally:
            await conn.close()
        return self.url_for(name)

    async def drop_database(self, name: str) -> None:
        _check_dbname(name)
        if name == (make_url(self.url).database or DEFAULT_DB):
            raise PostgresError(f"refusing to drop the database the URL names ({name})")
        conn = await _admin_connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# --- test support --------------------------------------------------------------------------------
#: The Asterisk role's password in scratch clusters (tests/conftest.py gives Asterisk the same).
TEST_ASTERISK_DB_PASSWORD = "test-asterisk-db-password"
TEST_EDGE_DB_PASSWORD = "test-edge-db-password"


@dataclass(frozen=True)
class ScratchDatabase:
    url: str
    cluster: PostgresCluster | None  # None on an external server (DATABASE_URL): not ours to stop


@contextlib.asynccontextmanager
async def scratch_database(
    var_dir: Path,
    *,
    prefix: str = "centrex_test",
    asterisk_db_password: str = TEST_ASTERISK_DB_PASSWORD,
    edge_db_password: str = TEST_EDGE_DB_PASSWORD,
) -> AsyncIterator[ScratchDatabase]:
    """A fresh, migrated database; cleaned up afterwards.

    With ``DATABASE_URL`` (or ``CENTREX_DATABASE_URL``) set: a uniquely named database on that
    server, dropped at the end. Otherwise: a private cluster in ``var_dir`` on a free port,
    destroyed at the end (tests may stop and start it: an outage).
    """
    from centrex.db.migrate import upgrade_to_head_async

    external = Settings(_env_file=None).database_url
    if external:
        cluster = PostgresCluster(Settings(_env_file=None, var_dir=var_dir, database_url=external))
    else:
        cluster = PostgresCluster(
            Settings(
                _env_file=None,
                var_dir=var_dir,
                database_url=None,
                pg_port=free_port(),
                asterisk_db_password=asterisk_db_password,
                edge_db_password=edge_db_password,
            )
        )
        await asyncio.to_thread(cluster.start)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        url = await cluster.create_database(name)
        await upgrade_to_head_async(url)
        yield ScratchDatabase(url, None if external else cluster)
    finally:
        if external:
            await cluster.drop_database(name)
        else:
            await asyncio.to_thread(cluster.destroy)


@contextlib.asynccontextmanager
async def migrated_test_database(
    var_dir: Path, *, prefix: str = "centrex_test"
) -> AsyncIterator[str]:
    """The URL of a :func:`scratch_database`."""
    async with scratch_database(var_dir, prefix=prefix) as db:
        yield db.url


# --- helpers -------------------------------------------------------------------------------------
def _run(
    argv: Sequence[str],
    *,
    check: bool = False,
    input: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        list(argv), capture_output=True, text=True, input=input, cwd=cwd or "/", env=env
    )
    if check and res.returncode != 0:
        raise PostgresError(
            f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout}{res.stderr}".strip()
        )
    return res


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_dbname(name: str) -> None:
    if not _DBNAME_RE.match(name):
        raise ValueError(f"unsupported database name {name!r}: use [A-Za-z_][A-Za-z0-9_]*")


def _duplicate_database() -> type[Exception]:
    import asyncpg

    return asyncpg.DuplicateDatabaseError


async def _admin_connect(url: str):  # -> asyncpg.Connection
    """Connect with asyncpg to the server ``url`` names, on its own database."""
    import asyncpg

    u = make_url(url)
    return await asyncpg.connect(
        user=u.username,
        password=u.password,
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        database=u.database or "postgres",
        **{k: v for k, v in u.query.items() if k in ("ssl",)},
    )
