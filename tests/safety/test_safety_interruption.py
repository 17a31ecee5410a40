"""Issue 6 (3): a deploy SIGKILLed at different operations, then re-run, converges: the re-run succeeds,
drift finds nothing, a third run changes nothing, no staging or half-installed file is left, and the
services run the config that is on disk (reloaded/restarted after its last change).

Kill points are taken from the run's own plan (`mailserver deploy --dry --json`), so they follow the
deploy's operations rather than fixed names: the first operation that changes something (nothing live
yet), the first operation after the Postfix activation (new files live, reload still to come), and the
final verification (everything done). The process is killed when pyinfra logs that it starts that
operation. Two kill points stop the `pyinfra INVENTORY deploys/deploy_mailserver.py` main job, one
`mailserver deploy`.
"""

from __future__ import annotations

import re
import signal
import subprocess
from typing import Any

import pytest
from safety_support import MAILSERVER, REPO, SafetyHost, pyinfra_exe, run_tool, stray_files

pytestmark = pytest.mark.lab

CONFIG_DIRS = ("/etc/postfix", "/etc/dovecot")


def change(i: int) -> tuple[str, ...]:
    """Data that changes main.cf (reload), Dovecot's passwd-file and /etc/aliases (postalias)."""
    return (
        f"mailserver['postfix_extra'] = {{'delay_warning_time': '{i + 2}h'}}",
        f"mailserver['virtual']['mailboxes'][0]['quota'] = '{i + 6}G'",
        f"mailserver['aliases']['safety-int-{i}'] = ['root']",
    )


def plan(sh: SafetyHost) -> list[dict[str, Any]]:
    r = sh.deploy("--dry")
    assert r["success"], r["_report"]["errors"]
    return list(r["operations"])


def kill_target(ops: list[dict[str, Any]], point: str) -> str:
    names = [o["name"] for o in ops]
    if point == "first-change":
        return next(o["name"] for o in ops if o["changed"])
    if point == "after-postfix-activation":
        i = next(i for i, n in enumerate(names) if re.search(r"activate.*postfix", n, re.I))
        return names[i + 1]
    if point == "verify":
        return next(n for n in names if "verify" in n.lower())
    raise ValueError(point)


def deploy_killed_at(sh: SafetyHost, op_name: str, tool: str, timeout: float = 300) -> str:
    """Start a deploy (`pyinfra` main job or `mailserver deploy`), SIGKILL it as it logs the start of
    `op_name`; the log up to then."""
    argv = {
        "pyinfra": [pyinfra_exe(), "-y", str(sh.dep.inventory), "deploys/deploy_mailserver.py"],
        "mailserver": [MAILSERVER, "deploy", str(sh.dep.inventory)],
    }[tool]
    p = subprocess.Popen(
        argv,
        env=sh.dep.env,
        cwd=REPO,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    seen: list[str] = []
    try:
        assert p.stderr is not None
        for line in p.stderr:  # pyinfra logs "--> Starting operation: <name>" before each operation
            seen.append(line)
            if "Starting operation" in line and line.rstrip().endswith(op_name):
                p.send_signal(signal.SIGKILL)
                break
        p.wait(timeout=timeout)
    finally:
        if p.poll() is None:  # the test failed while the deploy ran: never leave it running
            p.kill()
            p.wait()
    log = "".join(seen)
    assert p.returncode == -signal.SIGKILL, f"deploy was not killed at {op_name!r}:\n{log[-3000:]}"
    return log


def services_behind_config(sh: SafetyHost) -> list[str]:
    """Services whose last (re)start or reload is older than the newest file that requires one (from
    their own log lines: Postfix's master "reload"/"daemon started", Dovecot's "starting up"/"SIGHUP")."""
    m = sh.manifest()
    behind = []
    logged = {"postfix": r"reload -- version|daemon started", "dovecot": r"starting up|SIGHUP received"}
    for service, pattern in logged.items():
        files = [f.path for f in m.files if service in f.reload]
        if not files:
            continue
        newest = max(int(x) for x in sh.check("stat -c %Y " + " ".join(files)).split())
        # Postfix's master logs as postfix/master whichever unit runs it (postfix@- on Debian 12)
        where = "SYSLOG_IDENTIFIER=postfix/master" if service == "postfix" else "-u dovecot"
        lines = sh.check(f"journalctl -q --no-pager -o short-unix {where} | grep -E '{pattern}'; true")
        stamps = [float(line.split()[0]) for line in lines.splitlines() if line.strip()]
        if not stamps or max(stamps) < newest:
            behind.append(f"{service}: last (re)load {max(stamps, default=0):.0f} < config mtime {newest}")
    return behind


POINTS = [
    "first-change",
    "after-postfix-activation",
    "verify",
]


TOOL = {"first-change": "pyinfra", "after-postfix-activation": "mailserver", "verify": "pyinfra"}


@pytest.mark.parametrize("point", POINTS)
def test_killed_deploy_converges_on_rerun(safe_host: SafetyHost, point: str) -> None:
    sh = safe_host
    i = POINTS.index(point)
    try:
        sh.write_data(*change(i))
        target = kill_target(plan(sh), point)
        deploy_killed_at(sh, target, TOOL[point])

        again = sh.deploy()
        assert again["success"], f"re-run after kill at {target!r} failed: {again['_report']['errors']}"
        drift = run_tool([MAILSERVER, "drift", str(sh.dep.inventory), "--json"], sh.dep.env)
        assert drift.returncode == 0, f"drift after kill at {target!r}:\n{drift.stdout[-3000:]}"
        third = sh.deploy()
        assert third["success"] and third["changed"] == 0, [o for o in third["operations"] if o["changed"]]
        assert stray_files(sh.host, CONFIG_DIRS) == [], f"stray files after kill at {target!r}"
        assert services_behind_config(sh) == [], f"kill at {target!r}"
        sh.smtp_banner()
        sh.imap_greeting()
    finally:
        sh.restore()
