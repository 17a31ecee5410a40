"""One deploy at a time per host (issue 6, concurrency): a lock held on the host by the deploy's own SSH
connection.

Why a held process rather than a lock file the deploy creates and removes: a deploy that is killed
(SIGKILL, a lost network) cannot remove a file, and a stale lock would then block every later deploy,
which is the opposite of what an interrupted deploy needs (a re-run that converges). Here the deploy opens
one extra SSH channel that takes `flock -n` on LOCK and then runs `cat`: `cat` lives until the channel
closes, i.e. until the deploy disconnects, ends or dies, and the kernel drops the lock with it. A second
deploy's `flock -n` fails at once, and that deploy stops with "deploy already running" before it changes
anything. Costs one channel open on an already open connection; no operation, so a no-change run still
reports no change.

Hosts reached without SSH (pyinfra's @local, @docker, ...) are not locked.
"""

from __future__ import annotations

import posixpath
import shlex
import time
import weakref
from typing import Any

DEFAULT_LOCK_PATH = "/var/lib/pyinfra-mailserver/deploy.lock"
_HELD: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class DeployLocked(Exception):
    """Another deploy holds this host's lock."""


def lock_command(path: str, sudo: bool = False) -> str:
    """Shell run on the host: prints LOCKED and holds the lock until stdin closes, or prints BUSY.

    The shell opens the lock file on fd 9, takes the lock on it and becomes `cat`, which inherits fd 9:
    two programs (flock, cat) and no `mkdir` once the directory exists. `flock -n` exits 1 only when
    the lock is taken; anything else (no flock on the host) is reported as such, not as a busy host.
    """
    d, p = shlex.quote(posixpath.dirname(path)), shlex.quote(path)
    inner = (
        f"umask 077; [ -d {d} ] || mkdir -p {d} || exit 1; exec 9>>{p} || exit 1; "
        "if flock -n 9; then echo LOCKED; exec cat >/dev/null; "
        "elif [ $? -eq 1 ]; then echo BUSY; else echo NOFLOCK; fi"
    )
    cmd = f"sh -c {shlex.quote(inner)}"
    return f"sudo -n {cmd}" if sudo else cmd


def acquire(host: Any, path: str | None = None, timeout: float = 30) -> bool:
    """Take the deploy lock of `host` for as long as its connection lives.

    Returns False when the host is not reached over SSH (nothing to lock); raises DeployLocked when
    another deploy holds the lock. Idempotent for one host object.
    """
    if host in _HELD:
        return True
    client = getattr(getattr(host, "connector", None), "client", None)
    transport = client.get_transport() if client is not None else None
    if transport is None:
        return False
    path = path or str(host.data.get("mailserver_lock_path") or DEFAULT_LOCK_PATH)
    sudo = bool(host.data.get("_sudo")) and host.data.get("ssh_user") not in (None, "root")
    chan = transport.open_session()
    chan.settimeout(timeout)
    chan.exec_command(lock_command(path, sudo))
    answer = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in answer and time.monotonic() < deadline:
        data = chan.recv(64)
        if not data:
            break
        answer += data
    word = answer.decode(errors="replace").strip()
    if word == "LOCKED":
        chan.settimeout(None)
        _HELD[host] = chan
        return True
    chan.close()
    if word == "BUSY":
        raise DeployLocked(
            f"{host.name}: deploy already running (another deploy holds {path}); "
            "wait for it to finish and run again"
        )
    if word == "NOFLOCK":
        raise DeployLocked(
            f"{host.name}: cannot take the deploy lock {path}: the host has no working "
            "`flock` (util-linux); install it and run again"
        )
    raise DeployLocked(f"{host.name}: could not take the deploy lock {path} (answer {word!r})")


def release(host: Any) -> None:
    """Give the lock back before the connection ends (it goes anyway when the connection closes)."""
    chan = _HELD.pop(host, None)
    if chan is not None:
        chan.close()
