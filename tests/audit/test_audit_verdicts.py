"""Drift and inside-check verdicts from canned host output (no hosts): each difference, the right check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pyinfra_mailserver import distro
from pyinfra_mailserver.audit.checks import (
    HostSettings,
    check_plain_hashes,
    evaluate_inside,
    inside_commands,
    probe_account,
)
from pyinfra_mailserver.audit.remote import Section
from pyinfra_mailserver.drift import drift_commands, evaluate, sha256
from pyinfra_mailserver.facts import FileState, Snapshot, parse_packages, parse_units
from pyinfra_mailserver.manifest import (
    Account,
    Directory,
    ManagedFile,
    Manifest,
    PostfixMap,
    Service,
    TlsPlan,
)
from pyinfra_mailserver.report import CheckResult, CheckSet, Status

MAIN_CF = "myhostname = mx1.example.org\nmynetworks = 127.0.0.0/8\nrelay_password_hint = hunter2\n"
SECRET = "hunter2"


def manifest() -> Manifest:
    files = (
        ManagedFile("/etc/postfix/main.cf", MAIN_CF, service="postfix"),
        ManagedFile("/etc/postfix/sasl_passwd", f"[relay]:587 u:{SECRET}\n", mode="600", secret=True),
        ManagedFile("/etc/aliases", "postmaster: root\n"),
        ManagedFile(
            "/etc/dovecot/users",
            "alice@example.org:{ARGON2ID}xyz::::\n",
            group="dovecot",
            mode="640",
            secret=True,
        ),
    )
    return Manifest(
        hostname="mx1.example.org",
        distro=distro.DEBIAN,
        packages=("postfix", "dovecot-core"),
        debconf=(),
        groups=(),
        users=(),
        directories=(Directory("/var/spool/postfix/var/run/saslauthd", group="sasl", mode="710"),),
        files=files,
        maps=(
            PostfixMap("/etc/aliases", "hash", "postalias", "postmaster"),
            PostfixMap("/etc/postfix/sasl_passwd", "hash", "postmap", "[relay]:587"),
        ),
        services=(Service("postfix", "postfix"), Service("saslauthd", "saslauthd", reload=False)),
        ports=(),
        tls=TlsPlan(
            "generate", "/etc/ssl/certs/mx1.pem", "/etc/ssl/private/mx1.key", None, ("mx1.example.org",)
        ),
        postconf={
            "myhostname": "mx1.example.org",
            "mynetworks": "127.0.0.0/8",
            "relay_password_hint": SECRET,
        },
        postconf_master=(
            "smtp inet n - y - - smtpd",
            "submission inet n - y - - smtpd -o syslog_name=postfix/submission -o smtpd_sasl_auth_enable=yes",
        ),
        secrets=(SECRET,),
        sockets=("/var/spool/postfix/var/run/saslauthd/mux",),
        doveconf={"ssl": "required", "disable_plaintext_auth": "yes"},
        sasl_backend="saslauthd",
        accounts=(Account("bob", "system", "bob", "/home/bob/Maildir/", ("smtp-auth", "imap")),),
    )


def st(
    path: str,
    content: str | None = None,
    mode: str = "644",
    owner: str = "root",
    group: str = "root",
    mtime: int = 100,
    kind: str = "file",
) -> FileState:
    return FileState(path, kind, owner, group, mode, mtime, sha256(content) if content is not None else None)


def clean_paths(m: Manifest) -> dict[str, FileState]:
    out = {f.path: st(f.path, f.content, f.mode, f.owner, f.group) for f in m.files}
    for d in m.directories:
        out[d.path] = st(d.path, None, d.mode, d.owner, d.group, kind="directory")
    for mp in m.maps:
        out[mp.output] = st(mp.output, "db", "600", mtime=200)
    return out


def observed(m: Manifest, paths: dict[str, FileState], sec: dict[str, Section]) -> Snapshot:
    """The snapshot a host with these paths and these (old-style) unit, package and socket sections
    gives: the `units`, `packages` and `sockN` sections of the tests' hosts read as the snapshot would."""
    sockets = frozenset(s for i, s in enumerate(m.sockets) if sec.get(f"sock{i}", Section(0, [])).rc == 0)
    return Snapshot(
        packages=parse_packages(sec["packages"].lines),
        paths=paths,
        units=parse_units(sec["units"].lines),
        sockets=sockets,
    )


def clean_sections(m: Manifest) -> dict[str, Section]:
    return {
        "postconf_n": Section(0, [f"{k} = {v}" for k, v in m.postconf.items()]),
        "postconf_m": Section(
            0,
            [
                "smtp      inet  n       -       y       -       -       smtpd",
                "submission inet n - y - - smtpd -o syslog_name=postfix/submission "
                "-o smtpd_sasl_auth_enable=yes",
            ],
        ),
        "postconf_p": Section(
            0,
            [
                "submission/inet/syslog_name = postfix/submission",
                "submission/inet/smtpd_sasl_auth_enable = yes",
            ],
        ),
        "doveconf": Section(0, ["disable_plaintext_auth = yes", "ssl = required"]),
        "map0": Section(0, []),
        "map1": Section(0, []),
        "sock0": Section(0, []),
        "units": Section(0, ["postfix|active|enabled", "saslauthd|active|enabled"]),
        "packages": Section(0, ["ii |postfix", "ii |dovecot-core"]),
    }


def verdicts(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.id: r for r in results}


def test_clean_host_has_no_drift() -> None:
    m = manifest()
    res = evaluate(m, "mx1", observed(m, clean_paths(m), clean_sections(m)), {}, clean_sections(m))
    bad = [(r.id, r.message) for r in res if r.status is not Status.PASS]
    assert not bad
    assert {
        "drift.postconf",
        "drift.postconf_master",
        "drift.postconf_services",
        "drift.doveconf",
        "drift.packages",
        "drift.service[saslauthd]",
        "drift.map[/etc/aliases]",
    } <= {r.id for r in res}


def test_edited_file_shows_masked_diff_and_owner_mode() -> None:
    m = manifest()
    paths = clean_paths(m)
    edited = MAIN_CF.replace("127.0.0.0/8", "0.0.0.0/0")
    paths["/etc/postfix/main.cf"] = st("/etc/postfix/main.cf", edited, mode="666", owner="bob")
    r = verdicts(
        evaluate(
            m,
            "mx1",
            observed(m, paths, clean_sections(m)),
            {"/etc/postfix/main.cf": edited},
            clean_sections(m),
        )
    )
    f = r["drift.file[/etc/postfix/main.cf]"]
    assert f.status is Status.FAIL
    assert "content differs" in f.message and "mode 666" in f.message and "owner bob:root" in f.message
    assert "+mynetworks = 0.0.0.0/0" in f.detail and "-mynetworks = 127.0.0.0/8" in f.detail
    assert SECRET not in f.detail and "**masked**" in f.detail


def test_secret_file_is_never_diffed() -> None:
    m = manifest()
    paths = clean_paths(m)
    paths["/etc/postfix/sasl_passwd"] = st("/etc/postfix/sasl_passwd", "other", mode="600")
    r = verdicts(
        evaluate(
            m,
            "mx1",
            observed(m, paths, clean_sections(m)),
            {"/etc/postfix/sasl_passwd": "other " + SECRET},
            clean_sections(m),
        )
    )
    f = r["drift.file[/etc/postfix/sasl_passwd]"]
    assert f.status is Status.FAIL and "secret file: not shown" in f.message and f.detail == ""


def test_missing_file_and_directory() -> None:
    m = manifest()
    paths = clean_paths(m)
    del paths["/etc/aliases"], paths["/var/spool/postfix/var/run/saslauthd"]
    r = verdicts(evaluate(m, "mx1", observed(m, paths, clean_sections(m)), {}, clean_sections(m)))
    assert r["drift.file[/etc/aliases]"].status is Status.FAIL
    assert r["drift.dir[/var/spool/postfix/var/run/saslauthd]"].status is Status.FAIL


def test_postconf_changed_extra_and_secret_masked() -> None:
    m = manifest()
    sec = clean_sections(m)
    sec["postconf_n"] = Section(
        0,
        [
            "myhostname = mx1.example.org",
            "mynetworks = 0.0.0.0/0",
            "relay_password_hint = nope",
            "smtpd_banner = hi",
        ],
    )
    r = verdicts(evaluate(m, "mx1", observed(m, clean_paths(m), sec), {}, sec))
    p = r["drift.postconf"]
    assert p.status is Status.FAIL
    assert "mynetworks = '0.0.0.0/0', expected '127.0.0.0/8'" in p.detail
    assert "smtpd_banner = 'hi': not in the manifest" in p.detail
    assert SECRET not in p.detail


def test_master_doveconf_and_command_failure() -> None:
    m = manifest()
    sec = clean_sections(m)
    sec["postconf_m"] = Section(
        0,
        [
            "smtp inet n - y - - smtpd",
            "relay unix - - n - - smtp",
            "submission inet n - y - - smtpd -o syslog_name=postfix/submission -o smtpd_sasl_auth_enable=yes",
        ],
    )
    sec["postconf_p"] = Section(
        0, ["submission/inet/syslog_name = postfix/submission", "submission/inet/smtpd_sasl_auth_enable = no"]
    )
    sec["doveconf"] = Section(0, ["disable_plaintext_auth = no", "ssl = required"])
    sec["postconf_n"] = Section(1, ["postconf: fatal: open /etc/postfix/main.cf: No such file"])
    r = verdicts(evaluate(m, "mx1", observed(m, clean_paths(m), sec), {}, sec))
    assert r["drift.postconf_master"].status is Status.FAIL
    assert "unexpected: relay unix" in r["drift.postconf_master"].detail
    assert r["drift.doveconf"].status is Status.FAIL
    assert r["drift.postconf"].status is Status.ERROR
    services = r["drift.postconf_services"]
    assert "submission/inet/smtpd_sasl_auth_enable = 'no', expected 'yes'" in services.detail


def test_stale_and_unanswering_maps() -> None:
    m = manifest()
    paths = clean_paths(m)
    paths["/etc/aliases"] = st("/etc/aliases", "postmaster: root\n", mtime=300)  # newer than the .db (200)
    sec = clean_sections(m)
    sec["map1"] = Section(1, [])
    r = verdicts(evaluate(m, "mx1", observed(m, paths, sec), {}, sec))
    assert "older than" in r["drift.map[/etc/aliases]"].message
    assert "finds nothing" in r["drift.map[/etc/postfix/sasl_passwd]"].message
    assert "postalias" in r["drift.map[/etc/aliases]"].fix


def test_services_packages_sockets() -> None:
    m = manifest()
    sec = clean_sections(m)
    sec["units"] = Section(0, ["postfix|active|disabled", "saslauthd|inactive|enabled"])
    sec["packages"] = Section(0, ["ii |postfix", "rc |dovecot-core"])
    sec["sock0"] = Section(1, [])
    r = verdicts(evaluate(m, "mx1", observed(m, clean_paths(m), sec), {}, sec))
    assert "not enabled" in r["drift.service[postfix]"].message
    assert "not running" in r["drift.service[saslauthd]"].message
    assert r["drift.packages"].message == "not installed: dovecot-core"
    assert r["drift.socket[/var/spool/postfix/var/run/saslauthd/mux]"].status is Status.FAIL


def test_drift_commands_are_read_only_and_hide_map_values() -> None:
    cmds = drift_commands(manifest())
    assert cmds["map1"].endswith(">/dev/null")  # sasl_passwd values never leave the host
    joined = " ".join(cmds.values())
    for verb in ("postconf -e", "postmap /", "newaliases", "systemctl start", "systemctl restart", "rm "):
        assert verb not in joined


def test_accounts_drift() -> None:
    from dataclasses import replace

    from pyinfra_mailserver.drift import evaluate_accounts
    from pyinfra_mailserver.facts import AccountState
    from pyinfra_mailserver.manifest import Group, User

    m = replace(
        manifest(),
        groups=(Group("vmail", gid=5000),),
        users=(
            User("vmail", uid=5000, group="vmail", home="/var/vmail", system=True),
            User("bob", group=None, groups=("mail",), shell="/bin/bash", password_hash="$6$x$y"),
        ),
    )
    good = AccountState(
        users={
            "vmail": {
                "uid": 5000,
                "gid": 5000,
                "home": "/var/vmail",
                "shell": "/usr/sbin/nologin",
                "groups": [],
                "password_sha256": None,
            },
            "bob": {
                "uid": 1000,
                "gid": 1000,
                "home": "/home/bob",
                "shell": "/bin/bash",
                "groups": ["mail"],
                "password_sha256": sha256("$6$x$y"),
            },
        },
        groups={"vmail": {"gid": 5000, "members": []}},
    )
    assert all(r.status is Status.PASS for r in evaluate_accounts(m, "mx1", good))
    bad = AccountState(
        users={
            "vmail": {**good.users["vmail"], "uid": 5001, "shell": "/bin/sh"},
            "bob": {**good.users["bob"], "groups": [], "password_sha256": sha256("$6$other")},
        },
        groups={"vmail": {"gid": 5000, "members": []}},
    )
    r = verdicts(evaluate_accounts(m, "mx1", bad))
    assert "uid 5001" in r["drift.user[vmail]"].message and "shell /bin/sh" in r["drift.user[vmail]"].message
    assert "not in group(s) mail" in r["drift.user[bob]"].message
    assert "password differs" in r["drift.user[bob]"].message and "$6$" not in r["drift.user[bob]"].message
    r = verdicts(evaluate_accounts(m, "mx1", AccountState({}, {})))
    assert r["drift.user[bob]"].status is Status.FAIL and r["drift.group[vmail]"].status is Status.FAIL


# ------------------------------------------------------------------------------------------ inside


BENIGN_LINES = [
    "2026-11-22T06:15:59+0000 mx1 dovecot[3888]: master: Warning: Killed with signal 15",
    "2026-11-22T07:04:58+0000 mx2 dovecot[3722]: log(3722): Warning: Killed with signal 15 "
    "(by pid=1 uid=0 code=kill)",
    "2026-11-22T06:18:18+0000 mx1 postfix/smtpd[5271]: warning: TLS library problem: "
    "error:0A000102:SSL routines::unsupported protocol:../ssl/statem/statem_srvr.c:1664:",
]


def inside_sections(**over: Section) -> dict[str, Section]:
    now = 1_800_000_000
    base = {
        "key": Section(0, ["600|root|root|/etc/ssl/private/mx1.key"]),
        "secret_files": Section(
            0, ["600|root|root|/etc/postfix/sasl_passwd", "640|root|dovecot|/etc/dovecot/users"]
        ),
        "plain_hashes": Section(0, []),
        "saslauthd_active": Section(0, ["active"]),
        "saslauthd_socket": Section(0, []),
        "testsaslauthd": Section(0, ['0: OK "Success."']),
        "queue": Section(0, [str(now)]),
        "log": Section(0, BENIGN_LINES),
    }
    base.update(over)
    return base


def inside(**over: Section) -> dict[str, CheckResult]:
    return verdicts(evaluate_inside("mx1", manifest(), inside_sections(**over), HostSettings(), "-24h"))


def test_inside_clean() -> None:
    r = inside()
    assert not [(k, v.message) for k, v in r.items() if v.status is not Status.PASS]


def test_inside_findings() -> None:
    now = 1_800_000_000
    old = json.dumps({"queue_name": "deferred", "arrival_time": now - 3 * 86400, "queue_id": "A"})
    r = inside(
        key=Section(0, ["644|root|root|/etc/ssl/private/mx1.key"]),
        secret_files=Section(0, ["644|root|dovecot|/etc/dovecot/users"]),
        plain_hashes=Section(0, ["carol@example.org"]),
        saslauthd_active=Section(3, ["inactive"]),
        saslauthd_socket=Section(1, []),
        testsaslauthd=Section(255, ["connect() : No such file or directory"]),
        queue=Section(0, [str(now), old]),
        log=Section(0, ["x postfix/smtpd[1]: fatal: no SASL", "y postfix/qmgr[2]: warning: disk low"]),
    )
    for cid in (
        "files.private_key",
        "files.password_file[/etc/dovecot/users]",
        "auth.no_plain_hashes",
        "saslauthd.running",
        "saslauthd.socket_in_chroot",
        "saslauthd.testsaslauthd",
        "queue.oldest",
        "log.fatal_panic",
        "log.warnings",
    ):
        assert r[cid].status is Status.FAIL, cid
    assert r["queue.deferred"].status is Status.PASS  # one message is under the count threshold
    assert r["files.private_key"].severity == "critical"
    assert "carol@example.org" in r["auth.no_plain_hashes"].message
    assert "disk low" in r["log.warnings"].detail and "no SASL" in r["log.fatal_panic"].detail


def test_log_ignore_from_host_data() -> None:
    data = {"mailserver_audit": {"log_ignore": ["disk low"], "queue_deferred_max": 0}}
    settings = HostSettings.from_data(data)
    res = verdicts(
        evaluate_inside(
            "mx1",
            manifest(),
            inside_sections(log=Section(0, ["y postfix/qmgr[2]: warning: disk low"])),
            settings,
            "-1h",
        )
    )
    assert res["log.warnings"].status is Status.PASS
    assert settings.queue_deferred_max == 0


def test_queue_unreadable_is_an_error_not_a_pass() -> None:
    r = inside(queue=Section(-1, []))
    assert r["queue.deferred"].status is Status.ERROR


def test_inside_commands_quote_the_password() -> None:
    m = manifest()
    acct = m.accounts[0]
    cmds = inside_commands(m, HostSettings(), acct, "pa ss'word", "-24h")
    assert "testsaslauthd" in cmds["testsaslauthd"] and "'pa ss'\"'\"'word'" in cmds["testsaslauthd"]
    assert "cut -d: -f1" in cmds["plain_hashes"]  # hashes themselves never leave the host


def test_probe_account_from_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = manifest()
    assert probe_account(m, tmp_path, HostSettings()) == (None, None)
    (tmp_path / "bob.password").write_text("s3cret\n")
    acct, pw = probe_account(m, tmp_path, HostSettings())
    assert acct is not None and acct.login == "bob" and pw == "s3cret"
    acct, pw = probe_account(m, tmp_path, HostSettings(probe_user="zed@example.org", probe_password="x"))
    assert acct is not None and acct.login == "zed@example.org" and pw == "x"
    monkeypatch.setenv("MAILSERVER_PROBE_PASSWORD", "from-env")
    acct, pw = probe_account(m, tmp_path, HostSettings(probe_user="bob"))
    assert acct is not None and acct.kind == "system" and pw == "from-env"


def test_log_since_accepts_bare_durations() -> None:
    from pyinfra_mailserver.audit.checks import log_since

    assert log_since("6h") == "-6h" and log_since("30min") == "-30min"
    assert log_since("-24h") == "-24h" and log_since("@1795328764") == "@1795328764"
    assert log_since("2026-11-22 06:00") == "2026-11-22 06:00"


def test_families_are_looked_up_together_and_failures_stay_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host's distro family at once (one round trip each, not one after the other); a host whose
    os-release is unsupported gets its exception back, to be reported for that host only."""
    import threading

    from pyinfra_mailserver.audit import remote

    started: list[str] = []
    all_in = threading.Barrier(3, timeout=5)  # three hosts: each waits until all three lookups run

    def family(host: str, state: object, server: object) -> str:
        started.append(host)
        all_in.wait()
        if host == "bad":
            raise ValueError("unsupported distribution 'Plan 9'")
        return "debian"

    monkeypatch.setattr(remote, "_family", family)
    got = remote._families(["a", "bad", "c"], None, {"a": None, "bad": None, "c": None})
    assert sorted(started) == ["a", "bad", "c"]
    assert got["a"] == got["c"] == "debian"
    assert isinstance(got["bad"], ValueError)


def test_an_unreadable_passwd_file_is_not_reported_as_plaintext_passwords() -> None:
    """A half-deployed host without the passwd-file: the check says it could not look (exit 2), and never
    turns the shell's error message into a user with a {PLAIN} password."""
    import subprocess

    m = manifest()
    cmd = inside_commands(m, HostSettings(), None, None, "-24h")["plain_hashes"]
    missing = cmd.replace(m.distro.dovecot_passwd_file, "/nonexistent/users")
    r = subprocess.run(["sh", "-c", missing], capture_output=True, text=True, check=False)
    section = Section(r.returncode, (r.stdout + r.stderr).splitlines())
    checks = CheckSet("mx1.example.org", "audit")
    check_plain_hashes(checks, m, section)
    [res] = checks.results
    assert res.status is Status.ERROR and "not checked" in res.message
    assert "No such file" not in res.message and "plaintext passwords" not in res.message


def test_fail2ban_jails_must_all_run() -> None:
    jails = ManagedFile(
        "/etc/fail2ban/jail.d/pyinfra-mailserver.local", "[DEFAULT]\n[postfix-sasl]\n[dovecot]\n"
    )
    dovecot_filter = ManagedFile(
        "/etc/fail2ban/filter.d/pyinfra-mailserver-dovecot.conf",
        "[INCLUDES]\n[Definition]\n",
        service="fail2ban",
    )  # no jail: its sections are not looked for
    m = replace(
        manifest(),
        files=(*manifest().files, replace(jails, service="fail2ban"), dovecot_filter),
        services=(*manifest().services, Service("fail2ban", "fail2ban")),
    )

    def run(section: Section) -> CheckResult:
        sections = inside_sections(fail2ban=section)
        return verdicts(evaluate_inside("mx1", m, sections, HostSettings(), "-24h"))["fail2ban.jails"]

    ok = run(Section(0, ["Status", "|- Number of jail:\t2", "`- Jail list:\tdovecot, postfix-sasl"]))
    assert ok.status is Status.PASS, ok.message
    one = run(Section(0, ["Status", "|- Number of jail:\t1", "`- Jail list:\tpostfix-sasl"]))
    assert one.status is Status.FAIL and "dovecot" in one.message
    down = run(Section(255, ["ERROR   Failed to access socket path: /var/run/fail2ban/fail2ban.sock"]))
    assert down.status is Status.FAIL and "postfix-sasl" in down.message and "socket" in down.message
