"""Issue 6 (4): nothing is lost. Queued messages (a deferred one and a held one) and mailboxes (Maildir,
and an mbox spool file) stay byte-identical across a no-change re-deploy, a change of an unrelated
setting, a failed deploy, and the removal of a mailbox from the data, whose mail stays on disk (the
deploy should report it as orphaned).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from safety_support import SafetyHost, tree_hashes

pytestmark = pytest.mark.lab

QUEUES = ("deferred", "hold", "active", "incoming")
MBOX = "/var/mail/safety-mbox"  # an mbox spool file of an account the data does not know
REMOVED = "bob@example.com"
WITHOUT_REMOVED = (
    f"mailserver['virtual']['mailboxes'] = [m for m in mailserver['virtual']['mailboxes'] "
    f"if m['address'] != {REMOVED!r}]",
    "mailserver['virtual']['aliases']['team@example.net'] = ['alice@example.net', 'bob@example.net']",
)


def queue_contents(sh: SafetyHost) -> dict[str, str]:
    """queue id -> sha256 of its queue file, whatever queue it is in at the moment (a retry moves a
    deferred message through `active`, which is not a change)."""
    roots = [f"/var/spool/postfix/{q}" for q in QUEUES]
    return {path.rsplit("/", 1)[1]: digest for path, digest in tree_hashes(sh.host, *roots).items()}


def mail_contents(sh: SafetyHost, base_dir: str) -> dict[str, str]:
    return tree_hashes(sh.host, base_dir, MBOX)


def snapshot(sh: SafetyHost, base_dir: str) -> dict[str, Any]:
    return {"queue": queue_contents(sh), "mail": mail_contents(sh, base_dir)}


def queued(sh: SafetyHost) -> list[dict[str, Any]]:
    out = sh.check("postqueue -j")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_queued(sh: SafetyHost, recipient: str, queue_name: str, timeout: float = 90) -> str:
    """Poll `postqueue -j` until a message to `recipient` is in `queue_name`; its queue id."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = queued(sh)
        for m in seen:
            if m["queue_name"] == queue_name and any(r["address"] == recipient for r in m["recipients"]):
                return str(m["queue_id"])
        time.sleep(0.5)
    pytest.fail(f"no message to {recipient} in {queue_name} within {timeout} s: {seen}")


@pytest.fixture(scope="module")
def mail_state(safe_host: SafetyHost) -> Iterator[dict[str, Any]]:
    """Mail in every form on the host: delivered to three Maildirs (one of them about to be removed
    from the data), an mbox file, one deferred message (the relayhost refuses) and one held message."""
    sh = safe_host
    m = sh.manifest()
    base_dir = next(d.path for d in m.directories if d.path.endswith("/vmail"))
    tok = f"safety-{uuid.uuid4().hex[:12]}"
    accounts = {a.login: a for a in m.accounts}
    for login in ("alice@example.net", "bob@example.net", REMOVED):
        sh.check(f"printf 'Subject: {tok}\\n\\nbody {tok}\\n' | sendmail {login}")
    for login in ("alice@example.net", "bob@example.net", REMOVED):
        sh.dep.mailbox_has(accounts[login].mailbox, tok)
    sh.check(
        f"printf 'From a@b Thu Jan  1 00:00:00 2026\\nSubject: mbox {tok}\\n\\nbody\\n\\n' > {MBOX}"
        f" && chmod 600 {MBOX}"
    )
    deferred_rcpt, held_rcpt = f"deferred-{tok}@foreign.test", f"held-{tok}@foreign.test"
    sh.check(f"printf 'Subject: deferred {tok}\\n\\nbody\\n' | sendmail {deferred_rcpt}")
    sh.check(f"printf 'Subject: held {tok}\\n\\nbody\\n' | sendmail {held_rcpt}")
    held_id = wait_queued(sh, held_rcpt, "deferred")
    sh.check(f"postsuper -h {held_id}")
    wait_queued(sh, held_rcpt, "hold")
    wait_queued(sh, deferred_rcpt, "deferred")
    state = {"base_dir": base_dir, "removed_mailbox": accounts[REMOVED].mailbox, "token": tok}
    state["before"] = snapshot(sh, base_dir)
    assert len(state["before"]["queue"]) >= 2, state["before"]["queue"]
    try:
        yield state
    finally:
        sh.write_data()
        sh.restore()
        sh.run("postsuper -d ALL; rm -f " + MBOX)


def assert_unchanged(sh: SafetyHost, state: dict[str, Any], what: str) -> None:
    after = snapshot(sh, state["base_dir"])
    for kind in ("queue", "mail"):
        before = state["before"][kind]
        lost = sorted(set(before) - set(after[kind]))
        changed = sorted(k for k in before if k in after[kind] and after[kind][k] != before[k])
        assert not lost and not changed, f"{what}: {kind} lost {lost}, changed {changed}"


def test_no_change_redeploy_keeps_queue_and_mail(safe_host: SafetyHost, mail_state: dict[str, Any]) -> None:
    r = safe_host.deploy()
    assert r["success"], r["_report"]["errors"]
    assert_unchanged(safe_host, mail_state, "re-deploy")


def test_unrelated_change_keeps_queue_and_mail(safe_host: SafetyHost, mail_state: dict[str, Any]) -> None:
    """A change that reloads Postfix and restarts Dovecot (a header rule, POP3 on 110 off)."""
    safe_host.write_data(
        "mailserver['header_checks'].append({'pattern': '/^Subject:.*safety-unrelated/', 'action': 'WARN'})",
        "mailserver['services']['pop3'] = {'enabled': False}",
    )
    r = safe_host.deploy()
    assert r["success"], r["_report"]["errors"]
    assert set(r["services_reloaded"]) >= {"postfix", "dovecot"}, r["services_reloaded"]
    assert_unchanged(safe_host, mail_state, "unrelated change")


def test_failed_deploy_keeps_queue_and_mail(safe_host: SafetyHost, mail_state: dict[str, Any]) -> None:
    safe_host.write_data(postfix_extra={"mail_owner": "nosuchuser"})
    r = safe_host.deploy()
    assert not r["success"]
    assert_unchanged(safe_host, mail_state, "failed deploy")


def test_removed_mailbox_keeps_its_mail(safe_host: SafetyHost, mail_state: dict[str, Any]) -> None:
    safe_host.write_data(*WITHOUT_REMOVED)
    r = safe_host.deploy()
    assert r["success"], r["_report"]["errors"]
    assert_unchanged(safe_host, mail_state, "mailbox removed from the data")
    safe_host.check(f"grep -rlF {mail_state['token']} {mail_state['removed_mailbox']}")


def test_removed_mailbox_is_reported_as_orphaned(safe_host: SafetyHost, mail_state: dict[str, Any]) -> None:
    safe_host.write_data(*WITHOUT_REMOVED)
    r = safe_host.deploy()
    text = json.dumps({k: v for k, v in r.items() if not k.startswith("_")}) + r["_stderr"]
    assert r["success"]
    assert "orphan" in text.lower() and REMOVED.split("@")[0] in text, text[-2000:]
