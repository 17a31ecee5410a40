"""Preconditions of `mailserver lab`: clear messages and distinct exit codes, before anything is made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_mailserver.lab import cgroups, util
from pyinfra_mailserver.lab.state import (
    EXIT_ADDRESS_IN_USE,
    EXIT_MISSING_TOOL,
    EXIT_NO_CGROUP,
    EXIT_NOT_ROOT,
    LabError,
)

MAILSERVER = [sys.executable, "-m", "pyinfra_mailserver.cli"]


def test_not_root_is_refused_with_its_exit_code(tmp_path: Path) -> None:
    argv = [*MAILSERVER, "lab", "--state-dir", str(tmp_path / "lab"), "up"]
    if os.geteuid() == 0:  # drop to nobody to see what a normal user gets
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == EXIT_NOT_ROOT, r.stderr
    assert "needs root" in r.stderr


def test_missing_tool_names_the_apt_get_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = util.which
    monkeypatch.setattr(util, "which", lambda t: None if t in ("debootstrap", "systemd-nspawn") else real(t))
    with pytest.raises(LabError) as e:
        util.check_tools()
    assert e.value.exit_code == EXIT_MISSING_TOOL
    assert "apt-get install -y debootstrap systemd-container" in str(e.value)


def test_no_cgroup_access_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path / "no-cgroups")
    with pytest.raises(LabError) as e:
        util.check_cgroups()
    assert e.value.exit_code == EXIT_NO_CGROUP
    assert "no cgroup access" in str(e.value)


@pytest.mark.lab
def test_subnet_in_use_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    """127.0.0.0/24 overlaps lo's 127.0.0.1/8 on every machine: the lab must refuse and create nothing."""
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("lab tests need root")
        pytest.skip("lab tests need root")
    sdir = tmp_path / "lab"
    argv = [
        *MAILSERVER,
        "lab",
        "--state-dir",
        str(sdir),
        "up",
        "--subnet",
        "127.0.0.0/24",
        "--bridge",
        "mschk0",
    ]
    r = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == EXIT_ADDRESS_IN_USE, r.stdout + r.stderr
    assert "address already in use" in r.stderr and "lo" in r.stderr
    assert not Path("/sys/class/net/mschk0").exists()


@pytest.mark.lab
def test_foreign_bridge_is_refused(tmp_path: Path) -> None:
    """An existing interface with the lab's bridge name that this lab did not make is never adopted."""
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("lab tests need root")
        pytest.skip("lab tests need root")
    subprocess.run(["ip", "link", "add", "mschk1", "type", "bridge"], check=True)
    try:
        argv = [*MAILSERVER, "lab", "--state-dir", str(tmp_path / "lab"), "up", "--bridge", "mschk1"]
        argv += ["--subnet", "10.213.99.0/24"]
        r = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        assert r.returncode == EXIT_ADDRESS_IN_USE, r.stdout + r.stderr
        assert "already exists" in r.stderr
    finally:
        subprocess.run(["ip", "link", "del", "mschk1"], check=True)
