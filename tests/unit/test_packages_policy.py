"""The temporary policy-rc.d around the package install: there while apt runs, gone after, never ours to
remove when the operator had one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pyinfra_mailserver.deploys.packages import POLICY_RC_D, no_starts_during


def run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


def test_hook_exists_during_the_command_and_is_removed_after(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    r = run(no_starts_during(f"cat {hook}; {hook} postfix start; echo rc=$?", str(hook)))
    assert r.stdout == POLICY_RC_D + "rc=101\n"
    assert not hook.exists()


def test_hook_is_removed_when_the_command_fails(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    r = run(no_starts_during("exit 3", str(hook)))
    assert r.returncode == 3
    assert not hook.exists()


def test_an_operators_own_hook_is_left_alone(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    hook.write_text("#!/bin/sh\nexit 0\n")
    r = run(no_starts_during("true", str(hook)))
    assert r.returncode == 0
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"


def test_no_hook_where_the_distro_has_none() -> None:
    assert no_starts_during("dnf install -y postfix", "") == "dnf install -y postfix"


def test_a_stale_hook_of_ours_is_taken_over_and_removed(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    hook.write_text(POLICY_RC_D)
    assert run(no_starts_during("true", str(hook))).returncode == 0
    assert not hook.exists()
