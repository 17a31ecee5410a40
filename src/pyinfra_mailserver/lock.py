"""One deploy at a time per host: a lock held on the host by the deploy's own SSH connection.

Why a held process rather than a lock file the deploy creates and removes: a deploy that is killed
(SIGKILL, a lost network) cannot remove a file, and a stale lock would then block every later deploy,
which is the opposite of what an interrupted deploy needs (a re-run that converges). Here the deploy opens
one extra SSH channel that takes `flock -n` on the lock file and then runs `cat` (resources/lock.sh):
`cat` lives until the channel closes, i.e. until the deploy disconnects, ends or dies, and the kernel
drops the lock with it. A second deploy's `flock -n` fails at once, and that deploy stops with "deploy
already running" before it changes anything.

The same channel first prints what the host runs (resources/platform.sh), which the deploy needs to
render for it: the lock costs no round trip of its own. Hosts reached without SSH (pyinfra's @local,
@docker, ...) are not locked; the deploy asks `MailPlatform` instead.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from pyinfra_mailserver.engine import shell
from pyinfra_mailserver.facts import parse_os_release

DEFAULT_LOCK_PATH = "/var/lib/pyinfra-mailserver/deploy.lock"
_HELD: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class DeployLocked(Exception):
    """Another deploy holds this host's lock (or it cannot be taken)."""


def lock_command(path: str) -> str:
    """Shell run on the host: prints LOCKED and holds the lock until stdin closes, or prints BUSY (or
    NOFLOCK): resources/lock.sh."""
    return shell.command("lock", path)


def session_command(path: str, sudo: bool = False) -> str:
    """The deploy's first command on a host: what it runs (resources/platform.sh), then the lock."""
    cmd = f"{shell.command('platform')}; {lock_command(path)}"
    return f"sudo -n sh -c {shell.quote(cmd)}" if sudo else cmd


def acquire(host: Any, path: str | None = None, timeout: float = 30) -> dict[str, str] | None:
    """Take the deploy lock of `host` for as long as its connection lives; what the host runs
    (os-release keys, DOVECOT_VERSION, POSTFIX_VERSION), read on the way.

    Returns None when the host is not reached over SSH (nothing to lock); raises DeployLocked when
    another deploy holds the lock.
    """
    if host in _HELD:
        return _HELD[host][1]
    client = getattr(getattr(host, "connector", None), "client", None)
    transport = client.get_transport() if client is not None else None
    if transport is None:
        return None
    path = path or str(host.data.get("mailserver_lock_path") or DEFAULT_LOCK_PATH)
    sudo = bool(host.data.get("_sudo")) and host.data.get("ssh_user") not in (None, "root")
    chan = transport.open_session()
    chan.settimeout(timeout)
    chan.exec_command(session_command(path, sudo))
    answer = b""
    deadline = time.monotonic() + timeout
    words = ("LOCKED", "BUSY", "NOFLOCK")
    while not any(f"\n{w}\n".encode() in b"\n" + answer for w in words) and time.monotonic() < deadline:
        data = chan.recv(4096)
        if not data:
            break
        answer += data
    lines = answer.decode(errors="replace").splitlines()
    word = next((line.strip() for line in lines if line.strip() in words), lines[-1] if lines else "")
    platform = parse_os_release(line for line in lines if line.strip() not in words)
    if word == "LOCKED":
        chan.settimeout(None)
        _HELD[host] = (chan, platform)
        return platform
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
    held = _HELD.pop(host, None)
    if held is not None:
        held[0].close()
