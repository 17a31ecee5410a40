"""Internet-facing hardening of a deployed host, on every Debian release: SMTP smuggling is closed, and
the ports where clients log in offer only the cipher policy's suites, in the server's order.

Each check is shown to be able to fail: smuggling is reproduced on the same host with Postfix's old
setting put back by hand (and the re-deploy closes it again), and the suites refused on the login ports
are accepted on port 25, whose opportunistic TLS keeps Postfix's broader defaults on purpose.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from e2e_support import BANTIME, CONNECTION_LIMIT, QUOTA_BOX, Deployment, resolving

from pyinfra_mailserver.audit import tlsprobe
from pyinfra_mailserver.lab.pytest_plugin import TEST_RELEASES
from pyinfra_mailserver.manifest import Account, Port
from pyinfra_mailserver.services.tls.render import LOGIN_CIPHERS

pytestmark = pytest.mark.lab

RECIPIENT = "alice@example.net"  # a mailbox of the virtual example data
# TLS 1.2 suites outside the policy that Postfix's defaults would take: CBC with SHA-1
CBC_SHA1 = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
ANONYMOUS = "aNULL:@SECLEVEL=0"


def deployed(deployments: object, variant: str, release: str) -> Deployment:
    d = deployments(variant, release)  # type: ignore[operator]
    if not d.first["success"]:
        pytest.fail(f"first deploy failed: {d.first['_report']['errors']}\n{d.first['_stderr'][-3000:]}")
    return d


@pytest.fixture(scope="module", params=TEST_RELEASES)
def dep(request: pytest.FixtureRequest, deployments: object) -> Deployment:
    return deployed(deployments, "virtual", request.param)


VARIANTS = [(v, r) for r in TEST_RELEASES for v in ("virtual", "saslauthd")]


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{v}-{r}" for v, r in VARIANTS])
def each(request: pytest.FixtureRequest, deployments: object) -> Deployment:
    """The deployed host of each variant (system users with saslauthd, virtual mailboxes with Dovecot)."""
    return deployed(deployments, *request.param)


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
            # an outside sender: a local one is refused to a client that did not log in anyway
            # (smtpd.reject_outside_local_senders), which would hide what smuggling lets through
            f"MAIL FROM:<ceo@partner.test>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n"
            f"From: ceo@partner.test\r\nSubject: {second}\r\n\r\n{second}\r\n"
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

    # both as Postfix had them before 3.9, and no reject_unauth_pipelining at DATA (which refuses the
    # smuggled DATA sent ahead of the first message's answer): two messages, the second from a sender
    # nobody checked
    revert(
        dep, "smtpd_forbid_bare_newline=no", "smtpd_forbid_unauth_pipelining=no", "smtpd_data_restrictions="
    )
    first, second, replies = smuggle(dep)
    assert sum("queued" in r for r in replies) == 2, replies
    [smuggled] = delivered(dep, second)
    assert smuggled not in delivered(dep, first), "the second message arrived on its own"

    # the re-deploy closes it again
    again = dep.deploy()
    assert again["success"] and "postfix" in again["services_reloaded"], again["_report"]["errors"]
    assert dep.host.check("postconf -h smtpd_forbid_bare_newline").strip() == "normalize"


# -- who may send as whom ---------------------------------------------------------------------------------

OUTSIDE_SENDER = "e2e@sender.test"


def own_address(dep: Deployment, a: Account) -> str:
    return a.login if "@" in a.login else f"{a.login}@{dep.fqdn}"


def two_accounts(dep: Deployment) -> tuple[Account, Account]:
    first, second, *_ = [a for a in dep.manifest.accounts if not a.probe]
    return first, second


def answer(s: smtplib.SMTP, sender: str, rcpt: str) -> tuple[int, str]:
    """The reply to RCPT after MAIL FROM:<sender> (sender checks are answered there), then RSET: these
    probes send no message."""
    code, msg = s.mail(sender)
    if code == 250:
        code, msg = s.rcpt(rcpt)
    s.rset()
    return code, msg.decode(errors="replace")


def session(dep: Deployment, port: int, helo: str = "client.test") -> smtplib.SMTP:
    s = smtplib.SMTP(dep.fqdn, port, timeout=30, local_hostname=helo)
    s.starttls(context=dep.tls())
    s.ehlo()
    return s


def test_a_login_sends_only_as_its_own_addresses(each: Deployment) -> None:
    """Reproduced: alice authenticated, then sent as another local user and as an outside domain."""
    a, other = two_accounts(each)
    rcpt = own_address(each, other)
    with resolving(each.fqdn, each.host.ip), session(each, 587) as s:
        s.login(a.login, each.password(a.secret))
        assert answer(s, own_address(each, a), rcpt)[0] == 250
        for spoofed in (own_address(each, other), "ceo@partner.test"):
            code, msg = answer(s, spoofed, rcpt)
            assert code == 553 and "not owned by user" in msg, (spoofed, code, msg)


def test_send_as_lets_a_login_use_a_shared_address(dep: Deployment) -> None:
    """alice's `send_as` lists team@example.net: a message from it is delivered; bob may not use it."""
    alice = next(a for a in dep.manifest.accounts if a.login == RECIPIENT)
    bob = next(a for a in dep.manifest.accounts if a.login == "bob@example.net")
    tok = f"send-as-{uuid.uuid4().hex[:12]}"
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "team@example.net", RECIPIENT, tok
    m.set_content(tok)
    with resolving(dep.fqdn, dep.host.ip):
        with session(dep, 587) as s:
            s.login(bob.login, dep.password(bob.secret))
            assert answer(s, "team@example.net", RECIPIENT)[0] == 553
        with session(dep, 587) as s:
            s.login(alice.login, dep.password(alice.secret))
            assert s.send_message(m, from_addr="team@example.net", to_addrs=[RECIPIENT]) == {}
    delivered(dep, tok)


def test_a_local_sender_needs_a_login(each: Deployment) -> None:
    """Reproduced: on 25, without AUTH, mail claiming a local user's address was accepted."""
    a, _ = two_accounts(each)
    rcpt = own_address(each, a)
    with resolving(each.fqdn, each.host.ip), session(each, 25) as s:
        code, msg = answer(s, own_address(each, a), rcpt)
        assert code == 554 and "log in to send" in msg, (code, msg)
        assert answer(s, OUTSIDE_SENDER, rcpt)[0] == 250  # the same RCPT from an outside sender


@pytest.mark.parametrize("helo", ["!!bad!!", "1.2.3.4", "localhost"])
def test_a_helo_name_that_is_no_fqdn_is_refused(each: Deployment, helo: str) -> None:
    """Reproduced: `EHLO !!bad!!` and `EHLO 1.2.3.4` were accepted; an FQDN or [address] still is."""
    a, _ = two_accounts(each)
    rcpt = own_address(each, a)
    with resolving(each.fqdn, each.host.ip):
        with session(each, 25, helo=helo) as s:
            code, msg = answer(s, OUTSIDE_SENDER, rcpt)
            assert 500 <= code < 600 and "Helo command rejected" in msg, (helo, code, msg)
        for good in ("client.test", "[192.0.2.1]"):
            with session(each, 25, helo=good) as s:
                assert answer(s, OUTSIDE_SENDER, rcpt)[0] == 250, good


def test_every_domain_answers_postmaster_and_abuse(each: Deployment) -> None:
    """Reproduced: abuse@ (RFC 2142) was refused with 550 on the virtual domains."""
    domains = [d for d in each.manifest.domains if "." in d]  # not localhost: no FQDN, refused as such
    assert domains, each.manifest.domains
    with resolving(each.fqdn, each.host.ip), session(each, 25) as s:
        s.mail(OUTSIDE_SENDER)
        answers = {f"{r}@{d}": s.rcpt(f"{r}@{d}")[0] for d in domains for r in ("postmaster", "abuse")}
    assert set(answers.values()) == {250}, answers


# -- no backscatter -----------------------------------------------------------------------------------------


def test_over_quota_mail_is_refused_at_rcpt(dep: Deployment) -> None:
    """Reproduced: a 1.5 MB message to a mailbox with a 1 MB quota was accepted with 250, then LMTP said
    552 and Postfix bounced it to the outside sender. Now Dovecot's quota-status refuses it at RCPT."""
    since = int(dep.host.check("date +%s"))
    tok = f"quota-{uuid.uuid4().hex[:12]}"
    m = EmailMessage()
    sender = f"{tok}@sender.test"  # this test's own: what it finds in the queue and the log is its own
    m["From"], m["To"], m["Subject"] = sender, QUOTA_BOX, tok
    m.set_content(f"{tok}\n" + ("y" * 76 + "\n") * 20000)  # ~1.5 MB
    size = len(m.as_bytes())
    with resolving(dep.fqdn, dep.host.ip), session(dep, 25) as s:
        assert s.has_extn("size")
        assert s.mail(sender, [f"SIZE={size}"])[0] == 250
        code, msg = s.rcpt(QUOTA_BOX)
        assert code == 552 and b"5.2.2" in msg, (code, msg)
        assert s.rcpt(RECIPIENT)[0] == 250  # a mailbox with room takes the same message
        s.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            s.send_message(m, to_addrs=[QUOTA_BOX])  # smtplib announces SIZE= itself
        assert refused.value.recipients[QUOTA_BOX][0] == 552
    # nothing was queued (qmgr logs from=<...> for every message it takes), so nothing can bounce to the
    # sender, which may be forged
    assert sender not in dep.host.check("postqueue -j")
    log = dep.host.run(f"journalctl -q --no-pager --since @{since} | grep -F 'from=<{sender}>, size='").stdout
    assert log == "", log


# -- what port 25 gives a client it does not know ------------------------------------------------------------


def test_a_client_that_talks_before_the_greeting_is_refused(dep: Deployment, deployments: object) -> None:
    """postscreen: a zombie that sends its commands before the 220 gets its RCPT refused (550 5.5.1),
    logged as PREGREET. The client is the other lab host of the release (postscreen remembers the
    controller, which passed its test in earlier sessions, and would not test it again)."""
    client = deployed(deployments, "saslauthd", dep.release)
    ip = dep.host.ip
    out = client.host.run(
        "timeout 60 bash -c 'exec 3<>/dev/tcp/" + ip + "/25; "
        'printf "EHLO zombie.test\\r\\nMAIL FROM:<z@zombie.test>\\r\\nRCPT TO:<' + RECIPIENT + ">\\r\\n"
        "QUIT\\r\\n\" >&3; cat <&3'"
    ).stdout
    assert "550 5.5.1" in out and "221" in out, out
    log = dep.wait_on_host(f"journalctl -q --no-pager | grep -F 'PREGREET' | grep -F '[{client.host.ip}]'")
    assert client.host.ip in log, log


def test_etrn_is_refused_outside_mynetworks(each: Deployment) -> None:
    """Reproduced: ETRN (flush the queue for a domain) was open to anyone."""
    with resolving(each.fqdn, each.host.ip), session(each, 25) as s:
        code, msg = s.docmd("ETRN", each.fqdn)
    assert code == 554 and b"Access denied" in msg, (code, msg)


# -- brute force ------------------------------------------------------------------------------------------

GUESS = """
import imaplib, smtplib, ssl, sys

fqdn, ca, user, proto, tries = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)


def guess():
    if proto == "smtp":
        with smtplib.SMTP(fqdn, 587, local_hostname="guesser.test", timeout=30) as s:
            s.starttls(context=ctx)
            try:
                s.login(user, "wrong-password")
                sys.exit("a wrong password was accepted")
            except smtplib.SMTPAuthenticationError:
                pass
    else:
        m = imaplib.IMAP4_SSL(fqdn, 993, ssl_context=ctx, timeout=30)
        try:
            m.login(user, "wrong-password")
            sys.exit("a wrong password was accepted")
        except imaplib.IMAP4.error:
            pass
        finally:
            m.shutdown()


for _ in range(int(tries)):
    try:
        guess()
    except (OSError, smtplib.SMTPServerDisconnected):  # banned in the middle of the guesses
        print("cut off")
        break
print("refused")
"""
CAN_CONNECT = (
    "python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)' "
)


def until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it holds (no fixed sleep: the ban comes when fail2ban reads the journal)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.5)


@pytest.mark.parametrize("proto", ["smtp", "imap"])
def test_wrong_passwords_get_an_address_banned_and_the_ban_lifts(
    dep: Deployment, deployments: object, proto: str
) -> None:
    """From the release's other lab host: `maxretry` wrong passwords over SMTP AUTH (postfix-sasl jail)
    or IMAP (dovecot jail) ban it from the mail ports; the controller, in the ignore list, is never
    banned; after `bantime` the host gets in again."""
    client = deployed(deployments, "saslauthd", dep.release)
    user = next(a.login for a in dep.manifest.accounts if not a.probe)
    ca = "/tmp/e2e-lab-ca.pem"
    client.host.check(f"cat > {ca}", input=dep.ca_file.read_text())
    # the lab has no DNS: the client reaches the host by the name its certificate has
    client.host.check(f"grep -q ' {dep.fqdn}$' /etc/hosts || echo '{dep.host.ip} {dep.fqdn}' >> /etc/hosts")

    def client_gets_in() -> bool:
        return client.host.run(CAN_CONNECT + f"{dep.host.ip} 587").returncode == 0

    until("the client reaches the host before guessing", client_gets_in, 30)
    try:
        out = client.host.run(f"python3 - {dep.fqdn} {ca} {user} {proto} 3", input=GUESS)
        assert out.returncode == 0 and "refused" in out.stdout, out
        until(f"the client is banned after 3 wrong {proto} passwords", lambda: not client_gets_in(), 60)
        assert client.host.run(CAN_CONNECT + f"{dep.host.ip} 993").returncode != 0  # every mail port
        jail = "postfix-sasl" if proto == "smtp" else "dovecot"
        assert client.host.ip in dep.host.check(f"fail2ban-client status {jail}")
        # the controller, which tried wrong passwords too in other tests, still gets in
        with resolving(dep.fqdn, dep.host.ip), session(dep, 587) as s:
            assert s.noop()[0] == 250
        until(f"the ban lifts after {BANTIME} s", client_gets_in, BANTIME + 60)
    finally:
        dep.host.run("fail2ban-client unban --all")


# -- rate limits (last in the module: the client host stays over its limit for up to a minute) -------------

FLOOD = """
import socket, sys

ip, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    with socket.create_connection((ip, 587), timeout=30) as s:
        print(s.makefile("rb").readline().decode().strip())
"""


def test_a_client_over_its_connection_rate_is_refused_and_the_controller_is_not(
    dep: Deployment, deployments: object
) -> None:
    """Reproduced: `smtpd_client_*_rate_limit = 0`. The other lab host opens more connections in a minute
    than the limit: smtpd greets the extra ones with 421; the controller, exempt, still gets 220."""
    client = deployed(deployments, "saslauthd", dep.release)
    out = client.host.run(f"python3 - {dep.host.ip} {CONNECTION_LIMIT + 3}", input=FLOOD)
    greetings = out.stdout.splitlines()
    assert out.returncode == 0 and len(greetings) == CONNECTION_LIMIT + 3, out
    refused = [g for g in greetings if g.startswith("421")]
    assert refused and "too many connections" in refused[0], greetings
    assert greetings[0].startswith("220"), greetings  # under the limit, a client is served
    with resolving(dep.fqdn, dep.host.ip), session(dep, 587) as s:
        assert s.noop()[0] == 250
