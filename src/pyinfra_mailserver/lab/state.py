"""Lab state: where it lives, what it records (state.json), and the errors/exit codes the lab reports."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyinfra_mailserver import distro

DEFAULT_STATE_DIR = Path("/var/lib/pyinfra-mailserver/lab")
DEFAULT_CACHE_DIR = Path("/var/cache/pyinfra-mailserver/images")
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_BRIDGE = "mslab0"
DOMAIN = "lab.test"
VARIANTS = ("virtual", "saslauthd")
# Debian releases a lab host can run: those of the distro table (the lab is Debian-only)
RELEASES = tuple(r.release for r in distro.RELEASES[distro.Family.DEBIAN])
# Host N gets the subnet's address number HOST_OFFSET + N (mx1 = .11); .1 is the controller (bridge).
HOST_OFFSET = 10

# Exit codes: distinct per precondition so scripts and CI can tell them apart.
EXIT_FAILURE = 1
EXIT_NOT_ROOT = 3
EXIT_MISSING_TOOL = 4
EXIT_NO_CGROUP = 5
EXIT_ADDRESS_IN_USE = 6
EXIT_IMAGE_BUILD = 7
EXIT_BOOT_FAILED = 8
EXIT_NO_SUCH_HOST = 9
EXIT_NO_LAB = 10


class LabError(Exception):
    """A failure with a message meant for the user and the exit code the CLI returns for it."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def default_release() -> str:
    """The release new lab hosts run: $MAILSERVER_LAB_RELEASE, else the newest Debian of the distro
    table (what a new user deploys)."""
    return os.environ.get("MAILSERVER_LAB_RELEASE") or distro.DEBIAN.release


def state_dir_from_env() -> Path:
    """The lab state dir: `MAILSERVER_LAB_DIR` wins, so the tests and users can keep separate labs."""
    return Path(os.environ.get("MAILSERVER_LAB_DIR") or DEFAULT_STATE_DIR)


def cache_dir_from_env() -> Path:
    """The image cache dir: `MAILSERVER_LAB_CACHE` wins; shared by all labs since images are read-only."""
    return Path(os.environ.get("MAILSERVER_LAB_CACHE") or DEFAULT_CACHE_DIR)


@dataclass
class ProcRef:
    """A process the lab started: PID plus kernel start time, so a reused PID is never mistaken for ours."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcRef:
        return cls(pid=pid, start_time=proc_start_time(pid) or 0)

    def alive(self) -> bool:
        """True while the very process we started runs (not a zombie, not a reused PID)."""
        reap(self.pid)
        st = proc_stat(self.pid)
        if st is None:
            return False
        state, start = st
        return state != "Z" and start == self.start_time


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def proc_start_time(pid: int) -> int | None:
    st = proc_stat(pid)
    return st[1] if st else None


def reap(pid: int) -> None:
    """Collect a finished child so it does not linger as a zombie (no-op if it is not our child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class HostState:
    """One lab host as recorded: enough to reach it, and to tear down everything made for it."""

    name: str
    fqdn: str
    ip: str
    variant: str
    release: str
    image: str
    machine: str  # systemd-nspawn machine name, unique across labs (bridge-prefixed)
    netns: str
    veth: str
    host_dir: str  # holds upper/, work/, root/ (mount point) and console.log
    cgroups: list[str] = field(default_factory=list)  # created cgroup dirs, deepest last
    proc: ProcRef | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostState:
        d = dict(d)
        proc = d.pop("proc", None)
        return cls(**d, proc=ProcRef(**proc) if proc else None)

    @property
    def console_log(self) -> Path:
        return Path(self.host_dir) / "console.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


@dataclass
class LabState:
    """The whole lab: network settings, the apt proxy and the hosts. Persisted as state.json."""

    state_dir: Path
    subnet: str = DEFAULT_SUBNET
    bridge: str = DEFAULT_BRIDGE
    domain: str = DOMAIN
    bridge_created: bool = False
    proxy: ProcRef | None = None
    proxy_port: int = 3142
    hosts: dict[str, HostState] = field(default_factory=dict)

    # -- derived paths and addresses -------------------------------------------------------------
    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet, strict=False)

    @property
    def bridge_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def proxy_url(self) -> str:
        return f"http://{self.bridge_ip}:{self.proxy_port}/"

    def host_ip(self, index: int) -> str:
        addr = self.network.network_address + HOST_OFFSET + index
        if addr not in self.network or addr == self.network.broadcast_address:
            raise LabError(f"host number {index} does not fit in lab subnet {self.subnet}")
        return str(addr)

    def sorted_hosts(self) -> list[HostState]:
        return sorted(self.hosts.values(), key=lambda h: host_index(h.name))

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "subnet": self.subnet,
            "bridge": self.bridge,
            "bridge_ip": self.bridge_ip,
            "domain": self.domain,
            "bridge_created": self.bridge_created,
            "proxy": asdict(self.proxy) if self.proxy else None,
            "proxy_port": self.proxy_port,
            "proxy_url": self.proxy_url,
            "key_path": str(self.key_path),
            "secrets_dir": str(self.secrets_dir),
            "hosts": {n: asdict(h) for n, h in sorted(self.hosts.items())},
        }

    def save(self) -> None:
        """Write state.json atomically (temp file + rename): a crash never leaves half a state."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, self.state_file)


def host_index(name: str) -> int:
    """`mx3` -> 3; lab host names are always `mx<N>`."""
    if not name.startswith("mx") or not name[2:].isdigit():
        raise LabError(f"not a lab host name: {name!r} (lab hosts are mx1, mx2, ...)", EXIT_NO_SUCH_HOST)
    return int(name[2:])


def load(state_dir: Path | str | None = None) -> LabState:
    """Read the lab state (an empty lab if none was recorded yet). Used by inventories/lab.py."""
    sdir = Path(state_dir) if state_dir else state_dir_from_env()
    st = LabState(state_dir=sdir)
    path = st.state_file
    if not path.exists():
        return st
    raw = json.loads(path.read_text())
    st.subnet = raw.get("subnet", st.subnet)
    st.bridge = raw.get("bridge", st.bridge)
    st.domain = raw.get("domain", st.domain)
    st.bridge_created = bool(raw.get("bridge_created", False))
    st.proxy = ProcRef(**raw["proxy"]) if raw.get("proxy") else None
    st.proxy_port = int(raw.get("proxy_port", st.proxy_port))
    st.hosts = {n: HostState.from_dict(h) for n, h in raw.get("hosts", {}).items()}
    return st


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one lab: two concurrent runs would race for names, addresses and links."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o755)
    with open(state_dir / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def inventory_hosts(state_dir: Path | str | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """pyinfra inventory groups for the lab: `lab` (all), `lab_virtual`, `lab_saslauthd`.

    Host name = FQDN; data carries the SSH settings (host key checking off: lab hosts get fresh host
    keys on every `up`, and they are only reachable on the lab bridge) and the lab's secrets dir.
    """
    st = load(state_dir)
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {"lab": []}
    for variant in VARIANTS:
        groups[f"lab_{variant}"] = []
    for h in st.sorted_hosts():
        data: dict[str, Any] = {
            "ssh_hostname": h.ip,
            "ssh_user": "root",
            "ssh_key": str(st.key_path),
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
            "ssh_look_for_keys": False,
            "ssh_allow_agent": False,
            "lab_ip": h.ip,
            "lab_name": h.name,
            "lab_fqdn": h.fqdn,
            "lab_variant": h.variant,
            "lab_release": h.release,
            "lab_bridge_ip": st.bridge_ip,
            "mailserver_secrets_dir": str(st.secrets_dir),
        }
        groups["lab"].append((h.fqdn, data))
        groups.setdefault(f"lab_{h.variant}", []).append((h.fqdn, data))
    return groups
