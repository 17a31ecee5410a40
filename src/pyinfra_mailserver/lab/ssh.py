"""SSH to lab hosts with the lab key (host key checking off: lab hosts get new host keys every `up`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from .util import tool

# Only for lab hosts: they live on a private bridge and are recreated with fresh host keys, so a
# known_hosts entry would only ever be wrong. Never reuse these options for real hosts.
LAB_SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
)


def ssh_argv(key: Path | str, ip: str, command: list[str] | None = None, tty: bool = False) -> list[str]:
    argv = [tool("ssh"), "-i", str(key), *LAB_SSH_OPTIONS]
    if not tty:
        argv += ["-o", "BatchMode=yes", "-T"]
    argv.append(f"root@{ip}")
    if command:
        argv += command  # ssh joins these into one remote shell command line
    return argv


def ssh_run(
    key: Path | str, ip: str, command: str, *, input: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab host; returns the CompletedProcess (never raises on exit codes)."""
    # `input` and `stdin` are never passed together: gevent's patched subprocess refuses even stdin=None
    feed: dict[str, Any] = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(
        ssh_argv(key, ip, [command]), capture_output=True, text=True, timeout=timeout, check=False, **feed
    )
