"""The SIP/TLS settings are checked when read: a wrong certificate stops everything at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from centrex.config import Settings
from centrex.tls import generate_self_signed

pytestmark = pytest.mark.unit


def settings(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)


def error_of(**fields: object) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        settings(**fields)
    (error,) = caught.value.errors()
    return str(error["loc"][0]), error["msg"]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(cert, key, "127.0.0.1")
    return cert, key


def test_the_tls_port_is_the_sip_port_plus_one_unless_set():
    assert settings().tls_port == 5061
    assert settings(sip_port=25060).tls_port == 25061
    assert settings(sip_port=25060, sip_tls_port=6000).tls_port == 6000


def test_a_tls_port_taken_by_another_listener_is_refused():
    assert error_of(sip_port=5037)[0] == "sip_tls_port"  # 5038, the AMI port
    assert error_of(sip_tls_port=8088)[0] == "sip_tls_port"


def test_a_good_pair_is_taken(pair):
    cert, key = pair
    assert settings(sip_tls_cert_file=cert, sip_tls_key_file=key).sip_tls_cert_file == cert


def test_a_missing_certificate_is_named(pair, tmp_path):
    _, key = pair
    field, msg = error_of(sip_tls_cert_file=tmp_path / "nope.pem", sip_tls_key_file=key)
    assert field == "sip_tls_cert_file" and "cannot read" in msg


def test_the_key_of_another_certificate_is_refused(pair, tmp_path):
    cert, _ = pair
    generate_self_signed(tmp_path / "other.pem", tmp_path / "other-key.pem", "127.0.0.1")
    field, msg = error_of(sip_tls_cert_file=cert, sip_tls_key_file=tmp_path / "other-key.pem")
    assert field == "sip_tls_key_file" and f"not the key of the certificate in {cert}" in msg


def test_one_without_the_other_is_refused(pair):
    cert, key = pair
    assert error_of(sip_tls_cert_file=cert)[1].endswith("set both or neither")
    assert error_of(sip_tls_key_file=key)[1].endswith("set both or neither")


def test_an_encrypted_key_is_refused(pair, tmp_path):
    cert, key = pair
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert "encrypted" in error_of(sip_tls_cert_file=cert, sip_tls_key_file=locked)[1]


def test_an_expired_certificate_is_refused(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(long_ago).not_valid_after(long_ago + dt.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "old.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    field, msg = error_of(sip_tls_cert_file=tmp_path / "old.pem", sip_tls_key_file=tmp_path)
    assert field == "sip_tls_cert_file" and "expired on 2020-03-31" in msg


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "127.0.0.1"),  # everything on loopback: the sandbox
        ({"sip_bind": "203.0.113.5"}, "203.0.113.5"),  # phones reach SIP there: RTP too
        ({"sip_bind": "0.0.0.0"}, "127.0.0.1"),  # no one address: CENTREX_MEDIA_ADDRESS
        ({"sip_bind": "0.0.0.0", "media_address": "203.0.113.5"}, "203.0.113.5"),
    ],
)
def test_rtp_binds_where_phones_reach_sip(fields, expected):
    """Before, RTP bound to CENTREX_ASTERISK_HOST (loopback) whatever SIP's bind: phones on a
    public SIP address were given a loopback address for their audio."""
    assert Settings(_env_file=None, **fields).rtp_address == expected
