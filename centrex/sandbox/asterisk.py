"""A real Asterisk (22) for development, tests and benchmarks, on loopback only.

The host's ``asterisk`` is used when there is one; otherwise a Debian *sid* root holding the
``asterisk`` package is built with ``debootstrap`` at ``settings.asterisk_root`` and Asterisk runs
in it through ``chroot``. Both ways share one code path: only the command prefix and where the
instance directory sits differ.

Every instance (``settings.asterisk_instance``) has its own directory holding its rendered
configuration, astdb, spool, control socket, pid file and logs, so several instances (the main one
and test ones on other ports) run from one installation at once::

    chroot:  <asterisk_root>/srv/centrex/<instance>/{etc,db,spool,run,log,cache}
    host:    <var_dir>/asterisk/<instance>/{etc,db,spool,run,log,cache}

Asterisk is started daemonised with ``-C <instance>/etc/asterisk.conf``; every later operation
(``cli``, ``stop``, ``status``) goes through the instance's control socket and pid file, so it
works from any process, not only the one that started it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from centrex.asterisk.pjsip_objects import (
    ASTDB_FAMILY,
    SORCERY_CACHE_LIFETIME_S,
    SORCERY_CACHE_PREFIX,
)
from centrex.asterisk.realtime import odbc_settings
from centrex.config import Settings
from centrex.core.admission import ASTERISK_BACKSTOP_S
from centrex.core.numbering import EMERGENCY_NUMBERS
from centrex.tls import generate_self_signed, is_usable_pair, write_private

log = logging.getLogger(__name__)

# The CEL journal's file name, under the instance's log dir, in cel-custom/ (cel_custom.conf).
CEL_JOURNAL = "centrex-cel.csv"
# The TLS certificate and key Asterisk reads, in the instance's tls/ dir: a copy of the
# operator's (a chroot'ed Asterisk sees no host path, and the copy is the asterisk user's), or
# self-signed ones, kept across restarts so a phone told to trust one goes on trusting it.
TLS_COPIES = ("cert.pem", "key.pem")
TLS_SELF_SIGNED = ("self-signed-cert.pem", "self-signed-key.pem")

DEFAULT_TONE_ZONE = "us"
#: Debian packages the root holds besides ``asterisk``: the default music on hold Asterisk ships
#: (a held party hears it, docs/transfers.md), as GSM files under /usr/share/asterisk/moh;
#: PostgreSQL's ODBC driver and unixODBC, for the lines and trunks Asterisk reads from the
#: database (docs/provisioning-realtime.md).
ROOT_EXTRA_PACKAGES = ("asterisk-moh-opsound-gsm", "odbc-postgresql", "unixodbc")
MOH_DIR = "usr/share/asterisk/moh"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "sid"
#: The ODBC driver odbc-postgresql installs, looked for under the root's /usr/lib.
ODBC_DRIVER_GLOB = "usr/lib/*/odbc/psqlodbcw.so"
#: astdb prefix of objects pushed over ARI: family ``<prefix>/<type>``, e.g. ``centrex/endpoint``.
ASTDB_PREFIX = ASTDB_FAMILY
#: Where instance directories live inside a chroot root.
CHROOT_INSTANCES = PurePosixPath("/srv/centrex")
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "asterisk-config"

#: Media ports: one block of ``RTP_BLOCK`` ports per instance, chosen from the SIP port.
RTP_BASE = 20000
RTP_BLOCK = 1000
RTP_SLOTS = 43  # prime, so SIP ports 5060 and 15060 (or 25060 ...) land in different blocks

_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class AsteriskSandboxError(RuntimeError):
    """Installing, starting, stopping or talking to the sandboxed Asterisk failed."""


class AsteriskNotRunning(AsteriskSandboxError):
    """The instance's control socket does not answer."""


def rtp_port_range(sip_port: int) -> tuple[int, int]:
    """The RTP port range of the instance listening for SIP on *sip_port* (inclusive, even start).

    Derived rather than configured: SIP ports that differ by a multiple of 43 would share a block.
    """
    start = RTP_BASE + (sip_port % RTP_SLOTS) * RTP_BLOCK
    return start, start + RTP_BLOCK - 1


@dataclass(frozen=True)
class AsteriskPorts:
    host: str  # AMI and ARI
    sip_bind: str
    sip: int
    sip_tls: int
    ami: int
    http: int
    rtp_start: int
    rtp_end: int


@dataclass(frozen=True)
class AsteriskStatus:
    instance: str
    running: bool
    pid: int | None
    version: str | None
    ports: AsteriskPorts
    mode: str  # "host" or "chroot"
    instance_dir: Path


@dataclass(frozen=True)
class _Dirs:
    """The instance's directories, as Asterisk sees them (inside the chroot, if any)."""

    base: PurePosixPath

    @property
    def etc(self) -> PurePosixPath:
        return self.base / "etc"

    @property
    def db(self) -> PurePosixPath:
        return self.base / "db"

    @property
    def spool(self) -> PurePosixPath:
        return self.base / "spool"

    @property
    def run(self) -> PurePosixPath:
        return self.base / "run"

    @property
    def log(self) -> PurePosixPath:
        return self.base / "log"

    @property
    def cache(self) -> PurePosixPath:
        return self.base / "cache"

    @property
    def cel(self) -> PurePosixPath:
        return self.log / "cel-custom"  # where cel_custom writes (it does not create it)

    @property
    def tls(self) -> PurePosixPath:
        return self.base / "tls"

    def all(self) -> list[PurePosixPath]:
        return [self.etc, self.db, self.spool, self.run, self.log, self.cache, self.cel, self.tls]


class AsteriskSandbox:
    """One Asterisk instance described by a :class:`~centrex.config.Settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        template_dir: Path = TEMPLATE_DIR,
        mirror: str = DEBIAN_MIRROR,
    ) -> None:
        if not _INSTANCE_RE.match(settings.asterisk_instance):
            raise ValueError(f"bad Asterisk instance name {settings.asterisk_instance!r}")
        self.settings = settings
        self.instance = settings.asterisk_instance
        self.realm = settings.sip_realm
        self.template_dir = template_dir
        self.mirror = mirror
        self.host_binary: str | None = shutil.which("asterisk")
        self.root: Path | None = None if self.host_binary else settings.asterisk_root.absolute()
        if self.root is None:
            base = PurePosixPath((settings.var_dir / "asterisk" / self.instance).absolute())
        else:
            base = CHROOT_INSTANCES / self.instance
        self.dirs = _Dirs(base)
        rtp_start, rtp_end = rtp_port_range(settings.sip_port)
        self.ports = AsteriskPorts(
            host=settings.asterisk_host,
            sip_bind=settings.sip_bind_address,
            sip=settings.sip_port,
            sip_tls=settings.tls_port,
            ami=settings.ami_port,
            http=settings.http_port,
            rtp_start=rtp_start,
            rtp_end=rtp_end,
        )
        self._version: str | None = None

    # --- paths ------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "host" if self.root is None else "chroot"

    def host_path(self, inner: PurePosixPath) -> Path:
        """Where a path Asterisk sees lives on this host."""
        if self.root is None:
            return Path(inner)
        return self.root / inner.relative_to("/")

    @property
    def instance_dir(self) -> Path:
        return self.host_path(self.dirs.base)

    @property
    def config_file(self) -> PurePosixPath:
        """``asterisk.conf`` as Asterisk sees it (the ``-C`` argument)."""
        return self.dirs.etc / "asterisk.conf"

    @property
    def log_file(self) -> Path:
        return self.host_path(self.dirs.log / "messages.log")

    @property
    def security_log(self) -> Path:
        """Asterisk's security events (logger.conf), what ``centrex guard`` reads."""
        return self.host_path(self.dirs.log / "security.log")

    @property
    def cel_journal(self) -> Path:
        """The CSV journal of CEL events the CDR shipper reads (host path)."""
        return self.host_path(self.dirs.cel / CEL_JOURNAL)

    @property
    def tls_files(self) -> tuple[PurePosixPath, PurePosixPath]:
        """Certificate and key, as Asterisk sees them."""
        names = TLS_COPIES if self.settings.sip_tls_cert_file else TLS_SELF_SIGNED
        return self.dirs.tls / names[0], self.dirs.tls / names[1]

    @property
    def tls_certificate(self) -> Path:
        """The certificate Asterisk presents on SIP/TLS (host path)."""
        return self.host_path(self.tls_files[0])

    @property
    def astdb_file(self) -> Path:
        return self.host_path(self.dirs.db / "astdb.sqlite3")

    @property
    def pid_file(self) -> Path:
        return self.host_path(self.dirs.run / "asterisk.pid")

    @property
    def ctl_socket(self) -> Path:
        return self.host_path(self.dirs.run / "asterisk.ctl")

    @property
    def ari_url(self) -> str:
        return f"http://{self.ports.host}:{self.ports.http}/ari"

    # --- installation -----------------------------------------------------------------------------
    def _asterisk_argv(self) -> list[str]:
        if self.root is None:
            assert self.host_binary is not None
            return [self.host_binary, "-C", str(self.config_file)]
        return ["chroot", str(self.root), "/usr/sbin/asterisk", "-C", str(self.config_file)]

    def _root_complete(self) -> bool:
        assert self.root is not None
        return (self.root / "usr/sbin/asterisk").is_file() and self._root_user() is not None

    def odbc_driver(self) -> PurePosixPath | None:
        """PostgreSQL's ODBC driver, as Asterisk sees it (inside the chroot, if any)."""
        base = self.root or Path("/")
        found = sorted(base.glob(ODBC_DRIVER_GLOB))
        return PurePosixPath("/") / found[0].relative_to(base) if found else None

    def ensure_installed(self) -> str:
        """Make sure an Asterisk binary is there; return a description of which one."""
        if self.root is None:
            return self.host_binary or "asterisk"
        root = self.root
        if self._root_complete():
            self._ensure_extra_packages()
            return f"chroot {root}"
        root.parent.mkdir(parents=True, exist_ok=True)
        lock_path = root.parent / f".{root.name}.lock"
        with open(lock_path, "w") as lock:
            log.info("waiting for the lock %s", lock_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._root_complete():  # another process finished it while we waited
                lock.close()
                self._ensure_extra_packages()
                return f"chroot {root}"
            if root.exists():
                raise AsteriskSandboxError(
                    f"{root} exists but holds no Asterisk; remove it to have it rebuilt"
                )
            for stale in root.parent.glob(f".{root.name}.tmp-*"):
                log.warning("removing %s left by an interrupted build", stale)
                _safe_rmtree(stale)
            self._ensure_debootstrap()
            tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
            try:
                tmp.chmod(0o755)
                log.info("building an Asterisk root in %s (about a minute)", tmp)
                argv = [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(("asterisk", *ROOT_EXTRA_PACKAGES)),
                    DEBIAN_SUITE,
                    str(tmp),
                    self.mirror,
                ]
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                if proc.returncode != 0 or not (tmp / "usr/sbin/asterisk").is_file():
                    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
                    raise AsteriskSandboxError(f"debootstrap failed ({proc.returncode}):\n{tail}")
                _unmount_under(tmp)
                for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
                    deb.unlink()
                os.rename(tmp, root)
            except BaseException:
                _safe_rmtree(tmp)
                raise
        log.info("Asterisk root ready at %s", root)
        return f"chroot {root}"

    def _extra_packages_present(self) -> bool:
        assert self.root is not None
        moh = self.root / MOH_DIR
        return moh.is_dir() and any(moh.iterdir()) and self.odbc_driver() is not None

    def _ensure_extra_packages(self) -> None:
        """A root built before a package joined ROOT_EXTRA_PACKAGES gets it installed in place
        (apt inside the chroot), under the same lock as a build: once, by whoever comes first."""
        assert self.root is not None
        if self._extra_packages_present():
            return
        root = self.root
        with open(root.parent / f".{root.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._extra_packages_present():
                return
            log.info("installing %s into %s", ", ".join(ROOT_EXTRA_PACKAGES), root)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            # The root's suite is a dated snapshot whose Release file may have expired since:
            # its signatures are still checked, only the expiry is not.
            for argv in (
                ["chroot", str(root), "apt-get", "-o", "Acquire::Check-Valid-Until=false",
                 "update"],
                ["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends",
                 *ROOT_EXTRA_PACKAGES],
            ):  # fmt: skip
                proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
                if proc.returncode != 0:
                    raise AsteriskSandboxError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
            for deb in (root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()

    def _prepare_root(self) -> None:
        """Small fixes a bare debootstrap root needs (idempotent)."""
        if self.root is None:
            return
        hosts = self.root / "etc/hosts"
        if not hosts.exists():
            # Without it Asterisk cannot resolve even the host name it runs under.
            hosts.write_text(
                "127.0.0.1\tlocalhost\n"
                f"127.0.1.1\t{socket.gethostname()}\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n"
            )

    @staticmethod
    def _ensure_debootstrap() -> None:
        if shutil.which("debootstrap"):
            return
        log.info("installing debootstrap")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "debootstrap"]):
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                raise AsteriskSandboxError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")

    def _root_user(self) -> tuple[int, int] | None:
        """uid/gid of the root's ``asterisk`` user (from its own /etc/passwd)."""
        assert self.root is not None
        try:
            lines = (self.root / "etc/passwd").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == "asterisk":
                return int(fields[2]), int(fields[3])
        return None

    def _run_as(self) -> tuple[int, int] | None:
        """Owner of the instance directory and user Asterisk drops to; None: the current user."""
        if self.root is not None:
            return self._root_user()
        if os.geteuid() != 0:
            return None
        import grp
        import pwd

        try:
            uid = pwd.getpwnam("asterisk").pw_uid
            gid = grp.getgrnam("asterisk").gr_gid
        except KeyError:
            return None
        return uid, gid

    # --- configuration ----------------------------------------------------------------------------
    def template_context(self) -> dict[str, object]:
        s = self.settings
        return {
            "header": "Generated by centrex.sandbox.asterisk; do not edit.",
            "instance": self.instance,
            "dirs": self.dirs,
            "host": self.ports.host,
            "sip_bind": self.ports.sip_bind,
            "sip_port": self.ports.sip,
            "sip_tls_port": self.ports.sip_tls,
            # Behind the SIP edge (docs/cluster.md): trunks identified by the edge's header.
            "behind_edge": bool(s.sip_proxy),
            "sip_accept_from": s.sip_accept_from,
            "tls_cert_file": self.tls_files[0],
            "tls_key_file": self.tls_files[1],
            "ami_port": self.ports.ami,
            "http_port": self.ports.http,
            "rtp_start": self.ports.rtp_start,
            "rtp_end": self.ports.rtp_end,
            "ami_username": s.ami_username,
            "ami_secret": s.ami_secret.get_secret_value(),
            "ari_users": [
                {"name": name, "password": password, "read_only": role == "cdr"}
                for role in ("api", "control", "cdr")
                for name, password in [s.ari_user(role)]
            ],
            "stasis_app": s.stasis_app,
            "stasis_wait_s": s.stasis_wait_s,
            "emergency_numbers": sorted(EMERGENCY_NUMBERS),
            "ring_timeout_s": s.ring_timeout_s,
            "emergency_limit_ms": int((s.max_call_duration_s + ASTERISK_BACKSTOP_S) * 1000),
            "realm": self.realm,
            "tone_zone": DEFAULT_TONE_ZONE,
            "astdb_prefix": ASTDB_PREFIX,
            "cel_journal": CEL_JOURNAL,
            "sorcery_cache_prefix": SORCERY_CACHE_PREFIX,
            "sorcery_cache_options": (
                f"object_lifetime_maximum={SORCERY_CACHE_LIFETIME_S},expire_on_reload=yes"
            ),
            "odbc": odbc_settings(s, self.instance, self.odbc_driver()),
            **self._voicemail_context(),
        }

    def _voicemail_context(self) -> dict[str, object]:
        """app_voicemail's settings, and the database its realtime mailboxes are read from
        (res_pgsql.conf: the view asterisk_voicemail, migration 0024)."""
        from sqlalchemy.engine import make_url

        from centrex.voicemail.rules import MAILBOX_CONTEXT, VOICEMAIL_DIAL_STATUSES

        s = self.settings
        url = make_url(s.database_url) if s.database_url else None
        return {
            "voicemail_context": MAILBOX_CONTEXT,
            "voicemail_statuses": VOICEMAIL_DIAL_STATUSES,
            "voicemail_max_message_s": s.voicemail_max_message_s,
            "pg": {
                "host": (url.host if url else None) or "127.0.0.1",
                "port": (url.port if url else None) or 5432,
                "database": (url.database if url else None) or "centrex",
                "user": (url.username if url else None) or "centrex",
                "password": (url.password if url else None) or "",
            },
        }

    def render_config(self) -> Path:
        """Render ``asterisk-config/*.j2`` into the instance's etc directory; return it."""
        templates = sorted(self.template_dir.glob("*.j2"))
        if not templates:
            raise AsteriskSandboxError(f"no templates in {self.template_dir}")
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.template_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        owner = self._run_as()
        for inner in self.dirs.all():
            path = self.host_path(inner)
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o750)
        self._install_certificate()
        etc = self.host_path(self.dirs.etc)
        context = self.template_context()
        for template in templates:
            text = env.get_template(template.name).render(context)
            target = etc / template.name.removesuffix(".j2")
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text)
            tmp.chmod(0o640)
            if owner:
                os.chown(tmp, *owner)
            os.replace(tmp, target)
        if owner:
            for dirpath, dirnames, filenames in os.walk(self.instance_dir):
                os.chown(dirpath, *owner)
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), *owner)
        return etc

    def _install_certificate(self) -> None:
        """Put the certificate and key where Asterisk reads them (chown'ed with the rest)."""
        cert, key = (self.host_path(p) for p in self.tls_files)
        s = self.settings
        if s.sip_tls_cert_file and s.sip_tls_key_file:
            # Copied at every start of a stopped instance: a renewed certificate is taken then.
            # Checked already when the settings were read; read again in case it changed since.
            write_private(key, s.sip_tls_key_file.read_bytes())
            write_private(cert, s.sip_tls_cert_file.read_bytes(), mode=0o640)
        elif not is_usable_pair(cert, key):
            log.info("generating a self-signed TLS certificate for %s in %s", self.ports.host, cert)
            generate_self_signed(cert, key, self.ports.host)

    # --- process ----------------------------------------------------------------------------------
    def _pid_alive(self, pid: int) -> bool:
        """Is *pid* a live (not zombie) Asterisk of this very instance?"""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):
            return False
        args = [a.decode(errors="replace") for a in cmdline]
        if not (
            args
            and os.path.basename(args[0]) == "asterisk"
            and str(self.config_file) in args
            and "-r" not in args
            and "-rx" not in args
        ):
            return False
        if self.root is None:
            return True
        # Same instance name in another root is another instance.
        try:
            return os.readlink(f"/proc/{pid}/root") == str(self.root.resolve())
        except OSError:
            return False

    def _find_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if self._pid_alive(pid):
                return pid
        # No (or a stale) pid file: look for a process started with our -C.
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._pid_alive(int(entry.name)):
                return int(entry.name)
        return None

    def is_running(self) -> bool:
        return self._find_pid() is not None

    def cli(self, command: str, *, timeout: float = 30) -> str:
        """Run one Asterisk CLI command through the control socket and return its output."""
        argv = [*self._asterisk_argv(), "-rx", command]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AsteriskSandboxError(f"{command!r} took longer than {timeout}s") from exc
        out = proc.stdout
        if proc.returncode != 0 or out.startswith("Unable to connect to remote asterisk"):
            raise AsteriskNotRunning(
                f"asterisk -rx {command!r} failed ({proc.returncode}): "
                f"{(out + proc.stderr).strip()}"
            )
        return out

    def version(self) -> str:
        if self._version is None:
            argv = [*self._asterisk_argv()[:-2], "-V"]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            self._version = proc.stdout.strip() or proc.stderr.strip()
        return self._version

    def status(self) -> AsteriskStatus:
        pid = self._find_pid()
        installed = self.root is None or self._root_complete()
        return AsteriskStatus(
            instance=self.instance,
            running=pid is not None,
            pid=pid,
            version=self.version() if installed else None,
            ports=self.ports,
            mode=self.mode,
            instance_dir=self.instance_dir,
        )

    def _check_ports_free(self) -> None:
        busy = []
        for kind, host, port in (
            ("SIP/udp", self.ports.sip_bind, self.ports.sip),
            ("SIP/tcp", self.ports.sip_bind, self.ports.sip),
            ("SIP/tls", self.ports.sip_bind, self.ports.sip_tls),
            ("AMI", self.ports.host, self.ports.ami),
            ("HTTP/ARI", self.ports.host, self.ports.http),
        ):
            stype = socket.SOCK_DGRAM if kind == "SIP/udp" else socket.SOCK_STREAM
            with socket.socket(socket.AF_INET, stype) as sock:
                if stype == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    busy.append(f"{kind} {host}:{port}")
        if busy:
            raise AsteriskSandboxError(f"ports already in use: {', '.join(busy)}")

    def start(self, timeout: float = 60) -> AsteriskStatus:
        """Start the instance (idempotent) and wait until it is fully booted and listening.

        *timeout* does not include building the root on first use (``ensure_installed``).
        """
        self.ensure_installed()
        deadline = time.monotonic() + timeout
        launched_at = None
        if not self.is_running():
            self._prepare_root()
            self.render_config()
            if len(str(self.dirs.run / "asterisk.ctl")) > _SUN_PATH_MAX:
                raise AsteriskSandboxError(f"control socket path too long: {self.dirs.run}")
            self._check_ports_free()
            for stale in (self.pid_file, self.ctl_socket):
                stale.unlink(missing_ok=True)
            argv = list(self._asterisk_argv())
            if self._run_as() is not None:
                argv += ["-U", "asterisk", "-G", "asterisk"]
            startup_log = self.host_path(self.dirs.log / "startup.log")
            log.info("starting Asterisk instance %s: %s", self.instance, " ".join(argv))
            with open(startup_log, "ab") as out:
                # Asterisk forks into the background; the parent returns at once.
                proc = subprocess.run(
                    argv,
                    env=self._asterisk_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=max(1.0, deadline - time.monotonic()),
                    start_new_session=True,
                    check=False,
                )
            if proc.returncode != 0:
                raise AsteriskSandboxError(
                    f"asterisk exited with {proc.returncode}\n{self._log_tail(startup_log)}"
                )
            launched_at = time.monotonic()
        try:
            self._wait_ready(deadline, launched_at)
        except AsteriskSandboxError:
            with contextlib.suppress(AsteriskSandboxError):
                self.stop()
            raise
        return self.status()

    def _asterisk_env(self) -> dict[str, str]:
        """unixODBC reads this instance's odbc.ini and odbcinst.ini, not the root's /etc."""
        etc = str(self.dirs.etc)
        return {**os.environ, "ODBCSYSINI": etc, "ODBCINI": f"{etc}/odbc.ini"}

    def _wait_ready(self, deadline: float, launched_at: float | None) -> None:
        # 1. the control socket answers and Asterisk is fully booted
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AsteriskSandboxError(
                    f"Asterisk {self.instance} did not boot in time\n{self._log_tail()}"
                )
            if not self.ctl_socket.exists():
                # The forked daemon needs a moment before its pid file and socket appear.
                grace = launched_at is not None and time.monotonic() - launched_at < 5
                if not grace and self._find_pid() is None:
                    raise AsteriskSandboxError(
                        f"Asterisk {self.instance} is not running\n{self._log_tail()}"
                    )
                time.sleep(0.1)
                continue
            try:
                self.cli("core waitfullybooted", timeout=remaining)
                break
            except AsteriskNotRunning:
                time.sleep(0.2)
        # 2. AMI, ARI and SIP (TCP and TLS transports) accept connections
        sip_host = self.ports.host if self.ports.sip_bind == "0.0.0.0" else self.ports.sip_bind
        for host, port in (
            (self.ports.host, self.ports.ami),
            (self.ports.host, self.ports.http),
            (sip_host, self.ports.sip),
            (sip_host, self.ports.sip_tls),
        ):
            while True:
                try:
                    with socket.create_connection((host, port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AsteriskSandboxError(
                            f"Asterisk {self.instance} booted but {host}:{port} "
                            f"does not accept connections\n{self._log_tail()}"
                        ) from None
                    time.sleep(0.1)

    def _log_tail(self, path: Path | None = None, lines: int = 30) -> str:
        path = path or self.log_file
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {path})"

    def stop(self, timeout: float = 30) -> None:
        """Stop the instance: ``core stop now``, then SIGTERM, then SIGKILL. Idempotent."""
        deadline = time.monotonic() + timeout
        pid = self._find_pid()
        if pid is not None:
            with contextlib.suppress(AsteriskSandboxError):
                self.cli("core stop now", timeout=max(1.0, min(10.0, timeout / 2)))
            if not self._wait_exit(pid, deadline):
                log.warning("Asterisk %s (pid %d) ignored core stop; SIGTERM", self.instance, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not self._wait_exit(pid, time.monotonic() + 5):
                    log.warning("Asterisk %s (pid %d) still there; SIGKILL", self.instance, pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    if not self._wait_exit(pid, time.monotonic() + 5):
                        raise AsteriskSandboxError(f"could not stop Asterisk pid {pid}")
        for stale in (self.pid_file, self.ctl_socket):
            with contextlib.suppress(OSError):
                stale.unlink(missing_ok=True)

    def _wait_exit(self, pid: int, deadline: float) -> bool:
        while self._pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def wipe_provisioned_state(self) -> None:
        """Delete the instance's astdb (every pushed object, every registration).

        Safe whether or not the instance runs: a running instance is stopped first and started
        again afterwards.
        """
        was_running = self.is_running()
        if was_running:
            self.stop()
        db = self.astdb_file
        for path in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):
            path.unlink(missing_ok=True)
        if was_running:
            self.start()

    def wipe_call_journal(self) -> None:
        """Delete the instance's CEL journal and its rotated segments (test instances: a fresh
        database's CDR shipper would otherwise ship every call of every earlier session)."""
        journal = self.cel_journal
        for path in journal.parent.glob(journal.name + "*"):
            path.unlink(missing_ok=True)

    def remove_instance(self) -> None:
        """Stop the instance and delete its directory (test instances)."""
        self.stop()
        _safe_rmtree(self.instance_dir)


# --- helpers --------------------------------------------------------------------------------------
def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    mounts = []
    with open("/proc/mounts") as fh:
        for line in fh:
            target = line.split()[1].encode().decode("unicode_escape")
            if target.startswith(prefix) or target == prefix.rstrip("/"):
                mounts.append(target)
    return sorted(mounts, key=len, reverse=True)


def _unmount_under(path: Path) -> None:
    for target in _mounts_under(path):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    if left := _mounts_under(path):
        raise AsteriskSandboxError(f"cannot unmount {left} under {path}")


def _safe_rmtree(path: Path) -> None:
    """rmtree that never descends into something mounted under *path* (debootstrap bind-mounts
    /dev entries and mounts /proc, /sys in containers)."""
    if not path.exists():
        return
    _unmount_under(path)
    shutil.rmtree(path)
