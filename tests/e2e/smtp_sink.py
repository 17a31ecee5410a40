"""A tiny SMTP sink (socketserver, optional STARTTLS) that keeps every message it is given, for tests."""

from __future__ import annotations

import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: str


@dataclass
class SmtpSink:
    """Listens on (address, port); `wait_for(token)` polls for a message containing `token`."""

    address: str
    port: int
    cert: Path | None = None
    key: Path | None = None
    messages: list[Received] = field(default_factory=list)
    # what each connection did, for the failure message of a test that waited in vain
    sessions: list[str] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SmtpSink:
        sink = self
        tls = None
        if self.cert and self.key:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(self.cert, self.key)

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def send(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                peer = f"{self.client_address[0]}:{self.client_address[1]}"
                with sink._lock:
                    sink.sessions.append(f"{time.strftime('%H:%M:%S')} {peer} connected")
                try:
                    self.converse()
                except Exception as e:
                    with sink._lock:
                        sink.sessions.append(f"{time.strftime('%H:%M:%S')} {peer} {type(e).__name__}: {e}")
                    raise

            def converse(self) -> None:
                self.send("220 sink.test ESMTP test sink")
                mail_from, rcpts = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        ext = ["250-sink.test", "250-8BITMIME"]
                        if tls is not None and not isinstance(self.request, ssl.SSLSocket):
                            ext.append("250-STARTTLS")
                        ext.append("250 SIZE 104857600")
                        for e in ext if verb == "EHLO" else ["250 sink.test"]:
                            self.send(e)
                    elif line.upper() == "STARTTLS" and tls is not None:
                        self.send("220 go ahead")
                        self.request = tls.wrap_socket(self.request, server_side=True)
                        self.rfile = self.request.makefile("rb")
                        self.wfile = self.request.makefile("wb")
                    elif verb == "MAIL":
                        mail_from, rcpts = line.split(":", 1)[1].strip(), []
                        self.send("250 ok")
                    elif verb == "RCPT":
                        rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
                        self.send("250 ok")
                    elif verb == "DATA":
                        self.send("354 end with .")
                        lines = []
                        while True:
                            chunk = self.rfile.readline().decode(errors="replace")
                            if chunk in (".\r\n", ".\n", ""):
                                break
                            lines.append(chunk[1:] if chunk.startswith("..") else chunk)
                        with sink._lock:
                            sink.messages.append(Received(mail_from, rcpts, "".join(lines)))
                        self.send("250 queued")
                    elif verb == "QUIT":
                        self.send("221 bye")
                        return
                    elif verb in ("RSET", "NOOP"):
                        self.send("250 ok")
                    else:
                        self.send("502 not implemented")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((self.address, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, token: str, timeout: float = 60) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for m in self.messages:
                    if token in m.data:
                        return m
            time.sleep(0.2)
        with self._lock:
            seen = "; ".join(self.sessions[-10:]) or "no connection"
        raise AssertionError(f"no message with {token!r} reached the sink within {timeout} s (sink: {seen})")
