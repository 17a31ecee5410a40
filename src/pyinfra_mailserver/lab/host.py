"""One lab host: overlay root + own cgroup + netns, booted by systemd-nspawn; and its teardown."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from . import cgroups, network
from .image import Image
from .state import HostState, LabError, LabState, ProcRef
from .util import run, tool, wait_for

HOSTS_HEADER = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def hosts_file(st: LabState) -> str:
    """/etc/hosts for every lab host: there is no DNS in the lab, so all names live here."""
    lines = [HOSTS_HEADER, f"{st.bridge_ip}\tcontroller.{st.domain}\tcontroller\n"]
    for h in st.sorted_hosts():
        lines.append(f"{h.ip}\t{h.fqdn}\t{h.name}\n")
    return "".join(lines)


def new_host_state(st: LabState, name: str, index: int, variant: str, image: Image) -> HostState:
    return HostState(
        name=name,
        fqdn=f"{name}.{st.domain}",
        ip=st.host_ip(index),
        variant=variant,
        release=image.release,
        image=str(image.rootfs),
        machine=f"{st.bridge}-{name}",
        netns=network.netns_name(st.bridge, name),
        veth=network.veth_name(st.bridge, name),
        host_dir=str(st.state_dir / "hosts" / name),
    )


def _write(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.chmod(path, mode)


def prepare_upper(st: LabState, h: HostState) -> None:
    """Per-host files written into the overlay's upper dir before boot (the image stays shared)."""
    hdir = Path(h.host_dir)
    if hdir.exists():
        shutil.rmtree(hdir)
    upper = hdir / "upper"
    for d in ("upper", "work", "root"):
        (hdir / d).mkdir(parents=True, exist_ok=True)
    # upper/<dir> must carry the lower dir's mode, or overlay shows the upper one (root/.ssh is 0700).
    for d, mode in (
        ("etc", 0o755),
        ("etc/ssh", 0o755),
        ("etc/apt", 0o755),
        ("etc/apt/apt.conf.d", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
    ):
        (upper / d).mkdir(parents=True, exist_ok=True)
        os.chmod(upper / d, mode)
    _write(upper / "etc/hostname", h.fqdn + "\n")
    _write(upper / "etc/mailname", h.fqdn + "\n")
    _write(upper / "etc/hosts", hosts_file(st))
    _write(upper / "etc/resolv.conf", "")
    _write(upper / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    _write(
        upper / "etc/apt/apt.conf.d/01pyinfra-mailserver-lab-proxy",
        f'Acquire::http::Proxy "{st.proxy_url}";\nAcquire::https::Proxy "DIRECT";\n',
    )
    pub = Path(str(st.key_path) + ".pub").read_text()
    _write(upper / "root/.ssh/authorized_keys", pub, 0o600)
    key = upper / "etc/ssh/ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{h.fqdn}", "-f", str(key)])


def boot(st: LabState, h: HostState) -> subprocess.Popen[bytes]:
    """Start the host: join its cgroups, private mount namespace, overlay mount, systemd-nspawn -b.

    All execs: the recorded PID ends up being systemd-nspawn itself, whose SIGTERM is a clean poweroff.
    """
    hdir = Path(h.host_dir)
    root = hdir / "root"
    overlay = f"lowerdir={h.image},upperdir={hdir / 'upper'},workdir={hdir / 'work'}"
    nspawn = [
        tool("systemd-nspawn"),
        "-b",
        "-D",
        str(root),
        "-M",
        h.machine,
        f"--hostname={h.fqdn}",
        "--register=no",  # no systemd-machined on a controller whose PID 1 is not systemd
        "--keep-unit",  # stay in the cgroup we put ourselves in (below)
        f"--network-namespace-path={network.NETNS_DIR / h.netns}",
        # nftables (fail2ban's bans) inside the host's own network namespace, which only the lab uses
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=passive",
    ]
    mount = [tool("mount"), "-t", "overlay", "overlay", "-o", overlay, str(root)]
    inner = shlex.join(mount) + " && exec " + shlex.join(nspawn)
    procs = " ".join(shlex.quote(str(Path(d) / "cgroup.procs")) for d in h.cgroups)
    script = f'for f in {procs}; do echo $$ > "$f" || exit 97; done; exec ' + shlex.join(
        [tool("unshare"), "--mount", "--propagation", "private", "--", "/bin/sh", "-c", inner]
    )
    with open(h.console_log, "ab") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal that ran `lab up`; Ctrl-C there is ours
        )
    h.proc = ProcRef.of(proc.pid)
    return proc


def create(st: LabState, h: HostState) -> subprocess.Popen[bytes]:
    """Make everything for a host and boot it. On failure, whatever was made is removed again."""
    try:
        prepare_upper(st, h)
        h.cgroups = cgroups.create_host_cgroups(st.bridge, h.name)
        network.create_host_net(st, h.netns, h.veth, h.ip)
        return boot(st, h)
    except BaseException:
        destroy(h)
        raise


def console_tail(h: HostState, lines: int = 15) -> str:
    try:
        return "\n".join(h.console_log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def destroy(h: HostState, timeout: float = 20) -> None:
    """Tear a host down: poweroff via SIGTERM to nspawn (SIGKILL after `timeout`), then its netns,
    veth, cgroups and dirs. Only the PID recorded for this host is ever signalled."""
    ref = h.proc
    if ref and ref.alive():
        # nspawn turns SIGTERM into a poweroff request to the guest's systemd, which ignores it until
        # its handlers are installed early in boot: repeat it each second rather than wait it out.
        last = 0.0

        def gone() -> bool:
            nonlocal last
            if not ref.alive():
                return True
            if time.monotonic() - last >= 1.0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ref.pid, signal.SIGTERM)
                last = time.monotonic()
            return False

        try:
            wait_for(f"{h.name} to power off", gone, timeout=timeout)
        except LabError:
            if ref.alive():
                os.kill(ref.pid, signal.SIGKILL)
                wait_for(f"{h.name} to die", lambda: not ref.alive(), timeout=10)
    h.proc = None
    # Anything still in the host's own cgroup was started by this host (e.g. nspawn was SIGKILLed and
    # left its payload behind): those, and only those, are ended too.
    cgroups.kill_members(h.cgroups)
    network.delete_host_net(h.netns, h.veth)
    for d in reversed(h.cgroups):
        cgroups.remove_tree(Path(d))
    # nspawn's per-machine propagation dir is normally removed by nspawn itself; not after SIGKILL.
    prop = Path("/run/systemd/nspawn/propagate") / h.machine
    if prop.is_dir() and not any(prop.iterdir()):
        prop.rmdir()
    root = Path(h.host_dir) / "root"
    if os.path.ismount(root):  # never recurse into a live root filesystem
        raise LabError(f"{root} is still mounted; not removing {h.host_dir}")
    shutil.rmtree(h.host_dir, ignore_errors=True)
