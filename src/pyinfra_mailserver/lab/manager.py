"""The lab as a whole: `up` (idempotent), `down`, `status`, used by the CLI, the pytest plugin and bench."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import cgroups, host, network, proxy
from .image import Image, ensure_image
from .ssh import ssh_run
from .state import (
    EXIT_BOOT_FAILED,
    EXIT_NO_SUCH_HOST,
    RELEASES,
    VARIANTS,
    HostState,
    LabError,
    LabState,
    default_release,
    host_index,
    load,
    locked,
    state_dir_from_env,
)
from .util import check_preconditions, check_root, run, ssh_banner, wait_for

BOOT_TIMEOUT = 90.0  # generous for a loaded CI runner; a quiet machine answers in well under 1 s


@dataclass
class HostStatus:
    host: HostState
    running: bool  # the recorded nspawn process is alive
    ssh: bool  # sshd answers on port 22

    @property
    def label(self) -> str:
        if self.running and self.ssh:
            return "up"
        return "booting/no-ssh" if self.running else "dead"


class Lab:
    """A lab = one state dir (its own bridge, subnet, apt proxy, key and hosts)."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        subnet: str | None = None,
        bridge: str | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else state_dir_from_env()
        self.subnet = subnet or os.environ.get("MAILSERVER_LAB_SUBNET")
        self.bridge = bridge or os.environ.get("MAILSERVER_LAB_BRIDGE")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.last_image_build_seconds: float | None = None

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> LabState:
        """The recorded state; network settings given to this Lab apply while nothing exists yet."""
        st = load(self.state_dir)
        idle = not st.hosts and not st.bridge_created and st.proxy is None
        if idle:
            st.subnet = self.subnet or st.subnet
            st.bridge = self.bridge or st.bridge
        elif (self.subnet and self.subnet != st.subnet) or (self.bridge and self.bridge != st.bridge):
            raise LabError(
                f"this lab already runs on {st.bridge} {st.subnet}; run `mailserver lab down` before "
                "changing --subnet/--bridge"
            )
        network.veth_name(st.bridge, "mx99")  # fail early on a bridge name too long for veth names
        return st

    def _ensure_key(self, st: LabState) -> None:
        """The lab key (0600) and the secrets dir (0700) other parts of the product write into."""
        st.state_dir.mkdir(parents=True, exist_ok=True)
        st.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(st.secrets_dir, 0o700)
        if not st.key_path.exists() or not Path(str(st.key_path) + ".pub").exists():
            for p in (st.key_path, Path(str(st.key_path) + ".pub")):
                p.unlink(missing_ok=True)
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "pyinfra-mailserver-lab",
                    "-f",
                    str(st.key_path),
                ]
            )
        os.chmod(st.key_path, 0o600)

    # -- up ---------------------------------------------------------------------------------------
    def up(self, count: int = 1, release: str | None = None, variant: str = "virtual") -> list[HostState]:
        """Make sure hosts mx1..mx<count> are up (a no-op for those that already are). Returns all hosts
        mx1..mx<count>."""
        return self._ensure([f"mx{i}" for i in range(1, count + 1)], release, variant)

    def add(self, count: int = 1, release: str | None = None, variant: str = "virtual") -> list[HostState]:
        """Add `count` fresh hosts with the next free numbers (what tests want: hosts nobody touched)."""
        st = load(self.state_dir)
        start = max((host_index(n) for n in st.hosts), default=0) + 1
        return self._ensure([f"mx{i}" for i in range(start, start + count)], release, variant)

    def _ensure(self, names: list[str], release: str | None, variant: str) -> list[HostState]:
        if variant not in VARIANTS:
            raise LabError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        release = release or default_release()
        if release not in RELEASES:
            raise LabError(f"unknown release {release!r}; choose one of {', '.join(RELEASES)}")
        check_preconditions()
        with locked(self.state_dir):
            st = self.state()
            network.preflight(st)
            self._ensure_key(st)
            image, self.last_image_build_seconds = ensure_image(release, self.cache_dir)
            made: list[HostState] = []
            had_infra = st.bridge_created or st.proxy is not None
            try:
                network.ensure_bridge(st)
                proxy.ensure_proxy(st)
                for name in names:
                    old = st.hosts.get(name)
                    if old and old.alive():
                        if old.variant != variant:
                            print(f"lab: {name} is already up as variant {old.variant!r}; left as it is")
                        continue
                    if old:
                        print(f"lab: {name} was recorded but is not running; recreating it")
                        host.destroy(old)
                        del st.hosts[name]
                        st.save()
                    h = self._new_host(st, name, variant, image)
                    made.append(h)
                self._start(st, made)
                if made:
                    self._refresh_hosts_files(st, skip={h.name for h in made})
            except BaseException:
                self._undo(st, made, had_infra)
                raise
            return [st.hosts[n] for n in names]

    def _new_host(self, st: LabState, name: str, variant: str, image: Image) -> HostState:
        h = host.new_host_state(st, name, host_index(name), variant, image)
        st.hosts[name] = h  # before prepare: /etc/hosts of every new host lists all of them
        return h

    def _start(self, st: LabState, new: list[HostState]) -> None:
        """Boot all new hosts at once, then wait for each sshd (booting in parallel is what makes five
        hosts cost about as much as one)."""
        procs = {}
        for h in new:
            procs[h.name] = host.create(st, h)
            st.save()  # recorded at once: a crash from here on still lets `down` find everything
        for h in new:
            proc = procs[h.name]

            def probe(h: HostState = h, proc=proc) -> bool:  # type: ignore[no-untyped-def]
                if proc.poll() is not None:
                    raise LabError(
                        f"{h.name}: systemd-nspawn exited with {proc.returncode}:\n{host.console_tail(h)}",
                        EXIT_BOOT_FAILED,
                    )
                return ssh_banner(h.ip)

            try:
                wait_for(f"sshd on {h.name} ({h.ip})", probe, timeout=BOOT_TIMEOUT)
            except LabError as e:
                raise LabError(f"{e}\nconsole of {h.name}:\n{host.console_tail(h)}", EXIT_BOOT_FAILED) from e

    def _undo(self, st: LabState, made: list[HostState], had_infra: bool) -> None:
        """Failure or Ctrl-C in the middle of `up`: remove what this run made, leave the rest alone."""
        for h in made:
            try:
                host.destroy(h)
            finally:
                st.hosts.pop(h.name, None)
                st.save()
        if not st.hosts and not had_infra:
            self._teardown_infra(st)
        st.save()

    def _refresh_hosts_files(self, st: LabState, skip: set[str]) -> None:
        """Hosts that were already up learn the new names (there is no DNS): rewrite their /etc/hosts."""
        content = host.hosts_file(st)
        for h in st.sorted_hosts():
            if h.name in skip or not h.alive():
                continue
            r = ssh_run(st.key_path, h.ip, "cat > /etc/hosts", input=content, timeout=30)
            if r.returncode != 0:
                print(f"lab: warning: could not update /etc/hosts on {h.name}: {r.stderr.strip()}")

    # -- down -------------------------------------------------------------------------------------
    def down(self, names: list[str] | None = None) -> list[str]:
        """Destroy the named hosts, or with no names everything (hosts, proxy, bridge, netns mount,
        cgroups). Returns the names of destroyed hosts."""
        check_root()
        if not (self.state_dir / "state.json").exists():
            return []
        with locked(self.state_dir):
            st = load(self.state_dir)
            targets = list(names) if names else [h.name for h in st.sorted_hosts()]
            unknown = [n for n in targets if n not in st.hosts]
            if unknown:
                raise LabError(f"no such lab host: {', '.join(unknown)}", EXIT_NO_SUCH_HOST)
            hosts = [st.hosts[n] for n in targets]
            # Power all off at once (each takes ~1 s), then wait for and clean each.
            for h in hosts:
                if h.proc and h.proc.alive():
                    os.kill(h.proc.pid, signal.SIGTERM)
            errors = []
            for h in hosts:
                try:
                    host.destroy(h)
                except (LabError, RuntimeError, OSError) as e:
                    errors.append(f"{h.name}: {e}")
                    continue
                del st.hosts[h.name]
                st.save()
            if errors:
                raise LabError("could not tear down everything:\n" + "\n".join(errors))
            if names:
                self._refresh_hosts_files(st, skip=set())
            else:
                self._teardown_infra(st)
            st.save()
            return targets

    def _teardown_infra(self, st: LabState) -> None:
        proxy.stop_proxy(st)
        network.delete_bridge(st)
        for parent in cgroups.lab_parent_dirs(st.bridge):
            cgroups.remove_if_empty(parent)
            cgroups.remove_if_empty(parent.parent)
        network.release_netns_mount()

    # -- status -----------------------------------------------------------------------------------
    def status(self) -> tuple[LabState, list[HostStatus]]:
        st = load(self.state_dir)
        return st, [HostStatus(h, h.alive(), ssh_banner(h.ip)) for h in st.sorted_hosts()]

    def host(self, name: str) -> HostState:
        st = load(self.state_dir)
        if name not in st.hosts:
            # Accept the FQDN too, since that is the name pyinfra shows.
            by_fqdn = {h.fqdn: h for h in st.hosts.values()}
            if name in by_fqdn:
                return by_fqdn[name]
            raise LabError(f"no such lab host: {name}", EXIT_NO_SUCH_HOST)
        return st.hosts[name]


def wait_system_running(key: Path | str, ip: str, timeout: float = 60) -> str:
    """`systemctl is-system-running --wait` on a host: 'running', or 'degraded' etc. after boot."""
    t0 = time.monotonic()
    r = ssh_run(key, ip, "systemctl is-system-running --wait", timeout=timeout)
    out = r.stdout.strip()
    if not out:
        raise LabError(f"systemctl is-system-running gave nothing after {time.monotonic() - t0:.0f}s")
    return out
