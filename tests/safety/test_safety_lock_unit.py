"""Issue 6 (7), without hosts: the lock's shell command holds `flock -n` until stdin closes and says BUSY
when another holder has it (run here against a local file with the real flock and sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pyinfra_mailserver.lock import lock_command


def _start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sh", "-c", lock_command(str(path))], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def test_lock_is_exclusive_and_released_with_its_session(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "deploy.lock"
    first = _start(path)
    assert first.stdout is not None and first.stdout.readline().strip() == "LOCKED"
    second = _start(path)
    out, _ = second.communicate(timeout=30)
    assert out.strip() == "BUSY"
    assert first.stdin is not None
    first.stdin.close()  # the holder's session ends
    first.wait(timeout=30)
    third = _start(path)
    assert third.stdout is not None and third.stdout.readline().strip() == "LOCKED"
    assert third.stdin is not None
    third.stdin.close()
    third.wait(timeout=30)
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_a_host_without_flock_is_not_reported_busy(tmp_path: Path) -> None:
    """Only flock's own "taken" exit means BUSY; a missing flock is said as such (the deploy then names
    the cause instead of an imaginary concurrent deploy)."""
    path = tmp_path / "deploy.lock"
    only_sh = tmp_path / "bin"
    only_sh.mkdir()
    (only_sh / "sh").symlink_to("/bin/sh")
    out = subprocess.run(
        ["/bin/sh", "-c", lock_command(str(path))],
        env={"PATH": str(only_sh)},
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert out.strip() == "NOFLOCK"
