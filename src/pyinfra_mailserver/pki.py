"""A tiny local CA on the controller: one CA per secrets directory, one ECDSA P-256 server cert per host."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
# A server certificate's whole validity, backdating included: the 398-day ceiling browsers and Apple's
# clients enforce for TLS server certificates, minus a day of margin.
CERT_LIFETIME = dt.timedelta(days=397)
BACKDATE = dt.timedelta(minutes=5)  # a host whose clock is a little behind still accepts a new cert
# Renew a server certificate when it has less than this left, or when its names changed.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class ServerTls:
    """The PEM texts the deploy uploads: the CA that clients trust, the server chain and its key."""

    ca_pem: str
    cert_pem: str  # server certificate followed by the CA (a full chain, what Postfix and Dovecot serve)
    key_pem: str
    ca_path: Path  # where the CA certificate lives on the controller (tests and clients trust it)


def _private_dir(path: Path) -> Path:
    """Create a 0700 directory (and fix its mode) so nothing below it is readable by others."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _write_secret(path: Path, data: bytes) -> None:
    """Write a file 0600 from the first byte, atomically (temp file in the same dir, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure_ca(secrets_dir: Path, common_name: str = "pyinfra-mailserver local CA") -> tuple[Path, Path]:
    """The CA's (cert, key) paths, created once; later runs reuse them so clients keep trusting the CA."""
    ca_dir = _private_dir(_private_dir(secrets_dir) / "ca")
    cert_path, key_path = ca_dir / "ca.crt", ca_dir / "ca.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_secret(key_path, _key_pem(key))
    _write_secret(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def _cert_still_good(cert_path: Path, key_path: Path, ca: x509.Certificate, names: tuple[str, ...]) -> bool:
    """A server cert is reused while it matches the names, is signed by this CA, is not near expiry, and
    lives no longer than CERT_LIFETIME (one made before that limit is re-issued at the next deploy)."""
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if set(san) != set(_san(names)) or cert.issuer != ca.subject:
        return False
    if cert.not_valid_after_utc - cert.not_valid_before_utc > CERT_LIFETIME:
        return False
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _paths(secrets_dir: Path, hostname: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) of a host in the secrets directory."""
    host_dir = secrets_dir / "tls" / hostname
    return secrets_dir / "ca" / "ca.crt", host_dir / "server.crt", host_dir / "server.key"


def _material(ca_path: Path, cert_path: Path, key_path: Path) -> ServerTls:
    ca_pem = ca_path.read_text()
    return ServerTls(
        ca_pem=ca_pem, cert_pem=cert_path.read_text() + ca_pem, key_pem=key_path.read_text(), ca_path=ca_path
    )


def existing_server_cert(secrets_dir: Path, hostname: str) -> tuple[str, str, str] | None:
    """(CA, server chain, key) PEM texts as the deploy uploads them, if the controller has them; never
    made here (drift only reads)."""
    paths = _paths(secrets_dir, hostname)
    if not all(p.is_file() for p in paths):
        return None
    m = _material(*paths)
    return m.ca_pem, m.cert_pem, m.key_pem


def ensure_server_cert(secrets_dir: Path, hostname: str, names: tuple[str, ...]) -> ServerTls:
    """The server's TLS material for `hostname`, made on first use (and when names change), else reused."""
    if not names:
        names = (hostname,)
    ca_cert_path, ca_key_path = ensure_ca(secrets_dir)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    _private_dir(_private_dir(secrets_dir / "tls") / hostname)
    _, cert_path, key_path = _paths(secrets_dir, hostname)
    if not _cert_still_good(cert_path, key_path, ca_cert, names):
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now - BACKDATE + CERT_LIFETIME)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_secret(key_path, _key_pem(key))
        _write_secret(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return _material(ca_cert_path, cert_path, key_path)
