"""Small helpers shared by the lab modules: running commands, polling with a deadline, preconditions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .state import (
    EXIT_FAILURE,
    EXIT_MISSING_TOOL,
    EXIT_NO_CGROUP,
    EXIT_NOT_ROOT,
    LabError,
)

T = TypeVar("T")

# Tool -> Debian package that provides it, so a missing tool comes with the exact install line.
REQUIRED_TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "unshare": "util-linux",
    "mount": "mount",
    "apt-cacher-ng": "apt-cacher-ng",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
TOOL_PATHS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def which(tool: str) -> str | None:
    """Find a tool also in sbin dirs, which a non-login root shell may not have on PATH."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(TOOL_PATHS)
    return shutil.which(tool, path=path)


def tool(tool_name: str) -> str:
    found = which(tool_name)
    if not found:
        pkg = REQUIRED_TOOLS.get(tool_name, tool_name)
        raise LabError(
            f"missing tool {tool_name!r}; install it with:\n  apt-get install -y {pkg}", EXIT_MISSING_TOOL
        )
    return found


def run(
    argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float | None = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; on failure raise a LabError that shows what failed and why."""
    argv = [tool(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    proc = subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}\n{msg}")
    return proc


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.02) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds.

    Polling with a deadline instead of fixed sleeps: boots take 0.3 s on a quiet machine and several
    seconds on a busy CI runner, and both should work without waiting longer than needed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def ssh_banner(ip: str, port: int = 22, timeout: float = 0.5) -> bool:
    """True when sshd at ip:port sends its SSH banner (listening is not enough: sshd may still start)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def tcp_open(ip: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (network namespaces, bridges, mounts, cgroups): run it with sudo",
            EXIT_NOT_ROOT,
        )


def check_tools() -> None:
    """All tools at once, so the user gets one install line instead of one error per tool."""
    missing = sorted({pkg for t, pkg in REQUIRED_TOOLS.items() if not which(t)})
    if missing:
        raise LabError(
            "missing tools for the lab; install them with:\n  apt-get install -y " + " ".join(missing),
            EXIT_MISSING_TOOL,
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise LabError("the kernel has no overlay filesystem (modprobe overlay)", EXIT_FAILURE)


def check_cgroups() -> None:
    """The lab gives each host its own cgroup; make sure we can create one before creating anything."""
    from .cgroups import probe_cgroup_access

    problem = probe_cgroup_access()
    if problem:
        raise LabError(f"no cgroup access: {problem}", EXIT_NO_CGROUP)


# Each booted guest's systemd, journald, udev and logind hold inotify instances of the controller's
# (kernel-wide per-uid) budget; Debian's default of 128 runs out at a handful of hosts and a guest then
# fails to boot with "Too many open files". 1024 is what container hosts commonly set.
INOTIFY_INSTANCES_MIN = 1024
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def ensure_inotify_instances(minimum: int = INOTIFY_INSTANCES_MIN) -> None:
    """Raise fs.inotify.max_user_instances to `minimum` when it is lower (never lowers it)."""
    try:
        current = int(INOTIFY_SYSCTL.read_text())
        if current < minimum:
            INOTIFY_SYSCTL.write_text(f"{minimum}\n")
    except (OSError, ValueError) as exc:
        raise LabError(
            f"cannot raise fs.inotify.max_user_instances to {minimum} ({exc}); lab hosts may fail to boot: "
            f"sysctl -w fs.inotify.max_user_instances={minimum}",
            EXIT_FAILURE,
        ) from exc


def check_preconditions() -> None:
    check_root()
    check_tools()
    check_cgroups()
    ensure_inotify_instances()
