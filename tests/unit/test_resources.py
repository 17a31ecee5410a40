"""The shell that runs on hosts (src/pyinfra_mailserver/resources/*.sh) is shellcheck-clean POSIX sh."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pyinfra_mailserver.engine.shell import RESOURCES

SCRIPTS = sorted(RESOURCES.glob("*.sh"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_shellcheck_clean(path: object) -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        msg = "shellcheck is not installed (./scripts/bootstrap installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(msg)
        pytest.skip(msg)
    r = subprocess.run([exe, "-s", "sh", str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


def test_every_script_is_called() -> None:
    """No dead resource: each one is named by the code that runs it."""
    import pyinfra_mailserver

    code = "\n".join(p.read_text() for p in pyinfra_mailserver.PACKAGE_DIR.rglob("*.py"))
    for path in SCRIPTS:
        assert f'"{path.stem}"' in code, path.name
