"""Per-host cgroups: each lab host gets its own, so booted guests never share one (and can be measured)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
LAB_CGROUP = "pyinfra-mailserver-lab"
# v1 hierarchies we move hosts into (when mounted). name=systemd and the unified (v2) tree are what
# the guest's systemd uses for its own units: without a cgroup per host, all `--keep-unit` containers
# share one and guests step on each other (one of five booted "degraded" in a trial). memory and pids
# give per-host accounting (the bench reads memory.usage_in_bytes).
V1_CONTROLLERS = ("systemd", "memory", "pids")


def _current_paths() -> dict[str, str]:
    """Our own cgroup path per hierarchy mount dir name, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            paths["unified"] = path
            continue
        for ctrl in ctrls.split(","):
            paths[ctrl.removeprefix("name=")] = path
    return paths


def hierarchies() -> list[Path]:
    """Mounted hierarchy roots the lab uses: /sys/fs/cgroup itself on pure cgroup2 machines."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    roots = [CGROUP_ROOT / c for c in V1_CONTROLLERS if (CGROUP_ROOT / c / "cgroup.procs").exists()]
    if (CGROUP_ROOT / "unified" / "cgroup.procs").exists():
        roots.append(CGROUP_ROOT / "unified")
    return roots


def lab_parent_dirs(lab_key: str) -> list[Path]:
    """The per-lab cgroup dir in each hierarchy, under the caller's own cgroup (never above it)."""
    current = _current_paths()
    dirs = []
    for root in hierarchies():
        key = "unified" if root in (CGROUP_ROOT, CGROUP_ROOT / "unified") else root.name
        rel = current.get(key, "/").lstrip("/")
        dirs.append(root / rel / LAB_CGROUP / lab_key)
    return dirs


def create_host_cgroups(lab_key: str, host: str) -> list[str]:
    """Make the host's cgroup in each hierarchy; returns their cgroup.procs files' dirs."""
    made = []
    for parent in lab_parent_dirs(lab_key):
        d = parent / host
        d.mkdir(parents=True, exist_ok=True)
        made.append(str(d))
    return made


def probe_cgroup_access() -> str | None:
    """None if we can create (and remove) a cgroup in every hierarchy the lab needs, else why not."""
    roots = hierarchies()
    if not roots:
        return f"no cgroup hierarchy mounted under {CGROUP_ROOT}"
    for parent in lab_parent_dirs("probe"):
        probe = parent / f"p{os.getpid()}"
        try:
            probe.mkdir(parents=True, exist_ok=True)
            probe.rmdir()
            for p in (parent, parent.parent):
                with contextlib.suppress(OSError):
                    p.rmdir()
        except OSError as e:
            return f"cannot create {probe}: {e.strerror}"
    return None


def remove_tree(path: Path, timeout: float = 10.0) -> None:
    """Remove a cgroup dir and the sub-cgroups the guest made, deepest first.

    rmdir fails with EBUSY while a process is still being torn down inside, so poll until the
    deadline instead of guessing a sleep.
    """
    deadline = time.monotonic() + timeout
    while path.exists():
        subdirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        try:
            for d in [*subdirs, path]:
                if d.exists():
                    d.rmdir()
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"cannot remove cgroup {path}: {e.strerror}") from e
            time.sleep(0.05)


def members(cgroup_dirs: list[str]) -> set[int]:
    """PIDs anywhere in the given cgroup subtrees."""
    pids: set[int] = set()
    for d in cgroup_dirs:
        root = Path(d)
        if not root.is_dir():
            continue
        for procs in [root / "cgroup.procs", *root.rglob("cgroup.procs")]:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def kill_members(cgroup_dirs: list[str], timeout: float = 10.0) -> None:
    """SIGKILL whatever is left inside a host's cgroups, and wait until they are empty."""
    deadline = time.monotonic() + timeout
    while True:
        pids = members(cgroup_dirs)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"processes {sorted(pids)} survive in {cgroup_dirs}")
        time.sleep(0.05)


def remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def memory_usage(cgroup_dirs: list[str]) -> int | None:
    """Bytes charged to the host's memory cgroup (v1 memory.usage_in_bytes or v2 memory.current)."""
    for d in cgroup_dirs:
        for f in ("memory.usage_in_bytes", "memory.current"):
            p = Path(d) / f
            if p.exists():
                with contextlib.suppress(OSError, ValueError):
                    return int(p.read_text())
    return None


def memory_stat(cgroup_dirs: list[str]) -> dict[str, int]:
    for d in cgroup_dirs:
        p = Path(d) / "memory.stat"
        if p.exists():
            out = {}
            for line in p.read_text().splitlines():
                k, _, v = line.partition(" ")
                with contextlib.suppress(ValueError):
                    out[k] = int(v)
            return out
    return {}
