"""Issue 12: AMI and ARI stay private while SIP faces the phones; no command starts with a
default secret; the AMI user can do only what the reconciler needs.

A real Asterisk instance of this module's own, SIP bound to every address (as an operator
serving phones on a public address would): AMI and ARI still answer on loopback only. Every
address tried is in 127.0.0.0/8.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from test_sandbox_asterisk import Ami, started_sandbox

from centrex.sandbox.asterisk import AsteriskSandbox

pytestmark = pytest.mark.integration

OTHER = "127.0.0.2"  # another address of this host: SIP answers there, AMI and ARI must not


@pytest.fixture(scope="module")
def public_sip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskSandbox]:
    with started_sandbox(tmp_path_factory, "ports", sip_bind="0.0.0.0") as sandbox:
        yield sandbox


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _sip_options(host: str, port: int) -> str:
    """One SIP OPTIONS over UDP; the status line of the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        tag = secrets.token_hex(4)
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag};rport\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: {tag}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(5)
        sock.sendto(request.encode(), (host, port))
        return sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]


def test_sip_answers_everywhere_while_ami_and_ari_answer_on_loopback_only(public_sip):
    ports = public_sip.ports
    assert _sip_options(OTHER, ports.sip).startswith("SIP/2.0 ")
    assert _connects("127.0.0.1", ports.ami) and _connects("127.0.0.1", ports.http)
    assert not _connects(OTHER, ports.ami), "AMI answers on another address"
    assert not _connects(OTHER, ports.http), "ARI answers on another address"


def test_the_ami_user_may_use_astdb_but_not_place_calls_or_run_commands(public_sip):
    s = public_sip.settings
    ami = Ami(public_sip.ports.host, public_sip.ports.ami)
    try:
        response, _ = ami.action(
            "Login", Username=s.ami_username, Secret=s.ami_secret.get_secret_value(), Events="off"
        )
        assert response["Response"] == "Success", response
        response, _ = ami.action("DBPut", Family="centrex_probe", Key="k", Val="v")
        assert response["Response"] == "Success", response
        response, _ = ami.action("DBGetTree", Family="centrex_probe")
        assert response["Response"] == "Success", response
        for forbidden, fields in (
            ("Originate", {"Channel": "Local/1@default", "Application": "Wait", "Data": "1"}),
            ("Command", {"Command": "core show version"}),
            ("UpdateConfig", {"SrcFilename": "pjsip.conf", "DstFilename": "pjsip.conf"}),
        ):  # fmt: skip
            response, _ = ami.action(forbidden, **fields)
            assert response["Response"] == "Error", (forbidden, response)
            assert "Permission denied" in response.get("Message", ""), (forbidden, response)
    finally:
        ami.close()


def test_each_process_has_its_own_ari_user_with_only_what_it_needs(public_sip):
    """API and daemon: read-write users of their own; the CDR shipper, which only asks when
    Asterisk started: read-only. Each password opens its own user only."""
    s = public_sip.settings
    url = public_sip.ari_url
    users = {role: s.ari_user(role) for role in ("api", "control", "cdr")}
    assert len({name for name, _ in users.values()}) == 3
    for role, (name, password) in users.items():
        assert httpx.get(f"{url}/asterisk/info", auth=(name, password)).status_code == 200, role
        # A write each user may or may not make; a bridge is harmless and removed at once.
        created = httpx.post(f"{url}/bridges", auth=(name, password), params={"type": "mixing"})
        if role == "cdr":
            assert created.status_code == 403, created.text
        else:
            assert created.status_code == 200, (role, created.text)
            httpx.delete(f"{url}/bridges/{created.json()['id']}", auth=(name, password))
    # The daemon's password is not the API's user's, nor the other way round.
    api_name, api_password = users["api"]
    control_name, control_password = users["control"]
    assert httpx.get(f"{url}/asterisk/info", auth=(api_name, control_password)).status_code == 401
    assert httpx.get(f"{url}/asterisk/info", auth=(control_name, api_password)).status_code == 401


def test_only_the_api_has_an_ami_user(public_sip):
    """The daemon and the CDR shipper use no AMI: their names and passwords open nothing."""
    s = public_sip.settings
    for role in ("control", "cdr"):
        name, password = s.ari_user(role)
        ami = Ami(public_sip.ports.host, public_sip.ports.ami)
        try:
            response, _ = ami.action("Login", Username=name, Secret=password, Events="off")
        finally:
            ami.close()
        assert response["Response"] == "Error", (role, response)


def _run(command: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CENTREX_")}
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "centrex", *command],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**clean, "CENTREX_VAR_DIR": str(tmp_path), **env},
    )  # fmt: skip


GOOD = {
    "CENTREX_API_TOKEN": "a-token-of-the-operator",
    "CENTREX_AMI_SECRET": "an-ami-secret-of-the-operator",
    "CENTREX_ARI_PASSWORD": "an-ari-password-of-the-operator",
    "CENTREX_ARI_CONTROL_PASSWORD": "an-ari-password-of-the-daemon",
    "CENTREX_ARI_CDR_PASSWORD": "an-ari-password-of-the-cdr-shipper",
    "CENTREX_ASTERISK_DB_PASSWORD": "a-database-password-of-asterisk",
}


PLACEHOLDERS = {
    "CENTREX_API_TOKEN": "",  # shipped empty
    "CENTREX_AMI_SECRET": "centrex-ami-change-me",
    "CENTREX_ARI_PASSWORD": "centrex-ari-change-me",
    "CENTREX_ARI_CONTROL_PASSWORD": "centrex-ari-control-change-me",
    "CENTREX_ARI_CDR_PASSWORD": "CHANGE-ME",  # deploy/systemd/centrex.env.example's
    "CENTREX_ASTERISK_DB_PASSWORD": "centrex-asterisk-db-change-me",
}
# Each command and the secrets it uses (centrex.config.SECRETS_OF): `sandbox up` writes every
# Asterisk user's into Asterisk's configuration.
USES = {
    "api": ["CENTREX_API_TOKEN", "CENTREX_AMI_SECRET", "CENTREX_ARI_PASSWORD"],
    "control": ["CENTREX_ARI_CONTROL_PASSWORD"],
    "cdr": ["CENTREX_ARI_CDR_PASSWORD"],
    "sandbox up": [v for v in PLACEHOLDERS if v != "CENTREX_API_TOKEN"],
}
CASES = [
    (command, variable, value)
    for command, variables in USES.items()
    for variable in variables
    for value in (PLACEHOLDERS[variable], "")
]


@pytest.mark.parametrize(("command", "variable", "value"), CASES)
def test_no_command_starts_with_a_default_or_empty_secret(tmp_path, command, variable, value):
    result = _run(command.split(), tmp_path, **{**GOOD, variable: value})
    assert result.returncode == 2, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("centrex: ") and variable in line, result.stderr
    assert "Traceback" not in result.stderr


def test_a_process_needs_only_its_own_secrets(tmp_path):
    """The daemon given only its ARI password (a unit of its own, deploy/systemd/README.md)
    passes the secrets check: it stops on what it really lacks here, a database, in one line."""
    only_its_own = {"CENTREX_ARI_CONTROL_PASSWORD": GOOD["CENTREX_ARI_CONTROL_PASSWORD"]}
    result = _run(["control"], tmp_path, **only_its_own)
    assert result.returncode == 2, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("centrex: DATABASE_URL is not set"), result.stderr


def test_ami_and_ari_off_loopback_are_warned_about(tmp_path):
    result = _run(
        ["sandbox", "status"], tmp_path, **GOOD, CENTREX_ASTERISK_HOST="127.0.0.1",
    )  # fmt: skip
    assert "not on loopback" not in result.stderr, result.stderr
    result = _run(["sandbox", "status"], tmp_path, **GOOD, CENTREX_ASTERISK_HOST="0.0.0.0")
    assert "AMI and ARI listen on 0.0.0.0, not on loopback" in result.stderr, result.stderr


def test_ari_refuses_a_wrong_password_on_loopback_too(public_sip):
    response = httpx.get(f"{public_sip.ari_url}/asterisk/info", auth=("centrex", "wrong"))
    assert response.status_code == 401
