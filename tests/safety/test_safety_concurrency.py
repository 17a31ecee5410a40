"""Issue 6 (7): two deploys against the same host never interleave; the second stops with "deploy
already running" before it changes anything (`pyinfra_mailserver.lock`: a flock held on the host by the
deploy's SSH connection, so a killed deploy never leaves a stale lock).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from safety_support import MAILSERVER, REPO, SafetyHost, pyinfra_exe, run_tool

from pyinfra_mailserver.lab.ssh import ssh_argv
from pyinfra_mailserver.lock import DEFAULT_LOCK_PATH, lock_command

pytestmark = pytest.mark.lab


@pytest.fixture
def lock_holder(safe_host: SafetyHost) -> Iterator[subprocess.Popen[str]]:
    """Another deploy, as the host sees it: a process holding the deploy lock over its own SSH session."""
    h = safe_host.host
    p = subprocess.Popen(
        ssh_argv(h.key_path, h.ip, [lock_command(DEFAULT_LOCK_PATH)]),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "LOCKED"
        yield p
    finally:
        if p.stdin:
            p.stdin.close()  # the session ends: the lock goes with it
        p.wait(timeout=30)


def test_deploy_refused_while_another_holds_the_lock(
    safe_host: SafetyHost, lock_holder: subprocess.Popen[str]
) -> None:
    sh = safe_host
    try:
        sh.write_data("mailserver['aliases']['safety-lock'] = ['root']")
        refused = sh.deploy()
        text = (refused.get("error") or "") + "\n".join(refused["_report"]["errors"]) + refused["_stderr"]
        assert not refused["success"] and "deploy already running" in text, text[-3000:]
        assert refused["changed"] == 0
        r = run_tool([pyinfra_exe(), "-y", str(sh.dep.inventory), "deploys/deploy_mailserver.py"], sh.dep.env)
        assert r.returncode != 0 and "deploy already running" in r.stdout + r.stderr
        assert sh.run("grep -q '^safety-lock:' /etc/aliases").returncode != 0, "aliases changed"
        lock_holder.stdin.close()  # type: ignore[union-attr]
        lock_holder.wait(timeout=30)
        after = sh.deploy()
        assert after["success"], after["_report"]["errors"]
    finally:
        sh.restore()


def test_two_deploys_at_once_one_is_refused(safe_host: SafetyHost) -> None:
    sh = safe_host
    try:
        sh.write_data(
            "mailserver['aliases']['safety-twice'] = ['root']",
            "mailserver['postfix_extra'] = {'delay_warning_time': '9h'}",
        )
        argv = [MAILSERVER, "deploy", str(sh.dep.inventory), "--json"]
        procs = [
            subprocess.Popen(
                argv,
                env=sh.dep.env,
                cwd=REPO,
                text=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        results: list[dict[str, Any]] = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            report = json.loads(out)
            results.append({"exit": p.returncode, "host": report["hosts"][0], "log": err + out})
        ok = [r for r in results if r["host"]["success"]]
        refused = [r for r in results if "deploy already running" in r["log"]]
        assert len(ok) == 1 and len(refused) == 1, [(r["exit"], r["host"]["error"]) for r in results]
        assert refused[0]["exit"] != 0 and refused[0]["host"]["changed"] == 0
    finally:
        sh.restore()
