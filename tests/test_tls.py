"""Issue 12: SIP over TLS with the operator's certificate, and SRTP (SDES) per line.

Debian's sipp has no TLS, so the TLS phone is tests/sip_tls_client.py (Python's ssl, the real
protocol); the called line is a sipp UAS over UDP, plain RTP: Asterisk bridges the two.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from helpers import ari_object, put_ari_object
from pylibsrtp import Policy, Session
from sip_agent import free_udp_port
from sip_tls_client import SipTlsClient, parse_sdp, sdp_offer

from centrex.config import Settings
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.tls import generate_self_signed

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NOT_ACCEPTABLE_HERE = 488


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "tls"}).json()


@pytest.fixture
def tls_phone(settings: Settings) -> Iterator:
    """A line's device on SIP/TLS, trusting only the certificate the operator configured."""
    phones: list[SipTlsClient] = []

    def connect(line: dict) -> SipTlsClient:
        assert settings.sip_tls_cert_file is not None
        phone = SipTlsClient(
            settings.asterisk_host,
            settings.tls_port,
            line["sip_username"],
            line["sip_password"],
            trust=settings.sip_tls_cert_file,
        )
        phones.append(phone)
        return phone

    yield connect
    for phone in phones:
        phone.close()


@pytest.fixture
def rtp_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", free_udp_port()))
    yield sock
    sock.close()


def registered_over_tls(asterisk: AsteriskSandbox, username: str) -> bool:
    """The line's contact, as Asterisk's registrar stored it, is reached over TLS."""
    contacts = asterisk.cli("database show registrar/contact")
    return any(
        # Asterisk rewrites the contact to the connection it came on (NAT: docs/sip-edge.md),
        # naming the transport in its own case.
        f"/{username};@" in ln and f"sip:{username}@" in ln and "transport=tls" in ln.lower()
        for ln in contacts.splitlines()
    )


def test_a_line_registers_over_tls_and_asterisk_presents_the_configured_certificate(
    make_line, tls_phone, settings, asterisk
):
    line, _ = make_line()
    assert line["sip_tls_server"] == f"{settings.asterisk_host}:{settings.tls_port}"
    phone = tls_phone(line)
    configured = x509.load_pem_x509_certificate(settings.sip_tls_cert_file.read_bytes())
    assert phone.peer_certificate == configured.public_bytes(Encoding.DER)
    response = phone.register()
    assert response.status == 200, response
    assert registered_over_tls(asterisk, line["sip_username"])


def srtp_round_trip(phone_key: bytes, media, sock: socket.socket, count: int = 20) -> list[bytes]:
    """Send *count* SRTP packets to Asterisk's media port and return the payloads of the SRTP
    packets that come back (the far end echoes what Asterisk forwards it), decrypted with the
    key Asterisk answered with: SRTP both ways, through Asterisk, bridged to plain RTP."""
    outbound = Session(Policy(key=phone_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    inbound = Session(Policy(key=media.crypto_key, ssrc_type=Policy.SSRC_ANY_INBOUND))
    ssrc = int.from_bytes(os.urandom(4), "big")
    sent, back = [], []
    sock.settimeout(0.02)
    deadline = time.monotonic() + 10
    seq = 0
    while time.monotonic() < deadline and len(back) < count // 2:
        if seq < count:
            payload = bytes([0xD5]) * 140 + seq.to_bytes(20, "big")  # 20 ms of A-law, numbered
            header = bytes([0x80, 8]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
            sock.sendto(
                outbound.protect(header + ssrc.to_bytes(4, "big") + payload),
                (media.address, media.port),
            )
            sent.append(payload)
            seq += 1
        try:
            packet, _ = sock.recvfrom(2048)
        except TimeoutError:
            continue
        back.append(inbound.unprotect(packet)[12:])  # raises if not SRTP of Asterisk's key
    return [p for p in back if p in sent]


@pytest.mark.parametrize("mode", ["sdes_optional", "sdes_required"])
def test_a_tls_call_negotiates_srtp_and_srtp_flows_through_asterisk(
    mode, make_line, tls_phone, rtp_socket, control_service
):
    caller, _ = make_line(media_encryption=mode)
    _, bob = make_line()  # plain RTP, over UDP
    port = free_udp_port()
    bob.register(port).expect_success()  # from the port it answers on (docs/sip-edge.md)
    device = bob.answer(port, ring_ms=100, rtp_echo=True)
    phone = tls_phone(caller)
    assert phone.register().status == 200
    key = os.urandom(30)
    call = phone.invite(bob.username, sdp_offer(rtp_socket.getsockname()[1], srtp_key=key))
    assert call.final.status == 200, call.final
    assert 100 in call.codes and 180 in call.codes, call.codes
    answer = parse_sdp(call.final.body)
    assert answer.profile == "RTP/SAVP", call.final.body
    assert answer.crypto_key is not None and len(answer.crypto_key) == 30, call.final.body
    phone.ack(call)
    echoed = srtp_round_trip(key, answer, rtp_socket)
    assert echoed, "no SRTP of ours came back through Asterisk and the plain-RTP far end"
    assert phone.bye(call).status == 200
    device.expect_success()


def test_a_plain_rtp_offer_on_a_line_requiring_srtp_is_refused(
    make_line, tls_phone, rtp_socket, control_service
):
    caller, _ = make_line(media_encryption="sdes_required")
    callee, _ = make_line()
    phone = tls_phone(caller)
    assert phone.register().status == 200
    call = phone.invite(
        callee["sip_username"], sdp_offer(rtp_socket.getsockname()[1], srtp_key=None)
    )
    assert call.final.status == NOT_ACCEPTABLE_HERE, call.final


def test_a_line_with_optional_srtp_takes_a_plain_rtp_offer(
    make_line, tls_phone, rtp_socket, control_service
):
    caller, _ = make_line(media_encryption="sdes_optional")
    _, bob = make_line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, ring_ms=100)
    phone = tls_phone(caller)
    assert phone.register().status == 200
    call = phone.invite(bob.username, sdp_offer(rtp_socket.getsockname()[1], srtp_key=None))
    assert call.final.status == 200, call.final
    assert parse_sdp(call.final.body).profile == "RTP/AVP", call.final.body
    phone.ack(call)
    assert phone.bye(call).status == 200
    device.expect_success()


def test_media_encryption_reaches_asterisk_at_once_and_cannot_drift(
    api, make_line, settings, wait_until
):
    line, alice = make_line()
    assert line["media_encryption"] == "none"
    assert ari_object(settings, "endpoint", alice.username)["media_encryption"] == "no"
    patched = api.patch(f"/v1/lines/{line['id']}", json={"media_encryption": "sdes_required"})
    assert patched.status_code == 200 and patched.json()["media_encryption"] == "sdes_required"
    endpoint = ari_object(settings, "endpoint", alice.username)
    assert (endpoint["media_encryption"], endpoint["media_encryption_optimistic"]) == (
        "sdes",
        "false",
    )
    # Not to be changed behind centrex's back: Asterisk reads it from the database, which it
    # cannot write (docs/provisioning-realtime.md).
    with pytest.raises(httpx.HTTPStatusError):
        put_ari_object(settings, "endpoint", alice.username, {"media_encryption": "no"})
    assert ari_object(settings, "endpoint", alice.username)["media_encryption"] == "sdes"


def test_a_bad_certificate_stops_the_commands_with_one_line(tmp_path: Path, settings: Settings):
    """Nothing starts: not Asterisk, not PostgreSQL, not half a platform."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(cert, key, "127.0.0.1")
    other_cert, other_key = tmp_path / "other-cert.pem", tmp_path / "other-key.pem"
    generate_self_signed(other_cert, other_key, "127.0.0.1")
    cases = {
        "missing": (
            {"CERT": str(tmp_path / "nope.pem"), "KEY": str(key)},
            "CENTREX_SIP_TLS_CERT_FILE",
            "cannot read",
        ),
        "mismatched": (
            {"CERT": str(cert), "KEY": str(other_key)},
            "CENTREX_SIP_TLS_KEY_FILE",
            "is not the key of the certificate",
        ),
        "not a key": (
            {"CERT": str(cert), "KEY": str(cert)},
            "CENTREX_SIP_TLS_KEY_FILE",
            "holds no PEM private key",
        ),
    }
    name = f"badcert-{os.getpid()}"
    instance = AsteriskSandbox(settings.model_copy(update={"asterisk_instance": name}))
    for case, (files, variable, reason) in cases.items():
        for command in (["sandbox", "up"], ["up"]):
            workdir = tmp_path / f"{case}-{'-'.join(command)}".replace(" ", "-")
            workdir.mkdir()
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("CENTREX_") and k != "DATABASE_URL"
            }
            env.update(
                {
                    "PYTHONPATH": str(REPO),
                    "CENTREX_VAR_DIR": str(workdir / "var"),
                    "CENTREX_ASTERISK_INSTANCE": name,
                    "CENTREX_SIP_PORT": str(settings.sip_port),
                    "CENTREX_SIP_TLS_CERT_FILE": files["CERT"],
                    "CENTREX_SIP_TLS_KEY_FILE": files["KEY"],
                }
            )
            proc = subprocess.run(
                [sys.executable, "-m", "centrex", *command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 2, (case, command, proc.stdout, proc.stderr)
            bad = [ln for ln in proc.stderr.splitlines() if ln.startswith("  ")]
            assert len(bad) == 1, (case, command, proc.stderr)
            assert bad[0].strip().startswith(variable) and reason in bad[0], (case, bad)
            var = workdir / "var"
            left = sorted(p.name for p in var.iterdir()) if var.exists() else []
            assert left in ([], ["centrex.env"]), (case, command, left)  # `up`'s secrets only
            assert not instance.instance_dir.exists(), (case, command)
