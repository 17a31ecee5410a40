"""The lab's base image: debootstrap from the machine's own mirror, built once, cached by recipe hash."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .state import EXIT_IMAGE_BUILD, LabError, cache_dir_from_env
from .util import run, tool

# Bump when the build steps below change in a way the recipe dict does not capture.
RECIPE_VERSION = 2
# What a lab host needs to be a small real Debian host that pyinfra and testinfra can drive; not the
# mail stack (installing that is the deploy's job, and the thing under test).
INCLUDE = (
    "openssh-server",
    "python3",
    "iproute2",
    "procps",
    "ca-certificates",
    "systemd",
    "systemd-sysv",
    "dbus",
    "less",
)

# Baked into the image. apt goes through the lab's proxy (set per host, since its address depends on
# the lab); these make it robust when several hosts update at once through one apt-cacher-ng.
APT_CONF = """\
// pyinfra-mailserver lab: robust apt through the lab's apt proxy
Acquire::http::Pipeline-Depth "0";
Acquire::Retries "5";
Acquire::http::Timeout "30";
Acquire::https::Timeout "30";
Acquire::Languages "none";
"""
SSHD_CONF = """\
# pyinfra-mailserver lab: one fresh ed25519 host key per host; no DNS in the lab, so no reverse lookups
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
PermitRootLogin prohibit-password
"""
# Timers that would start apt or disk jobs in the background and fight the tests for the dpkg lock.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer")


@dataclass(frozen=True)
class Mirror:
    """The machine's configured Debian archive and (if any) security archive URIs."""

    archive: str
    security: str | None


def _source_uris() -> list[str]:
    uris: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for line in Path(path).read_text().splitlines():
            m = re.match(r"^\s*URIs:\s*(.+)$", line, re.IGNORECASE)
            if m:
                uris.extend(m.group(1).split())
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(path):
            continue
        for line in Path(path).read_text().splitlines():
            # deb [opts] URI suite components
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", line)
            if m:
                uris.append(m.group(1))
    return [u.rstrip("/") for u in uris if u.startswith(("http://", "https://"))]


def detect_mirror() -> Mirror:
    """Read the mirror from the machine's apt sources at run time: never a hard-coded address, since
    on many machines (like CI runners) only the configured mirror is reachable."""
    uris = _source_uris()
    security = next((u for u in uris if "security" in u), None)
    archive = next((u for u in uris if "security" not in u), None)
    if not archive:
        raise LabError(
            "cannot find a Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources",
            EXIT_IMAGE_BUILD,
        )
    return Mirror(archive=archive, security=security)


def sources_list(mirror: Mirror, release: str) -> str:
    lines = [f"deb {mirror.archive} {release} main", f"deb {mirror.archive} {release}-updates main"]
    if mirror.security:
        lines.append(f"deb {mirror.security} {release}-security main")
    return "\n".join(lines) + "\n"


def recipe(release: str, mirror: Mirror) -> dict[str, object]:
    """Everything the image depends on: its hash names the cache entry, so a change means a new image."""
    return {
        "version": RECIPE_VERSION,
        "release": release,
        "variant": "minbase",
        "include": list(INCLUDE),
        "mirror": mirror.archive,
        "sources": sources_list(mirror, release),
        "apt_conf": APT_CONF,
        "sshd_conf": SSHD_CONF,
        "masked": list(MASKED_UNITS),
        "arch": os.uname().machine,
    }


def recipe_hash(r: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A built image in the cache; `rootfs` is the read-only lower layer of every host's overlay."""

    path: Path
    release: str
    hash: str

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


@contextlib.contextmanager
def _build_lock(cache: Path, h: str) -> Iterator[None]:
    """Two `lab up` at once (a user's and the tests') must not both build the same image."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{h}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached(release: str, cache_dir: Path | None = None) -> Image | None:
    cache = cache_dir or cache_dir_from_env()
    r = recipe(release, detect_mirror())
    h = recipe_hash(r)
    path = cache / h
    if (path / "recipe.json").exists() and (path / "rootfs" / "usr" / "bin").is_dir():
        return Image(path=path, release=release, hash=h)
    return None


def ensure_image(release: str, cache_dir: Path | None = None, log: bool = True) -> tuple[Image, float | None]:
    """Return the cached image for `release`, building it first if needed (returns build seconds).

    The build goes into a temp dir next to the cache entry and is renamed into place only when
    complete, so an interrupted build never leaves a half image that later runs would trust.
    """
    cache = cache_dir or cache_dir_from_env()
    mirror = detect_mirror()
    r = recipe(release, mirror)
    h = recipe_hash(r)
    final = cache / h
    with _build_lock(cache, h):
        img = cached(release, cache)
        if img:
            return img, None
        if log:
            print(f"lab: building base image {release} from {mirror.archive} (once; cached in {final})")
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{h}-", dir=cache))
        try:
            _build(tmp, release, mirror, r)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        took = time.monotonic() - t0
        if log:
            print(f"lab: base image built in {took:.0f}s")
        return Image(path=final, release=release, hash=h), took


def _build(tmp: Path, release: str, mirror: Mirror, r: dict[str, object]) -> None:
    root = tmp / "rootfs"
    logf = tmp / "debootstrap.log"
    with open(logf, "w") as out:
        import subprocess

        proc = subprocess.run(
            [
                tool("debootstrap"),
                "--variant=minbase",
                "--include=" + ",".join(INCLUDE),
                release,
                str(root),
                mirror.archive,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=1800,
        )
    if proc.returncode != 0:
        tail = "\n".join(logf.read_text().splitlines()[-15:])
        raise LabError(f"debootstrap failed ({proc.returncode}); last lines:\n{tail}", EXIT_IMAGE_BUILD)
    _customise(root, release, mirror)
    (tmp / "recipe.json").write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")


def _customise(root: Path, release: str, mirror: Mirror) -> None:
    """Turn the debootstrap tree into a lab host template (per-host files are written at `up`)."""
    (root / "etc/apt/sources.list").write_text(sources_list(mirror, release))
    (root / "etc/apt/apt.conf.d/80pyinfra-mailserver-lab").write_text(APT_CONF)
    # dpkg fsyncs every file; pointless in throwaway hosts and the slowest part of installing.
    (root / "etc/dpkg/dpkg.cfg.d/pyinfra-mailserver-lab").write_text("force-unsafe-io\n")
    (root / "etc/ssh/sshd_config.d/pyinfra-mailserver-lab.conf").write_text(SSHD_CONF)
    # Host keys and machine-id must be per host; each host gets fresh ones in its own upper dir.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to("/dev/null")
    # No DNS in the lab: an empty resolv.conf makes lookups fail at once instead of stalling.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("")
    # The equivalent of `apt-get clean`: downloaded .debs are dead weight in the lower layer.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for binf in (root / "var/cache/apt").glob("*.bin"):
        binf.unlink()
    run(["chroot", str(root), "/bin/true"])  # sanity: the tree is executable
