"""The certificate Asterisk presents on SIP over TLS.

The operator's own (``CENTREX_SIP_TLS_CERT_FILE`` / ``_KEY_FILE``) is checked when the settings
are read, so a wrong path or a key of another certificate stops every command with one line
instead of an Asterisk whose TLS transport silently failed to start. Without one, the sandbox
generates a self-signed certificate (:func:`generate_self_signed`).

Errors are ``ValueError`` with a message meant for the operator: pydantic reports them against
the setting that names the file, and the command line shows that file's path after them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SELF_SIGNED_DAYS = 3650


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (the server's own; its chain may follow)."""
    data = _read(path)
    try:
        certificate = x509.load_pem_x509_certificates(data)[0]
    except (ValueError, IndexError):
        raise ValueError("holds no PEM certificate") from None
    now = dt.datetime.now(dt.UTC)
    if certificate.not_valid_after_utc < now:
        # Phones would refuse it anyway; better said now than as failed handshakes.
        raise ValueError(f"expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    if certificate.not_valid_before_utc > now:
        raise ValueError(f"not valid before {certificate.not_valid_before_utc}")
    return certificate


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key_matches(cert_path: Path, key_path: Path) -> None:
    """The key is readable, unencrypted (Asterisk reads it unattended) and the certificate's."""
    data = _read(key_path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError("is encrypted; Asterisk needs it unencrypted") from None
    except ValueError:
        raise ValueError("holds no PEM private key") from None
    if _public_der(key.public_key()) != _public_der(load_certificate(cert_path).public_key()):
        raise ValueError(f"is not the key of the certificate in {cert_path}")


def is_usable_pair(cert_path: Path, key_path: Path) -> bool:
    try:
        check_key_matches(cert_path, key_path)
    except ValueError:
        return False
    return True


def generate_self_signed(cert_path: Path, key_path: Path, host: str) -> None:
    """A self-signed certificate for *host* (an IP address or a name), key readable by its
    owner only. Phones must be told to accept it (or to trust this very certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write_private(key_path, key_pem)
    write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o640)


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write *data* whole or not at all, never readable by others even for a moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)  # the umask may have taken bits off
    os.replace(tmp, path)
