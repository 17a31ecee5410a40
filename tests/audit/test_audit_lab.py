"""drift and audit on real lab hosts: clean after a deploy, ten breakages each caught, clean after re-deploy.

The commands run as subprocesses (`mailserver drift|audit --json`), exactly as CI would run them; the
test process never imports pyinfra_cli (its gevent patching would break the lab's subprocess calls).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyinfra_mailserver.lab.pytest_plugin import TEST_RELEASES

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
MAILSERVER = str(Path(sys.executable).parent / "mailserver")
INVENTORY = str(REPO / "inventories" / "lab.py")


@dataclass
class Run:
    rc: int
    report: dict[str, Any]

    def failing(self) -> set[str]:
        return {r["id"] for r in self.report["results"] if r["status"] in ("fail", "error")}

    def status(self, check_id: str) -> str | None:
        return next((r["status"] for r in self.report["results"] if r["id"] == check_id), None)


class Hosts:
    """The module's two deployed hosts (one per SASL variant, on one Debian release) and the commands the
    tests run on them."""

    def __init__(self, lab: Any, release: str) -> None:
        self.lab = lab
        self.release = release
        [self.saslauthd] = lab.up(1, variant="saslauthd", release=release)
        [self.virtual] = lab.up(1, variant="virtual", release=release)
        r = subprocess.run(
            [MAILSERVER, "secrets", "generate", INVENTORY],
            env=lab.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        self.deploy(self.saslauthd, self.virtual)

    def deploy(self, *hosts: Any) -> None:
        argv = [MAILSERVER, "deploy", INVENTORY, "--json"]
        for h in hosts:
            argv += ["--limit", h.fqdn]
        r = subprocess.run(
            argv,
            env=self.lab.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, f"deploy failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"

    def check(self, command: str, host: Any, *extra: str) -> Run:
        r = subprocess.run(
            [MAILSERVER, command, INVENTORY, "--limit", host.fqdn, "--json", *extra],
            env=self.lab.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        try:
            report = json.loads(r.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"mailserver {command}: no JSON (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
        return Run(r.returncode, report)


def poll(fn: Callable[[], Run], done: Callable[[Run], bool], timeout: float = 60) -> Run:
    """Re-run a check until `done` (services reload asynchronously); the last run when time is up."""
    deadline = time.monotonic() + timeout
    run = fn()
    while not done(run) and time.monotonic() < deadline:
        time.sleep(1)
        run = fn()
    return run


@pytest.fixture(scope="module", params=TEST_RELEASES)
def hosts(lab: Any, request: pytest.FixtureRequest) -> Iterator[Hosts]:
    h = Hosts(lab, request.param)
    yield h
    lab.down([h.saslauthd.name, h.virtual.name])


@pytest.mark.parametrize("variant", ["saslauthd", "virtual"])
def test_fresh_host_has_no_findings(hosts: Hosts, variant: str, tmp_path: Path) -> None:
    host = getattr(hosts, variant)
    drift = hosts.check("drift", host)
    assert drift.rc == 0 and not drift.failing(), drift.failing()
    junit = tmp_path / "audit.xml"
    audit = hosts.check("audit", host, "--junit", str(junit))
    assert audit.rc == 0 and not audit.failing(), [
        (r["id"], r["message"], r["detail"]) for r in audit.report["results"] if r["status"] != "pass"
    ]
    # what a clean result is made of: the probes really logged in, and skipped checks stay skipped
    assert audit.status("smtp.open_relay[25]") == "pass"
    assert audit.status("imap.login[993]") == "pass"
    assert audit.status("smtp.login[587]") == "pass"
    for check in (
        "smtp.sender_login_enforced[587]",
        "smtp.local_sender_refused[25]",
        "smtp.helo_checked[25]",
        "fail2ban.jails",
    ):
        assert audit.status(check) == "pass", check
    assert audit.status("dns.mx") == "skip"
    if variant == "saslauthd":
        assert audit.status("saslauthd.testsaslauthd") == "pass"
    assert drift.status("drift.postconf") == "pass" and drift.status("drift.doveconf") == "pass"
    # the JUnit file CI publishes: one test case per check, skipped ones as <skipped/>, no failures
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == f"audit.{host.fqdn}"
    cases = suite.findall("testcase")
    assert len(cases) == len(audit.report["results"])
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(skipped) == audit.report["summary"]["skip"] > 0
    assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]


def test_drift_and_audit_change_nothing(hosts: Hosts) -> None:
    """Read-only, checked on the host: nothing newer than a marker after drift; after the audit only the
    probe account's mailbox (Dovecot creates and indexes it on the probe's login), never configuration."""
    host = hosts.saslauthd
    host.check("touch /run/audit-marker")  # find -newer compares nanosecond mtimes
    assert hosts.check("drift", host).rc == 0
    find = "find /etc /home /var/spool/postfix/etc /var/lib/dovecot -xdev -newer /run/audit-marker -print"
    assert host.check(find).strip() == ""
    assert hosts.check("audit", host).rc == 0
    changed = [p for p in host.check(find).split() if not p.startswith("/home/")]
    assert changed == []


def test_several_hosts_in_one_run(hosts: Hosts, tmp_path: Path) -> None:
    """One command over both hosts (as CI runs it over a fleet): one JUnit suite per host, still clean."""
    junit = tmp_path / "drift.xml"
    r = subprocess.run(
        [
            MAILSERVER,
            "drift",
            INVENTORY,
            "--limit",
            hosts.saslauthd.fqdn,
            "--limit",
            hosts.virtual.fqdn,
            "--junit",
            str(junit),
            "--failures-only",
        ],
        env=hosts.lab.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 fail, 0 skip, 0 error" in r.stdout  # the table's summary line
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == sorted(
        f"drift.{h.fqdn}" for h in (hosts.saslauthd, hosts.virtual)
    )
    assert all(int(s.get("tests") or 0) > 20 and s.get("failures") == "0" for s in suites)


def _probe_login(hosts: Hosts, host: Any) -> str:
    audit = hosts.check("audit", host, "--no-inside")
    msg = next(r["message"] for r in audit.report["results"] if r["id"] == "imap.login[993]")
    return msg.split("login as ", 1)[1].split(" ", 1)[0]


# (name, variant, break command, {command: check ids that must fail})
BREAKS: list[tuple[str, str, str, dict[str, set[str]]]] = [
    (
        "main_cf_parameter",
        "saslauthd",
        "sed -i 's/^message_size_limit = .*/message_size_limit = 999/' /etc/postfix/main.cf",
        {"drift": {"drift.file[/etc/postfix/main.cf]", "drift.postconf"}},
    ),
    (
        "aliases_line_without_newaliases",
        "saslauthd",
        "sed -i '/^admins:/d' /etc/aliases",
        {"drift": {"drift.file[/etc/aliases]", "drift.map[/etc/aliases]"}},
    ),
    (
        "stale_map",
        "saslauthd",
        "touch -r /etc/postfix/transport.db -d '+1 second' /etc/postfix/transport",
        {"drift": {"drift.map[/etc/postfix/transport]"}},
    ),
    (
        "private_key_644",
        "saslauthd",
        "chmod 644 /etc/ssl/private/{fqdn}.key",
        {"audit": {"files.private_key"}, "drift": {"drift.file[/etc/ssl/private/{fqdn}.key]"}},
    ),
    (
        "dovecot_stopped",
        "virtual",
        "systemctl stop dovecot",
        {"audit": {"imap.reachable[993]", "imap.reachable[143]"}, "drift": {"drift.service[dovecot]"}},
    ),
    (
        "open_relay_mynetworks",
        "saslauthd",
        "postconf -e mynetworks=0.0.0.0/0 && postfix reload",
        {"audit": {"smtp.open_relay[25]"}, "drift": {"drift.postconf"}},
    ),
    (
        "tls_1_0_allowed",
        "saslauthd",
        # the login ports' AEAD-only suites exist from TLS 1.2 on: their cipher policy goes back too
        "postconf -e 'smtpd_tls_protocols=>=TLSv1' 'smtpd_tls_mandatory_protocols=>=TLSv1' "
        "'tls_medium_cipherlist=DEFAULT:@SECLEVEL=0' 'smtpd_tls_mandatory_ciphers=medium' && postfix reload",
        {"audit": {"tls.v1_refused[25]", "tls.v1_refused[587]"}, "drift": {"drift.postconf"}},
    ),
    (
        "dovecot_plaintext_auth",
        "virtual",  # Dovecot 2.3's spelling, then 2.4's (each a no-op on the other)
        "sed -i 's/^disable_plaintext_auth = yes/disable_plaintext_auth = no/; "
        "s/^auth_allow_cleartext = no/auth_allow_cleartext = yes/' /etc/dovecot/conf.d/10-auth.conf"
        " && sed -i 's/^ssl = required/ssl = yes/' /etc/dovecot/conf.d/10-ssl.conf"
        " && systemctl reload dovecot",
        {"audit": {"imap.plaintext_auth_refused[143]"}, "drift": {"drift.doveconf"}},
    ),
    (
        "mailbox_entry_deleted",
        "virtual",
        "sed -i '/^{login}:/d' /etc/dovecot/users",
        {"audit": {"imap.login[993]"}, "drift": {"drift.file[/etc/dovecot/users]"}},
    ),
    (
        "sender_checks_off",
        "virtual",
        # port 25's sender checks, and the login ports' own (mua_sender_restrictions)
        "postconf -e 'smtpd_sender_restrictions=permit_mynetworks' "
        "'mua_sender_restrictions=permit_mynetworks' && postfix reload",
        {
            "audit": {"smtp.sender_login_enforced[587]", "smtp.local_sender_refused[25]"},
            "drift": {"drift.postconf"},
        },
    ),
    (
        "helo_checks_off",
        "saslauthd",
        "postconf -e 'smtpd_helo_restrictions=' && postfix reload",
        {"audit": {"smtp.helo_checked[25]"}, "drift": {"drift.postconf"}},
    ),
    (
        "fail2ban_stopped",
        "virtual",
        "systemctl stop fail2ban",
        {"audit": {"fail2ban.jails"}, "drift": {"drift.service[fail2ban]"}},
    ),
    (
        "saslauthd_stopped",
        "saslauthd",
        "systemctl stop saslauthd",
        {"audit": {"saslauthd.running", "smtp.login[587]"}, "drift": {"drift.service[saslauthd]"}},
    ),
]


@pytest.mark.parametrize(("name", "variant", "command", "expected"), BREAKS, ids=[b[0] for b in BREAKS])
def test_break_is_found_and_redeploy_cleans(
    hosts: Hosts, name: str, variant: str, command: str, expected: dict[str, set[str]]
) -> None:
    host = getattr(hosts, variant)
    fill = {"fqdn": host.fqdn}
    if "{login}" in command:
        fill["login"] = _probe_login(hosts, host)
    for key, value in fill.items():
        command = command.replace("{" + key + "}", value)
    try:
        host.check(command)
        for cmd, ids in expected.items():
            want = {i.replace("{fqdn}", host.fqdn) for i in ids}
            if cmd == "audit" and any(i.startswith("tls.v1_refused") for i in want):
                probe = hosts.check("audit", host, "--no-inside")
                if probe.status("tls.v1_refused[25]") == "skip":
                    want = {i for i in want if not i.startswith("tls.v1")}  # local OpenSSL cannot test it
            run = poll(lambda c=cmd: hosts.check(c, host), lambda r, w=want: w <= r.failing())
            assert want <= run.failing(), (cmd, want - run.failing(), run.failing())
            assert run.rc == 1, (cmd, run.rc, run.failing())
    except BaseException:
        hosts.deploy(host)  # the next case shares this host: leave it deployed, then report this failure
        raise
    hosts.deploy(host)
    drift = hosts.check("drift", host)
    assert drift.rc == 0, drift.failing()
    # Clean within two minutes, counting log lines from the start of each attempt: what the break left in
    # the log is history, and Postfix keeps a service throttled for up to 60 s after its SASL server was
    # down (service_throttle_time), which the audit rightly reports until it is over.
    audit = poll(
        lambda: hosts.check("audit", host, "--log-since", f"@{int(time.time())}"),
        lambda r: r.rc == 0,
        timeout=150,
    )
    assert audit.rc == 0, [
        (r["id"], r["message"]) for r in audit.report["results"] if r["status"] in ("fail", "error")
    ]


def test_mail_log_warnings_reach_the_audit(hosts: Hosts) -> None:
    """Only warnings and worse leave the host (journalctl -p warning): a real Postfix warning is reported,
    while an info line that merely contains "warning:" is not even read. Last in the module: the warning
    stays in the host's log until the module's hosts go down."""
    host = hosts.virtual
    start = int(time.time())
    token = f"audit-log-{start}"
    host.check(
        f"postlog -t postfix/audit-test -p warn 'audit test {token}' && "
        f"postlog -t postfix/audit-test -p info 'warning: audit info {token}'"
    )
    audit = poll(
        lambda: hosts.check("audit", host, "--no-probes", "--log-since", f"@{start}"),
        lambda r: "log.warnings" in r.failing(),
    )
    row = next(r for r in audit.report["results"] if r["id"] == "log.warnings")
    assert f"audit test {token}" in row["detail"], row
    assert f"audit info {token}" not in row["detail"], row
    assert audit.rc == 1
