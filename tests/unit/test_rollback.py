"""A reload or restart that fails puts back every file the run replaced (configs, TLS files, saslauthd
files: whatever resources/install-files.sh backed up), restarts the mail services and fails saying so;
checked by running the activation's shell (resources/activate.sh) against a fake `systemctl` and a
backup in a temp dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pyinfra_mailserver import distro
from pyinfra_mailserver.engine.operations import activate_command
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.manifest import Manifest, Service, TlsPlan

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$CALLS"
[ "$1" = reload ] && exit 1
exit 0
"""


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    stage = tmp_path / "stage"
    stage.mkdir()
    return stage


def run(tmp_path: Path, script: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}
    r = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    return r, calls.read_text().splitlines() if calls.exists() else []


SERVICES = (Service("postfix", "postfix"), Service("dovecot", "dovecot"), Service("saslauthd", "saslauthd"))
MANIFEST = Manifest(
    "mx.example.org",
    distro.DEBIAN,
    (),
    (),
    (),
    (),
    (),
    (),
    (),
    SERVICES,
    (),
    TlsPlan("generate", "/c", "/k", None, ("mx.example.org",)),
    {},
    (),
)


def activation(stage: Path, service: str, action: str) -> str:
    s = next(x for x in SERVICES if x.name == service)
    return activate_command(MANIFEST, Stage(str(stage)), s, action, enable=False)


def test_failed_reload_restores_backed_up_and_removes_created_files(tmp_path: Path, stage: Path) -> None:
    key = tmp_path / "etc" / "ssl" / "private" / "mx.key"  # a TLS key the run replaced
    key.parent.mkdir(parents=True)
    key.write_text("new, broken\n")
    created = tmp_path / "etc" / "default" / "saslauthd-extra"  # a file the run created
    created.parent.mkdir(parents=True)
    created.write_text("new\n")
    backup = stage / "backup"
    (backup / str(key).lstrip("/")).parent.mkdir(parents=True)
    (backup / str(key).lstrip("/")).write_text("old, working\n")
    (backup / str(created).lstrip("/")).parent.mkdir(parents=True)
    (backup / (str(created).lstrip("/") + ".created")).write_text("")
    (stage / "pending-postfix").write_text("")

    r, calls = run(tmp_path, activation(stage, "postfix", "reload"))

    assert r.returncode == 1
    assert "reloading postfix failed: rolled back, 2 file(s) of the previous config restored" in r.stderr
    assert key.read_text() == "old, working\n"
    assert not created.exists()
    assert not backup.exists() and not (stage / "pending-postfix").exists()
    assert calls == ["reload postfix", "restart postfix dovecot saslauthd"]


def test_successful_reload_touches_nothing(tmp_path: Path, stage: Path) -> None:
    conf = tmp_path / "main.cf"
    conf.write_text("new\n")
    (stage / "backup" / str(conf).lstrip("/")).parent.mkdir(parents=True)
    (stage / "backup" / str(conf).lstrip("/")).write_text("old\n")
    r, calls = run(tmp_path, activation(stage, "dovecot", "restart"))
    assert r.returncode == 0, r.stderr
    assert conf.read_text() == "new\n"
    assert calls == ["restart dovecot"]
