"""The clustered shape on one machine (docs/cluster.md): one Kamailio in front of N Asterisk
nodes on distinct loopback addresses, each node with its own call-control daemon and CDR shipper
(its node name in every call row, CDR and log line), one PostgreSQL, one API expiring every
node's cache. Used by ``centrex cluster``, tests/test_cluster.py and bench/cluster.py.

Kamailio runs in the foreground (``-DD -E``) as a child process with its own rendered
configuration (deploy/kamailio/kamailio.cfg.j2), pid file and control socket, never as the
package's system service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from sqlalchemy.engine import make_url

from centrex.asterisk.pjsip_objects import TRUNK_HEADER
from centrex.config import Settings
from centrex.sandbox import processes
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.processes import CDR_READY, DAEMON_READY, ServiceProcess
from centrex.tls import generate_self_signed, is_usable_pair, write_private

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "kamailio.cfg.j2"
TLS_TEMPLATE = TEMPLATE.with_name("tls.cfg.j2")
MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules")
#: The dispatcher set holding the nodes (kamailio.cfg.j2 uses set 1).
DISPATCH_SET = 1


class ClusterError(RuntimeError):
    """Kamailio or a node could not be started."""


@dataclass(frozen=True)
class NodePlan:
    """Where one node listens: its address, and ports that differ from its neighbours' (the SIP
    port picks the node's RTP block, centrex.sandbox.asterisk.rtp_port_range)."""

    name: str
    address: str
    sip_port: int


def plan_nodes(base: Settings, addresses: list[str], prefix: str = "n") -> list[NodePlan]:
    """Node names n1, n2, ... on ``addresses``; SIP on sip_port+1, +2, ... (Kamailio has
    sip_port itself). Two clusters sharing one database (the tests) need distinct ``prefix``es:
    calls and CDR checkpoints are keyed by node name."""
    return [
        NodePlan(f"{prefix}{i}", address, base.sip_port + i)
        for i, address in enumerate(addresses, 1)
    ]


def node_settings(
    base: Settings, plan: NodePlan, edge: str, others: list[NodePlan], *, edge_only: bool = True
) -> Settings:
    """The settings of one node's Asterisk, daemon and CDR shipper, derived from the cluster's.
    ``edge_only``: the node accepts SIP requests from the edge's address only (pjsip acl)."""
    i = plan.sip_port - base.sip_port  # the node's rank, 1, 2, ... (plan_nodes)
    return base.model_copy(
        update={
            "asterisk_instance": f"{base.asterisk_instance}-{plan.name}",
            "node_name": plan.name,
            "asterisk_host": plan.address,
            "sip_bind": None,
            "media_address": None,
            "sip_port": plan.sip_port,
            "sip_tls_port": None,  # the node's SIP port + 1, on the node's address
            "sip_proxy": edge,
            # The edge keeps phones' NAT bindings open (Kamailio's keepalive, edge_keepalive_s);
            # a node holds no contact for a line, and N nodes each sending OPTIONS to every line
            # would be N x lines requests for what one sender does (docs/cluster.md).
            "sip_qualify_frequency_s": 0,
            "sip_accept_from": [edge.rpartition(":")[0]] if edge_only else [],
            "control_http_port": base.control_http_port + i if base.control_http_port else 0,
            "cdr_http_port": base.cdr_http_port + i if base.cdr_http_port else 0,
            # Every other node's AMI: a line changed through this node's API is expired there.
            "asterisk_cache_nodes": [f"{o.address}:{base.ami_port}" for o in others],
        }
    )


def kamailio_db_url(settings: Settings, *, writes_location: bool = False) -> str:
    """Kamailio reads line credentials, trunks, bans and purges as Asterisk's read-only
    database role; ``writes_location``: its registrations, as the edge's own role, which may
    write kamailio_location only (migration 0034_edge_location)."""
    from centrex.asterisk.realtime import ASTERISK_DB_ROLE
    from centrex.sandbox.postgres import EDGE_ROLE

    url = make_url(settings.database_url) if settings.database_url else None
    host = (url.host if url else None) or "127.0.0.1"
    port = (url.port if url else None) or 5432
    database = (url.database if url else None) or "centrex"
    role, secret = (
        (EDGE_ROLE, settings.edge_db_password)
        if writes_location
        else (ASTERISK_DB_ROLE, settings.asterisk_db_password)
    )
    return f"postgres://{role}:{secret.get_secret_value()}@{host}:{port}/{database}"


@dataclass
class Kamailio:
    """One Kamailio process in front of ``nodes`` (address, SIP port)."""

    settings: Settings
    directory: Path
    listen_ip: str
    port: int
    nodes: list[tuple[str, int]]
    children: int = 4
    debug: int = 1
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # Kamailio changes directory to / once started: every path it is given is absolute.
        self.directory = self.directory.absolute()

    @property
    def address(self) -> str:
        return f"{self.listen_ip}:{self.port}"

    @property
    def tls_port(self) -> int:
        """SIP over TLS, on the edge's address: its SIP port + 1, as the API tells phones
        (Settings.phones_sip_tls_server)."""
        return self.port + 1

    @property
    def tls_files(self) -> tuple[Path, Path]:
        return self.directory / "tls-cert.pem", self.directory / "tls-key.pem"

    def _install_tls_files(self) -> None:
        """The operator's certificate and key (CENTREX_SIP_TLS_CERT_FILE / _KEY_FILE), copied
        beside the config; without them a self-signed pair for the edge's address, generated
        once and kept, as the one-machine shape does for Asterisk (docs/tls.md)."""
        cert, key = self.tls_files
        s = self.settings
        if s.sip_tls_cert_file and s.sip_tls_key_file:
            write_private(cert, s.sip_tls_cert_file.read_bytes(), mode=0o600)
            write_private(key, s.sip_tls_key_file.read_bytes(), mode=0o600)
        elif not (cert.is_file() and key.is_file() and is_usable_pair(cert, key)):
            generate_self_signed(cert, key, self.listen_ip)

    @property
    def config_file(self) -> Path:
        return self.directory / "kamailio.cfg"

    @property
    def pid_file(self) -> Path:
        return self.directory / "kamailio.pid"

    @property
    def ctl_socket(self) -> Path:
        return self.directory / "kamailio.ctl"

    @property
    def log_file(self) -> Path:
        return self.directory / "kamailio.log"

    def render(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        module_dir = next((d for d in MODULE_DIRS if Path(d, "dispatcher.so").is_file()), None)
        if (
            module_dir is None
            or not Path(module_dir, "tls.so").is_file()
            or not shutil.which("kamailio")
        ):
            raise ClusterError(
                "Kamailio is not installed: apt-get install kamailio kamailio-extra-modules "
                "kamailio-postgres-modules kamailio-tls-modules (deploy/bootstrap.sh does it)"
            )
        dispatcher_list = self.directory / "dispatcher.list"
        dispatcher_list.write_text(
            "".join(f"{DISPATCH_SET} sip:{ip}:{port}\n" for ip, port in self.nodes)
        )
        s = self.settings
        self._install_tls_files()
        tls_config = self.directory / "tls.cfg"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        header = "Generated by centrex.sandbox.cluster; do not edit."
        cert, key = self.tls_files
        tls_config.write_text(
            env.get_template(TLS_TEMPLATE.name).render(header=header, cert_file=cert, key_file=key)
        )
        text = env.get_template(TEMPLATE.name).render(
            header=header,
            debug=self.debug,
            children=self.children,
            listen_ip=self.listen_ip,
            port=self.port,
            tls_port=self.tls_port,
            tls_config=tls_config,
            module_dir=module_dir,
            ctl_socket=self.ctl_socket,
            db_url=kamailio_db_url(s),
            location_db_url=kamailio_db_url(s, writes_location=True),
            realm=s.sip_realm,
            dispatcher_list=dispatcher_list,
            pike_density=s.edge_flood_requests,
            authfail_limit=s.edge_auth_failures,
            authfail_window_s=s.edge_auth_failure_window_s,
            ban_s=s.edge_ban_s,
            keepalive_s=s.edge_keepalive_s,
            ban_sync_s=s.edge_ban_sync_s,
            # The edge's name in the rows it writes into sip_bans (edge_ban() checks its shape).
            node=f"edge@{self.listen_ip}",
            metrics_ip=s.edge_metrics_host,
            metrics_port=s.edge_metrics_port,
            allow=[str(net) for net in s.sip_ban_allow],
            trunk_header=TRUNK_HEADER,
            trunk_cache_s=s.edge_trunk_cache_s,
        )
        self.config_file.write_text(text)
        self.config_file.chmod(0o600)  # holds the database password
        return self.config_file

    def start(self, timeout: float = 20) -> None:
        self.render()
        check = subprocess.run(
            ["kamailio", "-c", "-f", str(self.config_file)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise ClusterError(f"kamailio.cfg does not check:\n{check.stderr[-3000:]}")
        self.ctl_socket.unlink(missing_ok=True)
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                ["kamailio", "-f", str(self.config_file), "-DD", "-E",
                 "-P", str(self.pid_file), "-m", "128", "-M", "16"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            processes.wait_until(
                lambda: self.ctl_socket.exists() or self.process.poll() is not None,  # type: ignore[union-attr]
                timeout,
                "Kamailio's control socket",
            )
        except TimeoutError:
            self.stop()
            raise ClusterError(f"Kamailio did not start:\n{self.log_tail()}") from None
        if self.process.poll() is not None:
            raise ClusterError(f"Kamailio exited:\n{self.log_tail()}")

    def rpc(self, *command: str, timeout: float = 10) -> str:
        """A Kamailio RPC command through its control socket (kamcmd)."""
        proc = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl_socket}", *command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ClusterError(f"kamcmd {' '.join(command)}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def active_nodes(self) -> set[str]:
        """The nodes dispatch sends new calls to, as ``ip:port`` (flags without I/D)."""
        text = self.rpc("dispatcher.list")
        active, uri = set(), None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URI:"):
                uri = line.split("sip:", 1)[-1]
            elif line.startswith("FLAGS:") and uri is not None:
                if line.split(":", 1)[1].strip().startswith("A"):
                    active.add(uri)
                uri = None
        return active

    def contacts(self, username: str) -> int:
        """How many contacts the edge's location table holds for a line (0: unregistered)."""
        try:
            text = self.rpc("ul.lookup", "kamailio_location", username)
        except ClusterError:  # "AOR not found"
            return 0
        return text.count("Address:")

    def banned(self) -> set[str]:
        """Addresses the edge drops now: the items of its ban table whose generation is at
        least the current sync's (kamailio.cfg.j2, BANSYNC; a lifted ban's item stays in the
        table, one generation behind, until it expires)."""
        generation = self.ban_generation()
        items, name = {}, None
        for line in self.rpc("htable.dump", "ipban").splitlines():
            key, _, value = line.strip().partition(":")
            if key == "name":
                name = value.strip()
            elif key == "value" and name is not None:
                items[name] = int(value.strip())
                name = None
        return {address for address, item in items.items() if item >= generation}

    def ban_generation(self) -> int:
        """How many ban syncs have succeeded since start (kamailio.cfg.j2, BANSYNC)."""
        return int(self.rpc("pv.shvGet", "bangen").split("value:", 1)[1].split()[0])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def share_voicemail_spool(node: AsteriskSandbox, first: AsteriskSandbox) -> None:
    """``node``'s voicemail spool becomes ``first``'s (a relative symlink, the same inside
    Asterisk's chroot and on the host): a message left on whichever node is in the one spool
    the API lists, serves, deletes and emails from, and every node's app_voicemail counts it
    for the lamps (docs/cluster.md, "Voicemail and MWI"). On several hosts, this is a shared
    filesystem (NFS) mounted at each node's spool."""
    own = node.host_path(node.dirs.spool / "voicemail")
    shared = first.host_path(first.dirs.spool / "voicemail")
    shared.mkdir(parents=True, exist_ok=True)
    link = os.path.relpath(shared, own.parent)
    if own.is_symlink():
        if os.readlink(own) == link:
            return
        own.unlink()
    elif own.exists():
        # Messages left before the spool was shared: kept aside, never deleted.
        own.rename(own.with_name(f"voicemail.unshared-{os.getpid()}-{id(own)}"))
    own.parent.mkdir(parents=True, exist_ok=True)
    own.symlink_to(link)


@dataclass
class Node:
    """One Asterisk node with its daemon and CDR shipper."""

    plan: NodePlan
    settings: Settings
    asterisk: AsteriskSandbox
    control: ServiceProcess
    cdr: ServiceProcess

    def start(self, *, fresh: bool = False) -> None:
        self.asterisk.ensure_installed()
        self.asterisk.render_config()
        if fresh:
            self.asterisk.wipe_provisioned_state()
            self.asterisk.wipe_call_journal()
        self.asterisk.start()
        self.start_services()

    def start_services(self) -> None:
        if not self.cdr.running:
            self.cdr.start_and_wait(CDR_READY)
        if not self.control.running:
            self.control.start_and_wait(DAEMON_READY)

    def kill_asterisk(self) -> None:
        """``kill -9`` of the node's Asterisk: no goodbye to anyone."""
        pid = self.asterisk.status().pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            processes.wait_until(lambda: not self.asterisk.is_running(), 10, "Asterisk to die")

    def kill(self) -> None:
        """``kill -9`` of the whole node, as when its host is lost: daemon, CDR shipper and
        Asterisk; nothing of it says goodbye, nothing of it is left to clean up after itself."""
        self.control.kill()
        self.cdr.kill()
        self.kill_asterisk()

    def stop(self) -> None:
        self.control.stop()
        self.cdr.stop()
        self.asterisk.stop()


class Cluster:
    """Kamailio + nodes; the API and PostgreSQL are the caller's (they are not per node)."""

    def __init__(
        self,
        base: Settings,
        *,
        edge_address: str,
        node_addresses: list[str],
        log_dir: Path,
        edge_only: bool = True,
        node_prefix: str = "n",
    ) -> None:
        plans = plan_nodes(base, node_addresses, node_prefix)
        edge = f"{edge_address}:{base.sip_port}"
        self.base = base
        self.nodes = []
        for plan in plans:
            others = [p for p in plans if p != plan]
            settings = node_settings(base, plan, edge, others, edge_only=edge_only)
            self.nodes.append(
                Node(
                    plan,
                    settings,
                    AsteriskSandbox(settings),
                    ServiceProcess("control", settings, log_dir / plan.name),
                    ServiceProcess("cdr", settings, log_dir / plan.name),
                )
            )
        self.kamailio = Kamailio(
            base,
            log_dir / "kamailio",
            edge_address,
            base.sip_port,
            [(p.address, p.sip_port) for p in plans],
        )

    @property
    def edge(self) -> str:
        return self.kamailio.address

    @property
    def api_settings(self) -> Settings:
        """The API's settings: it drives node 1 and expires the others' caches over AMI."""
        return self.nodes[0].settings

    def start(self, *, fresh: bool = False, timeout: float = 15) -> None:
        first = self.nodes[0].asterisk
        for node in self.nodes[1:]:
            share_voicemail_spool(node.asterisk, first)
        for node in self.nodes:
            node.start(fresh=fresh)
        self.kamailio.start()
        self.wait_dispatching({f"{n.plan.address}:{n.plan.sip_port}" for n in self.nodes}, timeout)

    def wait_dispatching(self, expected: set[str], timeout: float = 15) -> None:
        """Until exactly ``expected`` nodes are in dispatch (probes answered or missed)."""
        try:
            processes.wait_until(lambda: self.kamailio.active_nodes() == expected, timeout,
                                 f"dispatch to be {sorted(expected)}")  # fmt: skip
        except TimeoutError:
            raise ClusterError(
                f"dispatch is {sorted(self.kamailio.active_nodes())}, not {sorted(expected)}\n"
                f"{self.kamailio.log_tail()}"
            ) from None

    def stop(self) -> None:
        self.kamailio.stop()
        for node in self.nodes:
            node.stop()
