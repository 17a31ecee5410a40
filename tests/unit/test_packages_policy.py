"""The temporary policy-rc.d around the package install (resources/packages.sh): there while apt runs,
gone after, never ours to remove when the operator had one; checked against a fake apt-get."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from pyinfra_mailserver.engine import shell
from pyinfra_mailserver.engine.changes import POLICY_RC_D


def run(tmp_path: Path, hook: Path, apt: str, *packages: str) -> subprocess.CompletedProcess[str]:
    """packages.sh with `apt` as what `apt-get install` does (update, dpkg and debconf succeed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fakes = {
        "apt-get": f'#!/bin/sh\n[ "$1" = update ] && exit 0\n{apt}\n',
        "dpkg": "#!/bin/sh\nexit 0\n",
        "debconf-set-selections": "#!/bin/sh\ncat >/dev/null\n",
        "timeout": '#!/bin/sh\nshift\nexec "$@"\n',
        "sleep": "#!/bin/sh\nexit 0\n",
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    command = shell.command("packages", "-F", "debian", "-P", str(hook), *packages)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, check=False)


def test_hook_exists_during_the_command_and_is_removed_after(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    r = run(tmp_path, hook, f"cat {hook}; {hook} postfix start; echo rc=$?", "postfix")
    assert r.stdout == POLICY_RC_D + "rc=101\n"
    assert not hook.exists()


def test_hook_is_removed_when_the_command_fails(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    r = run(tmp_path, hook, "exit 3", "postfix")
    assert r.returncode == 3
    assert not hook.exists()


def test_an_operators_own_hook_is_left_alone(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    hook.write_text("#!/bin/sh\nexit 0\n")
    r = run(tmp_path, hook, "true", "postfix")
    assert r.returncode == 0
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"


def test_no_hook_where_the_distro_has_none() -> None:
    from dataclasses import replace

    from test_rollback import MANIFEST

    from pyinfra_mailserver import distro
    from pyinfra_mailserver.engine.operations import packages_command

    args = shlex.split(packages_command(replace(MANIFEST, distro=distro.RHEL), ["postfix"]))[3:]
    assert args == ["packages", "-F", "rhel", "postfix"]
    assert 'dnf install -y -q "$@"' in shell.script("packages")


def test_a_stale_hook_of_ours_is_taken_over_and_removed(tmp_path: Path) -> None:
    hook = tmp_path / "policy-rc.d"
    hook.write_text(POLICY_RC_D)
    assert run(tmp_path, hook, "true", "postfix").returncode == 0
    assert not hook.exists()
    hook.write_text(POLICY_RC_D)  # nothing to install: the stale hook still goes
    assert run(tmp_path, hook, "exit 9").returncode == 0
    assert not hook.exists()
