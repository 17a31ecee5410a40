"""Debian 12 -> 13 on a deployed host: the operator's `apt full-upgrade` (Dovecot 2.3 -> 2.4, Postfix
3.7 -> 3.10), then one re-deploy converges: the config is rewritten for Dovecot 2.4, every message in
the Maildirs (same IMAP UIDs) and in the queue is still there, every mailbox logs in with its old password
hash, and drift and audit are clean.

The upgrade is done as docs/upgrade.md tells an operator to do it, through the lab's apt proxy.
"""

from __future__ import annotations

import imaplib
import json
import smtplib
import subprocess
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from e2e_support import MAILSERVER, REPO, Deployment, deploy_fresh, manifest_of, resolving

from pyinfra_mailserver import distro

pytestmark = pytest.mark.lab

OLD, NEW = distro.BOOKWORM, distro.TRIXIE
# The dist-upgrade an operator runs (docs/upgrade.md): sources moved to the new release, then a
# non-interactive full-upgrade that keeps the deploy's config files (--force-confold) for the deploy to
# rewrite. Its exit status is not asserted: Debian's dovecot may fail to restart on the old config, and
# the re-deploy is what fixes that.
UPGRADE = (
    f"sed -i 's/\\b{OLD.release}\\b/{NEW.release}/g' /etc/apt/sources.list && "
    "export DEBIAN_FRONTEND=noninteractive && apt-get update -q && "
    "apt-get full-upgrade -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "
    "-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 </dev/null"
)


@pytest.fixture(scope="module")
def upgraded(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A virtual-variant host deployed on Debian 12 with mail and a queue, dist-upgraded to 13 and
    re-deployed; what was seen before the upgrade and the re-deploy's report."""
    dep = deploy_fresh(lab, "virtual", tmp_path_factory.mktemp("upgrade"), OLD.release)
    assert dep.first["success"], f"{dep.first['_report']['errors']}\n{dep.first['_stderr'][-3000:]}"
    try:
        before = _mail_state(dep)
        up = dep.host.run(UPGRADE, timeout=1800)
        after_apt = dep.host.run("cat /etc/os-release; dovecot --version; systemctl is-active dovecot")
        redeploy = dep.deploy()
        dep.manifest = manifest_of(dep.group_file, dep.fqdn, dep.secrets_dir, NEW.release)
        yield {
            "dep": dep,
            "before": before,
            "upgrade": up,
            "after_apt": after_apt,
            "redeploy": redeploy,
            "redeployed_at": int(time.time()),
        }
    finally:
        lab.down([dep.host.name])


def _token() -> str:
    return f"upgrade-{uuid.uuid4().hex[:12]}"


def _send(dep: Deployment, to: str, tok: str) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "upgrade@sender.test", to, f"before the upgrade {tok}"
    m.set_content(f"body {tok}\n")
    with (
        resolving(dep.fqdn, dep.host.ip),
        smtplib.SMTP(dep.fqdn, 25, timeout=30, local_hostname="client.test") as s,
    ):
        s.starttls(context=dep.tls())
        s.send_message(m, to_addrs=[to])


def _uids(dep: Deployment, login: str, tokens: list[str]) -> dict[str, int]:
    """IMAP UID of the message holding each token in the INBOX of `login`."""
    a = next(a for a in dep.manifest.accounts if a.login == login)
    out: dict[str, int] = {}
    with (
        resolving(dep.fqdn, dep.host.ip),
        imaplib.IMAP4_SSL(dep.fqdn, 993, ssl_context=dep.tls(), timeout=30) as imap,
    ):
        imap.login(a.login, dep.password(a.secret))
        imap.select("INBOX", readonly=True)
        for tok in tokens:
            typ, data = imap.uid("SEARCH", None, "BODY", tok)
            assert typ == "OK" and len(data[0].split()) == 1, (login, tok, data)
            out[tok] = int(data[0])
    return out


def _queue_ids(dep: Deployment) -> set[str]:
    out = dep.host.check("postqueue -j")
    return {json.loads(line)["queue_id"] for line in out.splitlines() if line.strip()}


def _mail_state(dep: Deployment) -> dict[str, Any]:
    """Mail in every mailbox (by IMAP UID) and five messages held in the queue, before the upgrade."""
    boxes = [a for a in dep.manifest.accounts if a.kind == "virtual"]
    tokens: dict[str, list[str]] = {}
    for a in boxes:
        tokens[a.login] = [_token() for _ in range(2)]
        for tok in tokens[a.login]:
            _send(dep, a.login, tok)
    for a in boxes:
        for tok in tokens[a.login]:
            dep.mailbox_has(a.mailbox, tok)
    uids = {a.login: _uids(dep, a.login, tokens[a.login]) for a in boxes}
    # five messages that stay queued: routed to the test sink, which is not listening now, then held
    for _ in range(5):
        body = f"Subject: queued\\n\\n{_token()}\\n"
        dep.host.check(f"printf '{body}' | sendmail -f upgrade@sender.test queued@sink.test")
    dep.wait_on_host("test $(postqueue -j | wc -l) -ge 5")
    dep.host.check("postsuper -h ALL")
    hashes = dep.host.check(f"cut -d: -f1,2 {dep.manifest.distro.dovecot_passwd_file} | grep -v '^#'")
    return {"tokens": tokens, "uids": uids, "queue": _queue_ids(dep), "hashes": hashes}


def test_the_operator_upgrade_reached_debian_13(upgraded: dict[str, Any]) -> None:
    out = upgraded["after_apt"].stdout
    assert f'VERSION_ID="{NEW.version_id}"' in out and "2.4." in out, out + upgraded["upgrade"].stdout[-3000:]


def test_redeploy_converges_on_dovecot_2_4(upgraded: dict[str, Any]) -> None:
    r, dep = upgraded["redeploy"], upgraded["dep"]
    assert r["success"], f"{r['_report']['errors']}\n{r['_stderr'][-4000:]}"
    conf = dep.host.check("doveconf -n")
    assert "dovecot_config_version = 2.4" in conf and "disable_plaintext_auth" not in conf
    assert dep.host.check("systemctl is-active postfix dovecot").split() == ["active", "active"]
    again = dep.deploy()
    assert again["success"] and again["changed"] == 0, [o for o in again["operations"] if o["changed"]]


def test_every_message_and_uid_survives(upgraded: dict[str, Any]) -> None:
    dep, before = upgraded["dep"], upgraded["before"]
    for login, tokens in before["tokens"].items():
        assert _uids(dep, login, tokens) == before["uids"][login], login


def test_the_queue_survives(upgraded: dict[str, Any]) -> None:
    dep, before = upgraded["dep"], upgraded["before"]
    assert before["queue"] and before["queue"] <= _queue_ids(dep)


def test_every_mailbox_logs_in_with_its_old_hash(upgraded: dict[str, Any]) -> None:
    dep, before = upgraded["dep"], upgraded["before"]
    hashes = dep.host.check(f"cut -d: -f1,2 {dep.manifest.distro.dovecot_passwd_file} | grep -v '^#'")
    assert hashes == before["hashes"]  # the deploy rewrote the file (quota field), not the hashes
    for a in dep.manifest.accounts:
        with (
            resolving(dep.fqdn, dep.host.ip),
            imaplib.IMAP4_SSL(dep.fqdn, 993, ssl_context=dep.tls(), timeout=30) as imap,
        ):
            assert imap.login(a.login, dep.password(a.secret))[0] == "OK", a.login
        with (
            resolving(dep.fqdn, dep.host.ip),
            smtplib.SMTP(dep.fqdn, 587, timeout=30, local_hostname="client.test") as s,
        ):
            s.starttls(context=dep.tls())
            s.login(a.login, dep.password(a.secret))


def test_quota_is_enforced_after_the_upgrade(upgraded: dict[str, Any]) -> None:
    """Dovecot 2.4 ignores 2.3's quota_rule: quota must be on again after the re-deploy."""
    dep = upgraded["dep"]
    a = next(a for a in dep.manifest.accounts if a.login == "alice@example.net")
    report = dep.host.check(f"doveadm -f flow quota get -u {a.login}")
    storage = next(line for line in report.splitlines() if "Type=STORAGE" in line)
    assert "Limit=2097152" in storage, report  # 2G, in KiB


def test_drift_and_audit_are_clean_after_the_redeploy(upgraded: dict[str, Any]) -> None:
    dep = upgraded["dep"]
    for command, extra in (("drift", []), ("audit", ["--log-since", f"@{upgraded['redeployed_at']}"])):
        r = subprocess.run(
            [MAILSERVER, command, str(dep.inventory), "--json", *extra],
            env=dep.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
        report = json.loads(r.stdout)
        bad = [(x["id"], x["message"]) for x in report["results"] if x["status"] in ("fail", "error")]
        assert r.returncode == 0 and not bad, (command, bad)


def test_upgrade_doc_is_what_the_test_runs() -> None:
    doc = (REPO / "docs" / "upgrade.md").read_text()
    assert "--force-confold" in doc and "full-upgrade" in doc and "mailserver deploy" in doc
    assert Path(__file__).name in doc
