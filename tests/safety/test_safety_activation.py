"""Issue 6 (1) staged activation and (2) rollback, on the shared deployed host.

(1) Data the model accepts but Postfix refuses (through the `postfix_extra` escape hatch for expert
    settings) must stop the deploy before anything goes live: config files byte-identical, Postfix not
    reloaded (same master PID), mail still accepted and delivered, no staging files left.
(2) A config that passes every checker but breaks a service when it is used (a certificate path that
    exists but holds garbage) must be rolled back: previous files restored, services restarted, the
    deploy failing with what happened.
"""

from __future__ import annotations

import smtplib
import socket
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from safety_support import SafetyHost, stray_files, tree_hashes

from e2e_support import resolving  # isort: skip

pytestmark = pytest.mark.lab

CONFIG_DIRS = ("/etc/postfix", "/etc/dovecot")
GARBAGE_CERT = "/etc/ssl/safety/garbage.pem"
GARBAGE_KEY = "/etc/ssl/safety/garbage.key"
GARBAGE_TLS = f"mailserver['tls'] = {{'mode': 'files', 'cert': {GARBAGE_CERT!r}, 'key': {GARBAGE_KEY!r}}}"


def put_garbage_certificate(sh: SafetyHost) -> None:
    """A certificate and key path that exist on the host but hold random base64, not PEM."""
    sh.check(
        "mkdir -p /etc/ssl/safety && head -c 600 /dev/urandom | base64 > "
        + GARBAGE_CERT
        + " && cp "
        + GARBAGE_CERT
        + " "
        + GARBAGE_KEY
        + " && chmod 600 "
        + GARBAGE_KEY
    )


def master_pid(sh: SafetyHost) -> str:
    return sh.check("cat /var/spool/postfix/pid/master.pid").strip()


def send_and_deliver(sh: SafetyHost) -> None:
    """Mail flow: a message over STARTTLS on 25 (certificate verified) lands in alice's Maildir."""
    dep = sh.dep
    account = next(a for a in dep.manifest.accounts if a.kind == "virtual")
    tok = f"safety-{uuid.uuid4().hex[:12]}"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "safety@sender.test", account.login, tok
    msg.set_content(tok)
    with (
        resolving(dep.fqdn, dep.host.ip),
        smtplib.SMTP(dep.fqdn, 25, timeout=30, local_hostname="client.test") as s,
    ):
        s.starttls(context=dep.tls())
        s.send_message(msg)
    dep.mailbox_has(account.mailbox, tok)


def imaps_handshake(sh: SafetyHost) -> None:
    """A verified TLS handshake on 993 (Dovecot's certificate, checked against the generated CA)."""
    ctx = sh.dep.tls()
    with (
        socket.create_connection((sh.host.ip, 993), timeout=15) as raw,
        ctx.wrap_socket(raw, server_hostname=sh.dep.fqdn) as tls,
    ):
        assert tls.recv(64).startswith(b"* OK")


@pytest.fixture
def restored(safe_host: SafetyHost) -> Iterator[SafetyHost]:
    """The shared host, put back to its base data and checked to serve mail after the test."""
    try:
        yield safe_host
    finally:
        safe_host.restore()
        send_and_deliver(safe_host)


@pytest.mark.parametrize(
    ("param", "value", "checker"),
    [("mail_owner", "nosuchuser", "postfix"), ("safety_no_such_parameter", "1", "postconf")],
    ids=["postfix-check-fails", "postconf-warns"],
)
def test_config_refused_by_postfix_never_goes_live(
    restored: SafetyHost, param: str, value: str, checker: str
) -> None:
    sh = restored
    before = tree_hashes(sh.host, *CONFIG_DIRS)
    pid = master_pid(sh)
    sh.write_data(postfix_extra={param: value})
    failed = sh.deploy()
    log = "\n".join(failed["_report"]["errors"]) + failed["_stderr"]
    assert not failed["success"] and failed["_exit"] != 0, log[-3000:]
    assert f"check failed: {checker}" in log, log[-3000:]
    assert not any(
        o["changed"] and ("Reload" in o["name"] or "Restart" in o["name"]) for o in failed["operations"]
    ), failed["operations"]
    assert tree_hashes(sh.host, *CONFIG_DIRS) == before, "a live config file changed"
    assert master_pid(sh) == pid, "Postfix was restarted"
    assert sh.check("postconf -h mail_owner").strip() == "postfix"
    assert stray_files(sh.host, CONFIG_DIRS) == []
    sh.smtp_banner()
    send_and_deliver(sh)


def test_failed_postfix_check_shows_the_checkers_message(restored: SafetyHost) -> None:
    sh = restored
    sh.write_data(postfix_extra={"mail_owner": "nosuchuser"})
    failed = sh.deploy()
    log = "\n".join(failed["_report"]["errors"]) + failed["_stderr"]
    assert not failed["success"]
    assert "unknown user name value: nosuchuser" in log, log[-3000:]


def test_config_failing_at_use_is_rolled_back(restored: SafetyHost) -> None:
    sh = restored
    put_garbage_certificate(sh)
    before = tree_hashes(sh.host, *CONFIG_DIRS)
    sh.write_data(GARBAGE_TLS)
    failed = sh.deploy()
    log = "\n".join(failed["_report"]["errors"]) + failed["_stderr"]
    # what must happen: the deploy notices, says so, and puts the previous config back
    assert not failed["success"] and failed["_exit"] != 0, "deploy of a garbage certificate succeeded"
    assert "rolled back" in log.lower() or "rollback" in log.lower(), log[-3000:]
    assert tree_hashes(sh.host, *CONFIG_DIRS) == before, "previous config not restored"
    send_and_deliver(sh)  # STARTTLS with the old, valid certificate
    imaps_handshake(sh)
