"""The Asterisk sandbox against a real Asterisk 22: boot, ARI/AMI, lines over ARI, sipp."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sip_agent import SipEndpoint, free_udp_port

from centrex.config import Settings
from centrex.sandbox import AsteriskSandbox, AsteriskSandboxError, rtp_port_range
from centrex.sandbox.asterisk import ASTDB_PREFIX
from centrex.tls import generate_self_signed

DYNAMIC = "/asterisk/config/dynamic/res_pjsip"


# --- helpers --------------------------------------------------------------------------------------
def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _free_ports() -> tuple[int, int, int]:
    """SIP, AMI and HTTP ports for a test instance, free right now (and SIP + 1, SIP/TLS)."""
    for _ in range(200):
        base = random.randrange(16000, 19900, 10)
        ports = (base, base + 2, base + 3)
        if all(_port_free(p) for p in (*ports, base + 1)):
            return ports
    raise RuntimeError("no free port block")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Ami:
    """A tiny synchronous AMI client (enough for tests)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.banner = self.file.readline().decode().strip()
        self._n = 0

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def _read(self) -> dict[str, str]:
        msg: dict[str, str] = {}
        while True:
            line = self.file.readline().decode()
            if not line:
                raise ConnectionError("AMI closed the connection")
            line = line.rstrip("\r\n")
            if not line:
                if msg:
                    return msg
                continue
            key, _, value = line.partition(": ")
            msg[key] = value

    def action(self, name: str, **fields: str) -> tuple[dict[str, str], list[dict[str, str]]]:
        """Send an action; return its response and, for list actions, the events of the list."""
        self._n += 1
        action_id = f"t{self._n}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{k}: {v}" for k, v in fields.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = self._read()
        while response.get("ActionID") != action_id or "Response" not in response:
            response = self._read()
        events: list[dict[str, str]] = []
        if response.get("EventList") == "start":
            while True:
                event = self._read()
                if event.get("ActionID") != action_id:
                    continue
                if event.get("EventList") == "Complete":
                    break
                events.append(event)
        return response, events


@dataclass
class Line:
    name: str
    password: str


def md5_cred(user: str, password: str, realm: str = "centrex") -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def fields(**values: str) -> dict[str, list[dict[str, str]]]:
    return {"fields": [{"attribute": k, "value": v} for k, v in values.items()]}


def push_line(ari: httpx.Client, line: Line, host: str) -> None:
    """The three objects a line is made of, pushed the way the reconciler does."""
    r = ari.put(
        f"{DYNAMIC}/auth/{line.name}",
        json=fields(
            auth_type="digest",
            username=line.name,
            password_digest="md5:" + md5_cred(line.name, line.password),
        ),
    )
    assert r.status_code == 200, r.text
    r = ari.put(f"{DYNAMIC}/aor/{line.name}", json=fields(max_contacts="1", remove_existing="yes"))
    assert r.status_code == 200, r.text
    r = ari.put(
        f"{DYNAMIC}/endpoint/{line.name}",
        json=fields(
            context="centrex-lines",
            disallow="all",
            allow="alaw,ulaw",
            direct_media="no",
            auth=line.name,
            aors=line.name,
            media_address=host,
            bind_rtp_to_media_address="yes",
        ),
    )
    assert r.status_code == 200, r.text


def as_dict(body: list[dict[str, str]]) -> dict[str, str]:
    return {f["attribute"]: f["value"] for f in body}


# --- fixtures -------------------------------------------------------------------------------------
def _can_run_asterisk() -> str | None:
    if shutil.which("asterisk"):
        return None
    if os.geteuid() != 0:
        return "the Asterisk sandbox needs root (chroot) when the host has no asterisk"
    return None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskSandbox]:
    with started_sandbox(tmp_path_factory, "test") as sb:
        yield sb


@contextlib.contextmanager
def started_sandbox(
    tmp_path_factory: pytest.TempPathFactory, name: str, **fields: object
) -> Iterator[AsteriskSandbox]:
    """An Asterisk instance of its own on free ports, removed afterwards; ``fields`` are
    further settings."""
    if reason := _can_run_asterisk():
        pytest.skip(reason)
    sip, ami, http = _free_ports()
    defaults = {
        "ami_secret": SecretStr(secrets.token_urlsafe(12)),
        "ari_password": SecretStr(secrets.token_urlsafe(12)),
        "ari_control_password": SecretStr(secrets.token_urlsafe(12)),
        "ari_cdr_password": SecretStr(secrets.token_urlsafe(12)),
    }
    settings = Settings(
        _env_file=None,
        var_dir=tmp_path_factory.mktemp("var"),
        asterisk_instance=f"{name}-{os.getpid()}-{secrets.token_hex(3)}",
        sip_port=sip,
        ami_port=ami,
        http_port=http,
        **{**defaults, **fields},
    )
    sb = AsteriskSandbox(settings)
    try:
        sb.start(timeout=120)
        yield sb
    finally:
        sb.remove_instance()


@pytest.fixture
def ari(sandbox: AsteriskSandbox) -> Iterator[httpx.Client]:
    s = sandbox.settings
    with httpx.Client(
        base_url=sandbox.ari_url,
        auth=(s.ari_username, s.ari_password.get_secret_value()),
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def ami(sandbox: AsteriskSandbox) -> Iterator[Ami]:
    s = sandbox.settings
    client = Ami(sandbox.ports.host, sandbox.ports.ami)
    response, _ = client.action(
        "Login", Username=s.ami_username, Secret=s.ami_secret.get_secret_value(), Events="off"
    )
    assert response["Response"] == "Success", response
    yield client
    client.close()


# --- unit -----------------------------------------------------------------------------------------
@pytest.mark.unit
def test_rtp_ranges_differ_per_instance() -> None:
    main, test = rtp_port_range(5060), rtp_port_range(15060)
    assert main != test
    for start, end in (main, test):
        assert start % 2 == 0 and 1024 < start < end < 65536


@pytest.mark.unit
def test_render_config(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        var_dir=tmp_path / "var",
        asterisk_root=tmp_path / "root",
        asterisk_instance="unit",
        sip_port=15060,
        ami_port=15038,
        http_port=18088,
    )
    sb = AsteriskSandbox(settings)
    etc = sb.render_config()
    conf = {p.name: p.read_text() for p in etc.glob("*.conf")}
    for name in ("asterisk", "modules", "pjsip", "sorcery", "extensions", "http", "manager"):
        assert f"{name}.conf" in conf
    assert f"astdbdir => {sb.dirs.db}" in conf["asterisk.conf"]
    assert "bind = 127.0.0.1:15060" in conf["pjsip.conf"]
    assert "protocol = tls\nbind = 127.0.0.1:15061\n" in conf["pjsip.conf"]
    assert f"cert_file = {sb.tls_files[0]}\n" in conf["pjsip.conf"]
    assert sb.tls_certificate.is_file()  # self-signed, none being configured
    assert "load => res_srtp.so" in conf["modules.conf"]
    assert "default_realm = centrex" in conf["pjsip.conf"]
    assert "type = endpoint\n" not in conf["pjsip.conf"]
    assert f"endpoint = astdb,{ASTDB_PREFIX}" in conf["sorcery.conf"]
    for object_type in ("endpoint", "auth", "aor", "identify"):
        assert f"name=centrex_{object_type}\n" in conf["sorcery.conf"]
    assert "load => res_sorcery_memory_cache.so" in conf["modules.conf"]
    assert "bindport = 18088" in conf["http.conf"]
    assert "port = 15038" in conf["manager.conf"]
    start, end = rtp_port_range(15060)
    assert f"rtpstart = {start}" in conf["rtp.conf"] and f"rtpend = {end}" in conf["rtp.conf"]
    assert "Stasis(centrex)" in conf["extensions.conf"]
    assert "{{" not in "".join(conf.values())


# --- integration ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_boots_and_answers_ari_and_ami(sandbox: AsteriskSandbox, ari: httpx.Client, ami: Ami):
    status = sandbox.status()
    assert status.running and status.pid
    assert status.version and status.version.startswith("Asterisk")
    info = ari.get("/asterisk/info")
    assert info.status_code == 200, info.text
    assert info.json()["system"]["version"] in status.version
    bad = httpx.get(f"{sandbox.ari_url}/asterisk/info", auth=("centrex", "wrong"), timeout=5)
    assert bad.status_code == 401
    assert ami.banner.startswith("Asterisk Call Manager/")
    response, _ = ami.action("CoreStatus")
    assert response["Response"] == "Success"
    assert "Asterisk" in sandbox.cli("core show version")


@pytest.mark.integration
def test_refuses_a_second_instance_on_the_same_ports(sandbox: AsteriskSandbox) -> None:
    clone = AsteriskSandbox(
        sandbox.settings.model_copy(update={"asterisk_instance": sandbox.instance + "-b"})
    )
    try:
        with pytest.raises(AsteriskSandboxError, match="in use"):
            clone.start(timeout=10)
        assert not clone.is_running()
    finally:
        clone.remove_instance()


@pytest.mark.integration
def test_without_a_configured_certificate_tls_presents_a_self_signed_one_kept_across_restarts(
    sandbox: AsteriskSandbox,
) -> None:
    assert sandbox.settings.sip_tls_cert_file is None
    generated = sandbox.tls_certificate.read_bytes()
    context = ssl.create_default_context(cafile=str(sandbox.tls_certificate))
    context.check_hostname = False  # pinned: the only certificate trusted is that file

    def presented() -> bytes | None:
        raw = socket.create_connection((sandbox.ports.host, sandbox.ports.sip_tls), timeout=5)
        with context.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)

    assert presented() == ssl.PEM_cert_to_DER_cert(generated.decode())
    assert oct(sandbox.host_path(sandbox.tls_files[1]).stat().st_mode & 0o777) == "0o600"
    sandbox.stop()
    sandbox.start()
    assert sandbox.tls_certificate.read_bytes() == generated
    assert presented() == ssl.PEM_cert_to_DER_cert(generated.decode())


@pytest.mark.integration
def test_the_operator_s_certificate_is_presented_and_a_renewed_one_taken_at_the_next_start(
    sandbox: AsteriskSandbox, tmp_path: Path
) -> None:
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    generate_self_signed(cert, key, "127.0.0.1")
    settings = sandbox.settings.model_copy(
        update={"sip_tls_cert_file": cert, "sip_tls_key_file": key}
    )
    operated = AsteriskSandbox(settings)  # the same instance, configured with a certificate

    def presented() -> bytes:
        context = ssl.create_default_context(cafile=str(cert))  # trusts only what cert holds now
        context.check_hostname = False
        raw = socket.create_connection((sandbox.ports.host, sandbox.ports.sip_tls), timeout=5)
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    sandbox.stop()
    try:
        operated.start()
        first = cert.read_bytes()
        assert presented() == ssl.PEM_cert_to_DER_cert(first.decode())
        generate_self_signed(cert, key, "127.0.0.1")  # renewed in place, as certbot does
        operated.stop()
        operated.start()
        assert cert.read_bytes() != first
        assert presented() == ssl.PEM_cert_to_DER_cert(cert.read_bytes().decode())
    finally:
        operated.stop()
        sandbox.start()


@pytest.mark.integration
def test_push_get_list_delete_line(sandbox: AsteriskSandbox, ari: httpx.Client, ami: Ami) -> None:
    line = Line("tmp-line", "pw-tmp")
    push_line(ari, line, sandbox.ports.host)

    endpoint = as_dict(ari.get(f"{DYNAMIC}/endpoint/{line.name}").json())
    assert endpoint["context"] == "centrex-lines"
    assert endpoint["aors"] == line.name and endpoint["auth"] == line.name
    assert endpoint["allow"] == "(alaw|ulaw)"  # values come back normalised
    assert endpoint["direct_media"] == "false"
    auth = as_dict(ari.get(f"{DYNAMIC}/auth/{line.name}").json())
    assert auth["password_digest"] == "MD5:" + md5_cred(line.name, line.password)
    assert auth["password"] == ""

    # One call lists every provisioned object with all its fields.
    response, events = ami.action("DBGetTree", Family=ASTDB_PREFIX)
    assert response["Response"] == "Success"
    tree = {e["Key"]: json.loads(e["Val"]) for e in events if e["Event"] == "DBGetTreeResponse"}
    for kind in ("auth", "aor", "endpoint"):
        assert f"/{ASTDB_PREFIX}/{kind}/{line.name}" in tree
    assert tree[f"/{ASTDB_PREFIX}/aor/{line.name}"]["max_contacts"] == "1"

    for kind in ("endpoint", "aor", "auth"):
        assert ari.delete(f"{DYNAMIC}/{kind}/{line.name}").status_code == 204
        assert ari.get(f"{DYNAMIC}/{kind}/{line.name}").status_code == 404
    assert ari.delete(f"{DYNAMIC}/auth/{line.name}").status_code == 404
    _, events = ami.action("DBGetTree", Family=f"{ASTDB_PREFIX}/endpoint")
    assert not [e for e in events if e.get("Key", "").endswith(f"/{line.name}")]


@pytest.mark.integration
def test_pushed_line_survives_restart(sandbox: AsteriskSandbox, ari: httpx.Client) -> None:
    line = Line("keeper", "pw-keeper")
    push_line(ari, line, sandbox.ports.host)
    pid = sandbox.status().pid
    sandbox.stop()
    assert not sandbox.is_running()
    sandbox.stop()  # idempotent
    sandbox.start()
    assert sandbox.status().pid != pid
    sandbox.start()  # idempotent
    endpoint = ari.get(f"{DYNAMIC}/endpoint/{line.name}")
    assert endpoint.status_code == 200, endpoint.text
    assert as_dict(endpoint.json())["context"] == "centrex-lines"
    assert "keeper" in sandbox.cli("pjsip show endpoint keeper")


@pytest.mark.integration
def test_sipp_register(sandbox: AsteriskSandbox, ari: httpx.Client, ami: Ami) -> None:
    line = Line("alice", "s3cret-alice")
    push_line(ari, line, sandbox.ports.host)
    server = f"{sandbox.ports.host}:{sandbox.ports.sip}"
    device = SipEndpoint(line.name, line.password, server)

    device.register(free_udp_port()).expect_success()
    _, contacts = ami.action("PJSIPShowContacts")
    mine = [c for c in contacts if c.get("Endpoint") == line.name]
    assert len(mine) == 1 and mine[0]["Uri"].startswith(f"sip:{line.name}@127.0.0.1:")
    endpoint = ari.get(f"/endpoints/PJSIP/{line.name}").json()
    assert endpoint["state"] == "online"

    impostor = SipEndpoint(line.name, "not-the-password", server)
    impostor.register_refused(free_udp_port()).expect_success()
    # ... and the refusal scenario really fails when the password is right.
    assert device.register_refused(free_udp_port()).wait() != 0


@pytest.mark.integration
def test_call_refused_while_no_stasis_app(sandbox: AsteriskSandbox, ari: httpx.Client) -> None:
    line = Line("caller", "s3cret-caller")
    push_line(ari, line, sandbox.ports.host)
    caller = SipEndpoint(line.name, line.password, f"{sandbox.ports.host}:{sandbox.ports.sip}")
    caller.call_refused("1234", 503).expect_success()
    assert "not connected - refusing" in sandbox.log_file.read_text()


@pytest.mark.integration
def test_wipe_provisioned_state(sandbox: AsteriskSandbox, ari: httpx.Client) -> None:
    push_line(ari, Line("doomed", "pw"), sandbox.ports.host)
    sandbox.wipe_provisioned_state()
    assert sandbox.is_running()
    assert ari.get(f"{DYNAMIC}/endpoint/doomed").status_code == 404
    assert ari.get(f"{DYNAMIC}/endpoint/keeper").status_code == 404
