"""The audit of one host: outside-in probes, inside checks over pyinfra (read-only), optional DNS.

Inside checks run as one batched script per host; each verdict is a pure function of its section's
output, so the logic is unit-tested without hosts. Thresholds and log filters come from host data
`mailserver_audit` (documented in docs/audit.md), with defaults that keep a fresh host clean.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra_mailserver.audit.remote import Section, Target
from pyinfra_mailserver.manifest import Account, Manifest
from pyinfra_mailserver.report import CheckResult, CheckSet, Severity, Status, in_parallel
from pyinfra_mailserver.services.fail2ban import checks as fail2ban_checks

AUDIT_DATA_KEY = "mailserver_audit"
PROBE_PASSWORD_ENV = "MAILSERVER_PROBE_PASSWORD"
PLAIN_SCHEMES = ("PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC")
# Log lines that are the normal noise of an operator's action, not a problem of the host.
BENIGN_LOG = (
    # a service stop/restart by the init system: the master and its log process each say so
    r"dovecot.*(master|log\(\d+\)): Warning: Killed with signal 15",
    r"dovecot.*master: Warning: SIGHUP received - reloading configuration",
    r"postfix/postfix-script.*warning: symlink leaves directory",
    # what any TLS scanner (this audit's own TLS 1.0/1.1 probes included) leaves behind
    r"postfix/.*warning: TLS library problem: .*(unsupported protocol|version too low|no shared cipher)",
)
LOG_LINE = re.compile(r"(postfix/[\w/-]+\[\d+\]: (fatal|panic|warning):)|(dovecot.*: (Fatal|Panic|Warning):)")


@dataclass(frozen=True)
class AuditOptions:
    ca_file: str | None = None
    probes: bool = True
    inside: bool = True
    dns_resolver: str | None = None
    timeout: float = 10.0
    log_since: str | None = None  # journalctl --since value; default from host data, else -24h


@dataclass(frozen=True)
class HostSettings:
    """Per-host audit settings from host data `mailserver_audit` (all optional)."""

    queue_deferred_max: int = 100
    queue_age_max_hours: float = 24.0
    log_window: str = "-24h"
    log_ignore: tuple[str, ...] = ()
    dns_resolver: str | None = None
    probe_user: str | None = None
    probe_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> HostSettings:
        raw = dict(data.get(AUDIT_DATA_KEY) or {})
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        if "log_ignore" in known:
            known["log_ignore"] = tuple(known["log_ignore"])
        return cls(**known)


# --------------------------------------------------------------------------------------- probe setup


def ca_file_for(t: Target, options: AuditOptions) -> str | None:
    """The CA the probes trust: --ca, else the controller's generated CA for `generate`, else the system."""
    if options.ca_file:
        return options.ca_file
    if t.manifest.tls.mode == "generate":
        ca = t.secrets_dir / "ca" / "ca.crt"
        if ca.is_file():
            return str(ca)
    return None


def probe_account(
    m: Manifest, secrets_dir: Path, settings: HostSettings
) -> tuple[Account | None, str | None]:
    """The account the probes log in with and its password: host data `probe_user` (password from
    `probe_password` or $MAILSERVER_PROBE_PASSWORD, so CI keeps it in its secret store), else the probe
    mailbox (`virtual.mailboxes[].probe`), else the first manifest account, with a plaintext written by
    `mailserver secrets generate` (`NAME.password`)."""
    password = settings.probe_password or os.environ.get(PROBE_PASSWORD_ENV)
    if settings.probe_user and password:
        acct = next((a for a in m.accounts if a.login == settings.probe_user), None)
        if acct is None:
            acct = Account(settings.probe_user, "virtual", None, "", ("smtp-auth", "imap", "pop3"))
        return acct, password
    # a probe mailbox first (cheap to log in to: its hash is of a random token), then any mailbox
    for a in sorted(m.accounts, key=lambda a: not a.probe):
        if a.secret is None:
            continue
        pw = secrets_dir / f"{a.secret}.password"
        if pw.is_file():
            return a, pw.read_text().strip()
    return None, None


def smtpd_policy(m: Manifest) -> frozenset[str]:
    """The restriction steps of main.cf's smtpd_*_restrictions, as the manifest says the host has them;
    the table of local senders refused without login stands as LOCAL_SENDERS_REFUSED."""
    from pyinfra_mailserver.audit.probes import LOCAL_SENDERS_REFUSED
    from pyinfra_mailserver.services.postfix.render import LOCAL_SENDERS

    steps: set[str] = set()
    for key, value in m.postconf.items():
        if key.endswith("_restrictions"):  # smtpd_*_restrictions and the login ports' own
            steps.update(value.replace(",", " ").split())
    if f"regexp:{m.distro.postfix_dir}/{LOCAL_SENDERS}" in steps:
        steps.add(LOCAL_SENDERS_REFUSED)
    return frozenset(steps)


def run_probes(t: Target, options: AuditOptions, settings: HostSettings) -> list[CheckResult]:
    from pyinfra_mailserver.audit.probes import ProbeAccount, ProbeTarget
    from pyinfra_mailserver.audit.probes import run_probes as probe

    acct, password = probe_account(t.manifest, t.secrets_dir, settings)
    account = ProbeAccount(acct.login, password, acct.services) if acct and password else None
    target = ProbeTarget(
        host=t.name,
        address=t.address,
        server_name=t.manifest.hostname,
        ca_file=ca_file_for(t, options),
        local_domain=t.manifest.hostname,
        account=account,
        timeout=options.timeout,
        policy=smtpd_policy(t.manifest),
        mynetworks=tuple(t.manifest.postconf.get("mynetworks", "").replace(",", " ").split()),
    )
    results = probe(target, t.manifest.ports)
    if account is None:
        results.append(
            CheckResult(
                "probe.account",
                t.name,
                Status.SKIP,
                "no probe account (host data mailserver_audit.probe_user/probe_password, "
                "or a secret with a .password file): login checks skipped",
                section="audit",
            )
        )
    return results


# ------------------------------------------------------------------------------------ inside checks


def inside_commands(
    m: Manifest, settings: HostSettings, account: Account | None, password: str | None, log_since: str
) -> dict[str, str]:
    """The read-only commands of the inside checks, by section name."""
    d = m.distro
    secret_paths = sorted(
        {f.path for f in m.files if f.secret}
        | {mp.source + ".db" for mp in m.maps if _is_secret(m, mp.source)}
    )
    cmds: dict[str, str] = {
        "key": f"stat -c '%a|%U|%G|%n' {shlex.quote(m.tls.key_path)}",
        "secret_files": "stat -c '%a|%U|%G|%n' "
        + " ".join(shlex.quote(p) for p in secret_paths)
        + " 2>/dev/null; true"
        if secret_paths
        else "true",
        "queue": "date +%s; postqueue -j",
        # Only warnings and worse leave the host (-p warning): the only lines the log checks judge
        # (Postfix and Dovecot log warning: at LOG_WARNING, fatal:/panic: at LOG_CRIT). A day of a busy
        # host's mail log is megabytes the controller would read to throw away.
        "log": (
            f"if command -v journalctl >/dev/null; then journalctl --no-pager -q -o short-iso "
            f"--since {shlex.quote(log_since)} -p warning SYSLOG_FACILITY=2; "
            f"elif [ -f {shlex.quote(d.mail_log)} ]; then tail -n 5000 {shlex.quote(d.mail_log)} "
            "| grep -E ': ([Ff]atal|[Pp]anic|[Ww]arning):'; fi"
        ),
    }
    passwd_files = [f.path for f in m.files if f.path == d.dovecot_passwd_file]
    if passwd_files:
        pattern = "\\{(" + "|".join(PLAIN_SCHEMES) + ")\\}"
        # only the user names of offending lines leave the host, never the lines themselves
        # a file that cannot be read is reported as such (exit 2), never as lines of its content
        q = shlex.quote(passwd_files[0])
        cmds["plain_hashes"] = (
            f"if [ -r {q} ]; then grep -E {shlex.quote(pattern)} {q} | cut -d: -f1; "
            f'else echo "cannot read {passwd_files[0]}"; exit 2; fi'
        )
    if any(s.name == "fail2ban" for s in m.services):
        cmds["fail2ban"] = "fail2ban-client status"
    if m.sasl_backend == "saslauthd":
        sock = next((s for s in m.sockets if s.endswith("/mux")), None)
        cmds["saslauthd_active"] = f"systemctl is-active {shlex.quote(d.services['saslauthd'])}"
        if sock:
            cmds["saslauthd_socket"] = f"test -S {shlex.quote(sock)}"
            if account is not None and password is not None and account.kind == "system":
                cmds["testsaslauthd"] = (
                    f"testsaslauthd -s smtp -f {shlex.quote(sock)} "
                    f"-u {shlex.quote(account.login)} -p {shlex.quote(password)}"
                )
    return cmds


def _is_secret(m: Manifest, path: str) -> bool:
    return any(f.path == path and f.secret for f in m.files)


def check_key(checks: CheckSet, m: Manifest, s: Section | None) -> None:
    cid = "files.private_key"
    if s is None or s.rc != 0 or not s.lines:
        checks.fail(cid, f"{m.tls.key_path}: missing", severity=Severity.HIGH, fix="re-run mailserver deploy")
        return
    mode, owner, _group, _ = s.lines[0].split("|", 3)
    ok = owner == "root" and int(mode, 8) & 0o077 == 0
    checks.add(
        cid,
        ok,
        f"{m.tls.key_path}: mode {mode} owner {owner} — readable by others than root",
        ok_message=f"{m.tls.key_path}: {mode} {owner}",
        severity=Severity.CRITICAL,
        fix=f"chown root:root {m.tls.key_path} && chmod 600 {m.tls.key_path}",
    )


def check_secret_files(checks: CheckSet, s: Section | None) -> None:
    for line in s.lines if s else []:
        parts = line.split("|", 3)
        if len(parts) != 4:
            continue
        mode, owner, group, path = parts
        ok = int(mode, 8) & 0o007 == 0
        checks.add(
            f"files.password_file[{path}]",
            ok,
            f"{path}: mode {mode} ({owner}:{group}) is world-readable",
            ok_message=f"{path}: {mode} {owner}:{group}",
            severity=Severity.HIGH,
            fix=f"chmod o-rwx {path}",
        )


def check_plain_hashes(checks: CheckSet, m: Manifest, s: Section | None) -> None:
    if s is None:
        return
    if s.rc != 0:
        checks.error(
            "auth.no_plain_hashes",
            f"{m.distro.dovecot_passwd_file} not checked: {s.text.strip()} "
            "(drift names the missing file; re-run mailserver deploy)",
        )
        return
    users = [x for x in s.lines if x.strip()]
    checks.add(
        "auth.no_plain_hashes",
        not users,
        f"{m.distro.dovecot_passwd_file}: plaintext passwords for {', '.join(users)}",
        ok_message="no {PLAIN} passwords",
        severity=Severity.HIGH,
        fix="store ARGON2ID or SHA512-CRYPT hashes (mailserver passwd)",
    )


def check_saslauthd(checks: CheckSet, m: Manifest, sections: Mapping[str, Section]) -> None:
    if m.sasl_backend != "saslauthd":
        checks.skip("saslauthd.running", "SASL backend is not saslauthd")
        return
    active = sections.get("saslauthd_active")
    state = active.text.strip() if active else "unknown"
    checks.add(
        "saslauthd.running",
        state == "active",
        f"saslauthd is {state}",
        ok_message="saslauthd active",
        severity=Severity.HIGH,
        fix="systemctl enable --now saslauthd",
    )
    sock = next((x for x in m.sockets if x.endswith("/mux")), None)
    if sock is None:
        checks.skip("saslauthd.socket_in_chroot", "the manifest names no saslauthd socket")
        return
    in_chroot = sock.startswith(m.distro.postfix_chroot_dir.rstrip("/") + "/")
    present = (s := sections.get("saslauthd_socket")) is not None and s.rc == 0
    checks.add(
        "saslauthd.socket_in_chroot",
        in_chroot and present,
        f"{sock}: " + ("missing" if not present else "outside Postfix's chroot"),
        ok_message=f"{sock} present inside the chroot",
        severity=Severity.HIGH,
        fix="saslauthd -m <chroot>/var/run/saslauthd (OPTIONS in /etc/default/saslauthd); restart it",
    )
    t = sections.get("testsaslauthd")
    if t is None:
        checks.skip("saslauthd.testsaslauthd", "no system probe account with a password")
    else:
        ok = t.rc == 0 and "0: OK" in t.text
        checks.add(
            "saslauthd.testsaslauthd",
            ok,
            f"testsaslauthd refused the probe account: {t.text.strip()}",
            ok_message="testsaslauthd: OK",
            severity=Severity.HIGH,
            fix="check the PAM service smtp and the user's password",
        )


def check_queue(checks: CheckSet, s: Section | None, settings: HostSettings) -> None:
    if s is None or not s.lines or not s.lines[0].strip().isdigit():
        checks.error("queue.deferred", "could not read the queue (postqueue -j)")
        return
    now = int(s.lines[0])
    deferred: list[int] = []
    for line in s.lines[1:]:
        try:
            msg = json.loads(line)
        except ValueError:
            if "postqueue" in line and "fatal" in line:
                checks.fail(
                    "queue.deferred",
                    f"postqueue: {line}",
                    severity=Severity.HIGH,
                    fix="check that postfix is running (postfix status)",
                )
                return
            continue
        if msg.get("queue_name") == "deferred":
            deferred.append(int(msg.get("arrival_time", now)))
    n = len(deferred)
    checks.add(
        "queue.deferred",
        n <= settings.queue_deferred_max,
        f"{n} deferred messages (threshold {settings.queue_deferred_max})",
        ok_message=f"{n} deferred messages",
        severity=Severity.LOW,
        fix="postqueue -p; look at the reasons in the mail log, then postqueue -f",
    )
    age = (now - min(deferred)) / 3600 if deferred else 0.0
    checks.add(
        "queue.oldest",
        age <= settings.queue_age_max_hours,
        f"oldest deferred message is {age:.1f} h old (threshold {settings.queue_age_max_hours} h)",
        ok_message=f"oldest deferred message {age:.1f} h",
        severity=Severity.LOW,
        fix="postqueue -p; postcat -q ID to see why it stays",
    )


def check_log(checks: CheckSet, s: Section | None, settings: HostSettings, since: str) -> None:
    ignore = [re.compile(p) for p in (*BENIGN_LOG, *settings.log_ignore)]
    bad = [
        line
        for line in (s.lines if s else [])
        if LOG_LINE.search(line) and not any(p.search(line) for p in ignore)
    ]
    severe = [x for x in bad if re.search(r"(fatal|panic|Fatal|Panic):", x)]
    checks.add(
        "log.fatal_panic",
        not severe,
        f"{len(severe)} fatal/panic lines in the mail log since {since}",
        ok_message=f"no fatal/panic lines since {since}",
        severity=Severity.HIGH,
        fix="read the lines below; fix the cause, then re-run the audit with --log-since now",
        detail="\n".join(severe[-20:]),
    )
    warnings = [x for x in bad if x not in severe]
    checks.add(
        "log.warnings",
        not warnings,
        f"{len(warnings)} warning lines in the mail log since {since}",
        ok_message=f"no warnings since {since}",
        severity=Severity.LOW,
        fix="read the lines below; known-harmless ones go in mailserver_audit.log_ignore",
        detail="\n".join(warnings[-20:]),
    )


def evaluate_inside(
    host: str, m: Manifest, sections: Mapping[str, Section], settings: HostSettings, since: str
) -> list[CheckResult]:
    """All inside verdicts from the sections' output (pure)."""
    checks = CheckSet(host, "audit")
    check_key(checks, m, sections.get("key"))
    check_secret_files(checks, sections.get("secret_files"))
    check_plain_hashes(checks, m, sections.get("plain_hashes"))
    check_saslauthd(checks, m, sections)
    f2b = sections.get("fail2ban")
    fail2ban_checks.audit_jails(checks, m, f2b.rc if f2b else None, f2b.text if f2b else "")
    check_queue(checks, sections.get("queue"), settings)
    check_log(checks, sections.get("log"), settings, since)
    return [_mask(r, m) for r in checks.results]


def _mask(r: CheckResult, m: Manifest) -> CheckResult:
    r.message, r.detail = m.mask(r.message), m.mask(r.detail)
    return r


def log_since(value: str) -> str:
    """journalctl's --since, with a bare duration (`6h`, `30min`) meaning that long ago: argparse would
    take the natural `-6h` for an option."""
    value = value.strip()
    return f"-{value}" if re.fullmatch(r"\d+\s*[a-z]+", value) else value


def run_inside(t: Target, options: AuditOptions, settings: HostSettings) -> list[CheckResult]:
    acct, password = probe_account(t.manifest, t.secrets_dir, settings)
    since = log_since(options.log_since or settings.log_window)
    sections = t.run(inside_commands(t.manifest, settings, acct, password, since))
    results = evaluate_inside(t.name, t.manifest, sections, settings, since)
    if password:
        for r in results:  # the probe password went over the wire to testsaslauthd: never echo it
            r.message = r.message.replace(password, "**masked**")
            r.detail = r.detail.replace(password, "**masked**")
    return results


def run_dns(t: Target, options: AuditOptions, settings: HostSettings) -> list[CheckResult]:
    from pyinfra_mailserver.audit import dns

    return dns.run_dns_checks(
        t.name, t.manifest, t.address, options.dns_resolver or settings.dns_resolver, options.timeout
    )


def run_host(t: Target, options: AuditOptions) -> list[CheckResult]:
    settings = HostSettings.from_data(t.data)
    results: list[CheckResult] = []
    if options.inside:  # first: the log check must not judge what this run's probes leave in the log
        results += run_inside(t, options, settings)
    if options.probes:
        results += run_probes(t, options, settings)
    results += run_dns(t, options, settings)
    return results


def run_all(targets: Sequence[Target], options: AuditOptions) -> list[CheckResult]:
    """Every host concurrently; one broken host never hides the others."""

    def one(t: Target) -> list[CheckResult]:
        try:
            return run_host(t, options)
        except Exception as e:
            return [
                CheckResult(
                    "audit.host",
                    t.name,
                    Status.ERROR,
                    f"audit failed: {type(e).__name__}: {e}",
                    Severity.HIGH,
                    section="audit",
                )
            ]

    return in_parallel(one, list(targets))
