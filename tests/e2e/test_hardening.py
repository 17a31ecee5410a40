"""Internet-facing hardening of a deployed host, on every Debian release: SMTP smuggling is closed, and
the ports where clients log in offer only the cipher policy's suites, in the server's order.

Each check is shown to be able to fail: smuggling is reproduced on the same host with Postfix's old
setting put back by hand (and the re-deploy closes it again), and the suites refused on the login ports
are accepted on port 25, whose opportunistic TLS keeps Postfix's broader defaults on purpose.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Iterator

import pytest
from e2e_support import Deployment

from pyinfra_mailserver.audit import tlsprobe
from pyinfra_mailserver.lab.pytest_plugin import TEST_RELEASES
from pyinfra_mailserver.manifest import Port
from pyinfra_mailserver.services.tls.render import LOGIN_CIPHERS

pytestmark = pytest.mark.lab

RECIPIENT = "alice@example.net"  # a mailbox of the virtual example data
# TLS 1.2 suites outside the policy that Postfix's defaults would take: CBC with SHA-1
CBC_SHA1 = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
ANONYMOUS = "aNULL:@SECLEVEL=0"


@pytest.fixture(scope="module", params=TEST_RELEASES)
def dep(request: pytest.FixtureRequest, deployments: object) -> Deployment:
    d = deployments("virtual", request.param)  # type: ignore[operator]
    if not d.first["success"]:
        pytest.fail(f"first deploy failed: {d.first['_report']['errors']}\n{d.first['_stderr'][-3000:]}")
    return d


def login_ports(dep: Deployment) -> list[Port]:
    """Every TLS port of the manifest where clients log in (all but port 25 and local LMTP)."""
    return [p for p in dep.manifest.ports if p.tls != "none" and p.protocol not in ("smtp", "lmtp")]


def smtp25(dep: Deployment) -> Port:
    return next(p for p in dep.manifest.ports if p.protocol == "smtp")


def attempt(dep: Deployment, port: Port, ciphers: str, order_only: bool = False) -> tlsprobe.Handshake:
    """A TLS 1.2 handshake offering only `ciphers`, verifying the host against the lab's CA."""
    ctx = ssl.create_default_context(cafile=str(dep.ca_file))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return tlsprobe.handshake(dep.host.ip, port.port, port.protocol, port.tls, ctx, dep.fqdn)


# -- cipher policy ----------------------------------------------------------------------------------------


def test_login_ports_refuse_anonymous_suites(dep: Deployment) -> None:
    ports = login_ports(dep)
    assert {p.port for p in ports} >= {587, 465, 993}, ports
    took = {p.port: h.cipher for p in ports if (h := attempt(dep, p, ANONYMOUS)).negotiated}
    assert took == {}, f"anonymous suites accepted where passwords are sent: {took}"


def test_login_ports_refuse_cbc_sha1(dep: Deployment) -> None:
    took = {p.port: h.cipher for p in login_ports(dep) if (h := attempt(dep, p, CBC_SHA1)).negotiated}
    assert took == {}, f"CBC-SHA1 suites accepted on login ports: {took}"


def test_port_25_keeps_opportunistic_defaults(dep: Deployment) -> None:
    """The suites the login ports refuse still work on 25 (a sending MTA that only has them would
    otherwise fall back to plaintext): the probes above do see a suite that is accepted."""
    h = attempt(dep, smtp25(dep), CBC_SHA1)
    assert h.negotiated and h.cipher in CBC_SHA1.split(":"), h


def test_login_ports_choose_in_the_servers_order(dep: Deployment) -> None:
    """The client prefers the policy's suites in reverse order; the server still picks its own first."""
    ecdsa = [c for c in LOGIN_CIPHERS if c.startswith("ECDHE-ECDSA-")]  # the generated key is P-256
    offered = ":".join(reversed(ecdsa))
    chosen = {p.port: attempt(dep, p, offered).cipher for p in login_ports(dep)}
    assert chosen == {p: ecdsa[0] for p in chosen}, chosen


def test_tls_1_3_still_negotiated_on_login_ports(dep: Deployment) -> None:
    ctx = ssl.create_default_context(cafile=str(dep.ca_file))
    versions = {
        p.port: tlsprobe.handshake(dep.host.ip, p.port, p.protocol, p.tls, ctx, dep.fqdn).version
        for p in login_ports(dep)
    }
    assert set(versions.values()) == {"TLSv1.3"}, versions


# -- SMTP smuggling (CVE-2023-51764) ----------------------------------------------------------------------


class Smtp:
    """A plaintext SMTP session that sends exactly the bytes it is given (smtplib would fix line ends)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.create_connection((address, 25), timeout=30)
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise AssertionError(f"connection closed after {lines}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode("latin-1").rstrip("\r")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    def command(self, line: str) -> tuple[int, str]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def smuggle(dep: Deployment) -> tuple[str, str, list[str]]:
    """One DATA whose body holds `<LF>.<CR><LF>` and then a second envelope with another sender.

    Returns the two tokens and every reply after the DATA's body, up to the answer to a QUIT sent right
    after it: a server that takes the bare `<LF>.` as the end of the first message answers the smuggled
    MAIL, RCPT and DATA too (two "queued"); PIPELINING is offered, so the QUIT may follow unanswered.
    """
    first, second = (f"smuggle-{uuid.uuid4().hex[:12]}" for _ in range(2))
    s = Smtp(dep.host.ip)
    try:
        assert s.reply()[0] == 220
        assert s.command("EHLO client.test")[0] == 250
        assert s.command("MAIL FROM:<smuggler@sender.test>")[0] == 250
        assert s.command(f"RCPT TO:<{RECIPIENT}>")[0] == 250
        assert s.command("DATA")[0] == 354
        body = (
            f"Subject: {first}\r\n\r\n{first}\r\n"
            "\n.\r\n"
            f"MAIL FROM:<admin@example.net>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n"
            f"From: admin@example.net\r\nSubject: {second}\r\n\r\n{second}\r\n"
            "\r\n.\r\n"
            "QUIT\r\n"
        )
        s.sock.sendall(body.encode())
        replies: list[str] = []
        while not replies or not replies[-1].startswith("221"):
            try:
                replies.append(s.reply()[1])
            except AssertionError:  # the server hung up (improper pipelining)
                replies.append("(disconnected)")
                break
        return first, second, replies
    finally:
        s.close()


def mailbox(dep: Deployment) -> str:
    return str(next(a.mailbox for a in dep.manifest.accounts if a.login == RECIPIENT))


def messages_with(dep: Deployment, token: str) -> list[str]:
    """The message files (Maildir new/ and cur/, not Dovecot's index and cache) that hold `token`."""
    out = dep.host.run(f"grep -rlF {token} {mailbox(dep)}").stdout
    return sorted(f for f in out.splitlines() if "/new/" in f or "/cur/" in f)


def delivered(dep: Deployment, token: str) -> list[str]:
    """messages_with, once at least one message with `token` has arrived (polled)."""
    dep.mailbox_has(mailbox(dep), token)
    return messages_with(dep, token)


def revert(dep: Deployment, *settings: str) -> None:
    """Put main.cf settings back by hand, then restart (not reload: no smtpd process of the previous
    configuration may take the next connection)."""
    dep.host.check(f"postconf -e {' '.join(settings)} && systemctl restart postfix")
    dep.wait_on_host("ss -Hltn 'sport = :25' | grep -q LISTEN")


@pytest.fixture
def restored(dep: Deployment) -> Iterator[Deployment]:
    """The host as its data says after the test (main.cf put back by a re-deploy if a test changed it)."""
    yield dep
    r = dep.deploy()
    assert r["success"], r["_report"]["errors"]


def test_smuggling_is_refused_and_reproduced_with_the_old_setting(restored: Deployment) -> None:
    dep = restored
    assert dep.host.check("postconf -h smtpd_forbid_bare_newline").strip() == "normalize"
    first, second, replies = smuggle(dep)
    assert sum("queued" in r for r in replies) == 1, replies
    [msg] = delivered(dep, first)
    assert messages_with(dep, second) == [msg], "the smuggled text must stay inside the first message"

    # each of the two settings alone stops it: bare newlines read the old way, the smuggled commands
    # still arrive pipelined behind the end of DATA, and smtpd hangs up
    revert(dep, "smtpd_forbid_bare_newline=no")
    first, second, replies = smuggle(dep)
    assert replies[-1] == "(disconnected)" and sum("queued" in r for r in replies) <= 1, replies
    assert messages_with(dep, second) == [] or messages_with(dep, second) == messages_with(dep, first)

    # both as Postfix had them before 3.9: two messages, the second from a sender nobody checked
    revert(dep, "smtpd_forbid_bare_newline=no", "smtpd_forbid_unauth_pipelining=no")
    first, second, replies = smuggle(dep)
    assert sum("queued" in r for r in replies) == 2, replies
    [smuggled] = delivered(dep, second)
    assert smuggled not in delivered(dep, first), "the second message arrived on its own"

    # the re-deploy closes it again
    again = dep.deploy()
    assert again["success"] and "postfix" in again["services_reloaded"], again["_report"]["errors"]
    assert dep.host.check("postconf -h smtpd_forbid_bare_newline").strip() == "normalize"
