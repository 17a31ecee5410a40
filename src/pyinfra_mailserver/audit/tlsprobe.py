"""TLS handshakes from the controller: per protocol version, with the STARTTLS preamble of each protocol.

Everything verifies against the CA the operator trusts (never verify=False). A version probe counts a
handshake that reached certificate verification as "negotiated": the server accepted the version even if
its certificate is then refused, which is what a version check must know.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import socket
import ssl
import warnings
from dataclasses import dataclass

from cryptography import x509

VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
LEGACY = ("TLSv1", "TLSv1.1")


# What a handshake the server will not complete raises (refused version, alert, reset, silence).
REFUSED = (TimeoutError, ssl.SSLError, ConnectionResetError, BrokenPipeError)


class ProtocolError(Exception):
    """The server did not follow the protocol far enough to start TLS (no STARTTLS, bad greeting)."""


def client_context(ca_file: str | None, version: str | None = None) -> ssl.SSLContext:
    """A verifying client context; `version` pins one protocol version (legacy ones at SECLEVEL=0).

    Hostname checking is off here and done on the parsed certificate instead, so one handshake tells
    chain, name and expiry apart.
    """
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if version is not None:
        _pin(ctx, version)
    return ctx


def _pin(ctx: ssl.SSLContext, version: str, highest: str | None = None) -> None:
    """Allow exactly `version` (up to `highest` when given); legacy ones need SECLEVEL=0 (OpenSSL 3
    refuses them even when asked)."""
    if version in LEGACY:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLSv1/1.1 are deprecated in Python: probing for them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = VERSIONS[version]
        ctx.maximum_version = VERSIONS[highest or version]


def legacy_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context that offers TLS 1.0 and 1.1 and nothing newer (SECLEVEL=0).

    One handshake with it answers both legacy checks when the server refuses it: a server that speaks
    either version must pick the highest one it supports up to the client's maximum (RFC 5246 E.1,
    RFC 8446 D.2), so a refusal means neither is accepted. Only when it is accepted does the other
    version need a handshake of its own.
    """
    ctx = client_context(ca_file)
    _pin(ctx, LEGACY[0], LEGACY[-1])
    return ctx


@functools.cache
def local_support(version: str) -> str | None:
    """None when this controller's OpenSSL can complete a `version` handshake, else why it cannot.

    Tried against itself in memory: a refused legacy probe must mean the *server* refused, so when the
    local library cannot speak the version at all, the check is skipped rather than passed.
    """
    import tempfile
    from pathlib import Path

    from pyinfra_mailserver import pki

    try:
        with tempfile.TemporaryDirectory() as tmp:
            tls = pki.ensure_server_cert(Path(tmp), "localhost", ("localhost",))
            cert, key = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
            cert.write_text(tls.cert_pem)
            key.write_text(tls.key_pem)
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.load_cert_chain(cert, key)
            client = client_context(str(tls.ca_path), version)
            _pin(server, version)
            c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
            cobj = client.wrap_bio(c_in, c_out, server_hostname="localhost")
            sobj = server.wrap_bio(s_in, s_out, server_side=True)
            done_c = done_s = False
            for _ in range(20):
                for obj, done_attr in ((cobj, "c"), (sobj, "s")):
                    if (done_attr == "c" and done_c) or (done_attr == "s" and done_s):
                        continue
                    try:
                        obj.do_handshake()
                        if done_attr == "c":
                            done_c = True
                        else:
                            done_s = True
                    except ssl.SSLWantReadError:
                        pass
                    s_in.write(c_out.read())
                    c_in.write(s_out.read())
                if done_c and done_s:
                    return None
            return f"local OpenSSL ({ssl.OPENSSL_VERSION}) did not complete a {version} handshake"
    except (ssl.SSLError, ValueError, OSError) as e:
        return f"local OpenSSL ({ssl.OPENSSL_VERSION}) cannot speak {version}: {e}"


def _readline(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ProtocolError("connection closed by the server")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line + b"\n"


def _smtp_reply(sock: socket.socket, buf: bytearray) -> tuple[int, list[str]]:
    lines = []
    while True:
        line = _readline(sock, buf).decode("latin-1").rstrip("\r\n")
        lines.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            try:
                return int(line[:3]), lines
            except ValueError as e:
                raise ProtocolError(f"not an SMTP reply: {line!r}") from e


def starttls_preamble(sock: socket.socket, protocol: str) -> None:
    """Speak the plaintext part of `protocol` up to the point where the TLS handshake starts."""
    buf = bytearray()
    if protocol in ("smtp", "submission"):
        code, _ = _smtp_reply(sock, buf)
        if code != 220:
            raise ProtocolError(f"SMTP greeting {code}")
        sock.sendall(b"EHLO [127.0.0.1]\r\n")
        code, lines = _smtp_reply(sock, buf)
        if code != 250 or not any(x.upper().startswith("STARTTLS") for x in lines):
            raise ProtocolError("STARTTLS not offered")
        sock.sendall(b"STARTTLS\r\n")
        code, _ = _smtp_reply(sock, buf)
        if code != 220:
            raise ProtocolError(f"STARTTLS answered {code}")
    elif protocol == "imap":
        if not _readline(sock, buf).startswith(b"* OK"):
            raise ProtocolError("no IMAP greeting")
        sock.sendall(b"a1 STARTTLS\r\n")
        while True:
            line = _readline(sock, buf)
            if line.startswith(b"a1 "):
                if not line.startswith(b"a1 OK"):
                    raise ProtocolError(f"STARTTLS refused: {line.decode('latin-1').strip()}")
                break
    elif protocol == "pop3":
        if not _readline(sock, buf).startswith(b"+OK"):
            raise ProtocolError("no POP3 greeting")
        sock.sendall(b"STLS\r\n")
        line = _readline(sock, buf)
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"STLS refused: {line.decode('latin-1').strip()}")
    else:
        raise ValueError(f"no STARTTLS preamble for {protocol}")
    if buf:
        raise ProtocolError("data after the STARTTLS reply (possible command injection)")


def base_protocol(protocol: str) -> str:
    """smtps -> smtp, imaps -> imap, ...: the protocol spoken inside TLS."""
    return {"smtps": "smtp", "imaps": "imap", "pop3s": "pop3"}.get(protocol, protocol)


@dataclass
class Handshake:
    """The outcome of one TLS attempt. `negotiated`: the server agreed on a protocol version."""

    negotiated: bool
    version: str | None = None
    cert_der: bytes | None = None
    verify_error: str | None = None  # chain verification failed (version was negotiated)
    error: str | None = None  # refused / failed before a version was agreed
    offered: str | None = None  # the one version the client offered (a pinned attempt); None: 1.2 and 1.3
    cipher: str | None = None  # the suite the server chose (OpenSSL's name)


def session_handshake(sock: ssl.SSLSocket, offered: str | None = None) -> Handshake:
    """What an established, verified TLS session of a protocol probe already proves (version and
    certificate), so the TLS checks of its port need not connect again for the same answer."""
    suite = sock.cipher()
    return Handshake(
        True, sock.version(), sock.getpeercert(binary_form=True), offered=offered, cipher=suite and suite[0]
    )


def handshake(
    address: str,
    port: int,
    protocol: str,
    tls: str,
    ctx: ssl.SSLContext,
    server_name: str,
    timeout: float = 10.0,
) -> Handshake:
    """Connect, do the STARTTLS preamble when `tls == "starttls"`, and attempt a handshake with `ctx`.

    Connection errors (refused, timeout) propagate as OSError: the caller decides whether an unreachable
    port is a finding.
    """
    sock = socket.create_connection((address, port), timeout=timeout)
    try:
        if tls == "starttls":
            starttls_preamble(sock, base_protocol(protocol))
        sni = None if _is_ip(server_name) else server_name
        try:
            tsock = ctx.wrap_socket(sock, server_hostname=sni)
        except ssl.SSLCertVerificationError as e:
            return Handshake(True, verify_error=e.verify_message or str(e))
        except REFUSED as e:
            return Handshake(False, error=str(e) or type(e).__name__)
        try:
            suite = tsock.cipher()
            return Handshake(
                True, tsock.version(), tsock.getpeercert(binary_form=True), cipher=suite and suite[0]
            )
        finally:
            tsock.close()
    finally:
        sock.close()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def name_matches(name: str, patterns: list[str]) -> bool:
    """RFC 6125 matching on SAN entries: exact, or a single left-most `*` label."""
    name = name.lower().rstrip(".")
    for p in (p.lower().rstrip(".") for p in patterns):
        if p == name:
            return True
        if p.startswith("*.") and "." in name:
            head, _, rest = name.partition(".")
            if rest == p[2:] and head:
                return True
    return False


def days_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.UTC)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400
