"""`mailserver lab up|status|ssh` against the session's test lab (the CLI is what users and the demo run)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyinfra_mailserver.lab.pytest_plugin import LabHost, TestLab

pytestmark = pytest.mark.lab


def mailserver(lab: TestLab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pyinfra_mailserver.cli", "lab", "--state-dir", str(lab.state_dir), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=300
    )


def test_status_lists_hosts_with_liveness(lab: TestLab, lab_host: LabHost) -> None:
    r = mailserver(lab, "status")
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith(lab_host.name + " "))
    assert line.split() == [lab_host.name, lab_host.fqdn, lab_host.ip, "virtual", "up"]
    assert "apt proxy" in r.stdout and "(up)" in r.stdout


def test_ssh_runs_a_command(lab: TestLab, lab_host: LabHost) -> None:
    r = mailserver(lab, "ssh", lab_host.name, "--", "hostname", "&&", "id", "-un")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [lab_host.fqdn, "root"]
    r = mailserver(lab, "ssh", lab_host.fqdn, "--", "exit", "3")
    assert r.returncode == 3


def test_up_again_is_a_noop_and_prints_hosts(lab: TestLab, lab_host: LabHost) -> None:
    n = max(int(h.name[2:]) for h in lab.hosts())
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    r = mailserver(lab, "up", "--hosts", str(n))
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(
        x.split()[:4] == [lab_host.name, lab_host.fqdn, lab_host.ip, "virtual"] for x in r.stdout.splitlines()
    )
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert before == after


def test_unknown_host_exit_code(lab: TestLab, lab_host: LabHost) -> None:
    r = mailserver(lab, "ssh", "mx999", "--", "true")
    assert r.returncode == 9
    assert "no such lab host" in r.stderr
