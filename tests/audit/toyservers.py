"""Tiny SMTP / IMAP / POP3 servers on 127.0.0.1 whose behaviour each test sets, good or bad on purpose."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Behaviour:
    """What the toy server does; defaults are a well-configured server."""

    tls: str = "starttls"  # starttls | implicit | none
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    auth_before_tls: bool = False
    auth_after_tls: bool = True
    relay_open: bool = False
    relay_code: int = 554
    vrfy_code: int = 502
    require_auth_for_local: bool = True
    login_disabled_plain: bool = True  # IMAP LOGINDISABLED / POP3 USER refused before TLS
    users: dict[str, str] = field(default_factory=lambda: {"probe@example.org": "s3cret"})
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
    sni: list[str | None] = field(default_factory=list)  # server names clients asked for
    connections: int = 0  # connections accepted (what each costs a real host: a login process, an smtpd)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.behaviour.connections += 1
        self.secure = False
        self.authed = False
        if self.server.behaviour.tls == "implicit":
            self._upgrade()

    def _upgrade(self) -> None:
        self.connection = self.server.ssl_ctx.wrap_socket(self.request, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb", buffering=0)
        self.secure = True

    def send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def lines(self) -> Iterator[str]:
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            yield raw.decode("latin-1").rstrip("\r\n")


class SmtpHandler(_Handler):
    def handle(self) -> None:
        b = self.server.behaviour
        try:
            self.send("220 toy ESMTP")
            for line in self.lines():
                cmd = line.split(" ", 1)[0].upper()
                if cmd in ("EHLO", "HELO"):
                    feats = ["toy"]
                    if b.tls == "starttls" and not self.secure:
                        feats.append("STARTTLS")
                    if (self.secure and b.auth_after_tls) or (not self.secure and b.auth_before_tls):
                        feats.append("AUTH PLAIN LOGIN")
                    for i, f in enumerate(feats):
                        self.send(f"250{'-' if i < len(feats) - 1 else ' '}{f}")
                elif cmd == "STARTTLS":
                    self.send("220 go ahead")
                    self._upgrade()
                elif cmd == "AUTH":
                    import base64

                    parts = line.split()
                    if len(parts) == 3 and parts[1].upper() == "PLAIN":
                        _, user, pw = base64.b64decode(parts[2]).decode().split("\0")
                        if b.users.get(user) == pw:
                            self.authed = True
                            self.send("235 ok")
                            continue
                    self.send("535 5.7.8 authentication failed")
                elif cmd == "MAIL":
                    self.send("250 ok")
                elif cmd == "RCPT":
                    rcpt = line.split(":", 1)[1].strip("<> ")
                    local = rcpt.endswith("@example.org")
                    allowed = (local and not b.require_auth_for_local) or (not local and b.relay_open)
                    if self.authed or allowed:
                        self.send("250 ok")
                    elif local:
                        self.send("554 5.7.1 access denied")
                    else:
                        self.send(f"{b.relay_code} 5.7.1 Relay access denied")
                elif cmd == "VRFY":
                    self.send(f"{b.vrfy_code} VRFY answer")
                elif cmd == "RSET":
                    self.send("250 ok")
                elif cmd == "QUIT":
                    self.send("221 bye")
                    return
                else:
                    self.send("502 unknown")
        except (OSError, ssl.SSLError):
            return


class ImapHandler(_Handler):
    def handle(self) -> None:
        b = self.server.behaviour
        try:
            self.send("* OK toy IMAP ready")
            for line in self.lines():
                tag, _, rest = line.partition(" ")
                cmd = rest.split(" ", 1)[0].upper()
                if cmd == "CAPABILITY":
                    caps = ["IMAP4rev1"]
                    if not self.secure and b.tls == "starttls":
                        caps.append("STARTTLS")
                    if not self.secure and b.login_disabled_plain:
                        caps.append("LOGINDISABLED")
                    else:
                        caps.append("AUTH=PLAIN")
                    self.send("* CAPABILITY " + " ".join(caps))
                    self.send(f"{tag} OK done")
                elif cmd == "STARTTLS":
                    self.send(f"{tag} OK begin TLS")
                    self._upgrade()
                elif cmd == "LOGIN":
                    _, user, pw = rest.split(" ", 2)
                    if not self.secure and b.login_disabled_plain:
                        self.send(f"{tag} NO [PRIVACYREQUIRED] plaintext disallowed")
                    elif b.users.get(user.strip('"')) == pw.strip('"'):
                        self.send(f"{tag} OK logged in")
                    else:
                        self.send(f"{tag} NO [AUTHENTICATIONFAILED] bad")
                elif cmd == "LOGOUT":
                    self.send("* BYE")
                    self.send(f"{tag} OK bye")
                    return
                else:
                    self.send(f"{tag} BAD unknown")
        except (OSError, ssl.SSLError):
            return


class Pop3Handler(_Handler):
    def handle(self) -> None:
        b = self.server.behaviour
        user = None
        try:
            self.send("+OK toy POP3 ready")
            for line in self.lines():
                cmd, _, arg = line.partition(" ")
                cmd = cmd.upper()
                if cmd == "CAPA":
                    self.send("+OK")
                    if not self.secure and b.tls == "starttls":
                        self.send("STLS")
                    if self.secure or not b.login_disabled_plain:
                        self.send("USER")
                    self.send(".")
                elif cmd == "STLS":
                    self.send("+OK begin TLS")
                    self._upgrade()
                elif cmd == "USER":
                    if not self.secure and b.login_disabled_plain:
                        self.send("-ERR [AUTH] Plaintext authentication disallowed")
                    else:
                        user = arg
                        self.send("+OK")
                elif cmd == "PASS":
                    if user is not None and b.users.get(user) == arg:
                        self.send("+OK logged in")
                    else:
                        self.send("-ERR [AUTH] failed")
                elif cmd == "QUIT":
                    self.send("+OK bye")
                    return
                else:
                    self.send("-ERR unknown")
        except (OSError, ssl.SSLError):
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    behaviour: Behaviour
    ssl_ctx: ssl.SSLContext


HANDLERS = {"smtp": SmtpHandler, "imap": ImapHandler, "pop3": Pop3Handler}


@contextmanager
def serve(kind: str, behaviour: Behaviour, cert: str, key: str) -> Iterator[int]:
    """Run a toy `kind` server on a free loopback port for the duration of the block; yields the port."""
    srv = _Server(("127.0.0.1", 0), HANDLERS[kind])
    srv.behaviour = behaviour
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if behaviour.min_version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = behaviour.min_version
        ctx.maximum_version = behaviour.max_version
    ctx.sni_callback = lambda _sock, name, _ctx: behaviour.sni.append(name)  # type: ignore[assignment,misc]
    srv.ssl_ctx = ctx
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
