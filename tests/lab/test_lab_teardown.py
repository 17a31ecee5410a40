"""`lab down` leaves nothing behind (processes, mounts, netns, links, cgroups); dead hosts are recreated."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyinfra_mailserver.lab import pytest_plugin
from pyinfra_mailserver.lab.cgroups import LAB_CGROUP
from pyinfra_mailserver.lab.pytest_plugin import TestLab
from pyinfra_mailserver.lab.state import load
from pyinfra_mailserver.lab.util import check_preconditions, ssh_banner, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture
def own_lab(lab: TestLab) -> Iterator[TestLab]:
    """A second lab (its own slot: bridge, subnet, state dir) whose teardown this test inspects."""
    check_preconditions()
    other = pytest_plugin._claim_slot()
    try:
        yield other
    finally:
        other.close()


def leftovers(lab: TestLab, machines: list[str]) -> list[str]:
    """Everything of this lab still visible on the controller, described for the assertion message."""
    found = []
    sdir = str(lab.state_dir)
    ps = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    for line in ps.splitlines():
        # Zombies have no args and are reaped by PID 1 in its own time; only live processes count.
        if sdir in line or any(f"-M {m} " in line or f"/run/netns/{m}" in line for m in machines):
            found.append(f"process: {line.strip()}")
    for line in Path("/proc/mounts").read_text().splitlines():
        if sdir in line or any(m in line for m in machines):
            found.append(f"mount: {line}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    found += [f"netns: {n}" for n in netns.split() if n.startswith(f"{lab.bridge}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == lab.bridge or name.startswith(f"{lab.bridge}-"):
            found.append(f"link: {name}")
    for root in Path("/sys/fs/cgroup").iterdir():
        for d in root.rglob(f"{LAB_CGROUP}/{lab.bridge}") if root.is_dir() else []:
            found.append(f"cgroup: {d}")
    hosts_dir = lab.state_dir / "hosts"
    if hosts_dir.exists():
        found += [f"host dir: {p}" for p in hosts_dir.iterdir()]
    return found


def test_down_leaves_nothing_behind(own_lab: TestLab) -> None:
    hosts = own_lab.up(2)
    st = load(own_lab.state_dir)
    machines = [h.machine for h in st.hosts.values()]
    assert all(ssh_banner(h.ip) for h in hosts)
    assert st.proxy is not None and st.proxy.alive()
    proxy_pid = st.proxy.pid
    # Before: everything is there (so the checks below are able to see it).
    before = leftovers(own_lab, machines)
    assert any(x.startswith("netns:") for x in before) and any(x.startswith("cgroup:") for x in before)
    assert any(x.startswith("link: " + own_lab.bridge) for x in before)

    own_lab.down()

    assert leftovers(own_lab, machines) == []
    assert (
        not Path(f"/proc/{proxy_pid}/cmdline").exists()
        or b"apt-cacher-ng" not in Path(f"/proc/{proxy_pid}/cmdline").read_bytes()
    )
    st = load(own_lab.state_dir)
    assert st.hosts == {} and st.proxy is None and not st.bridge_created


def test_dead_host_is_recreated_and_others_left_alone(own_lab: TestLab) -> None:
    mx1, mx2 = own_lab.up(2)
    st = load(own_lab.state_dir)
    victim, survivor = st.hosts["mx1"], st.hosts["mx2"]
    assert victim.proc and survivor.proc
    os.kill(victim.proc.pid, signal.SIGKILL)  # nspawn dies without a clean poweroff
    wait_for("mx1 to be dead", lambda: not victim.alive(), timeout=10)
    _, rows = own_lab.manager.status()
    assert {r.host.name: r.label for r in rows}["mx1"] == "dead"

    own_lab.manager.up(2)

    st2 = load(own_lab.state_dir)
    assert st2.hosts["mx2"].proc == survivor.proc
    assert st2.hosts["mx1"].proc != victim.proc
    assert ssh_banner(mx1.ip) and ssh_banner(mx2.ip)
    machines = [h.machine for h in st2.hosts.values()]
    own_lab.down(["mx1"])
    assert [h.name for h in own_lab.hosts()] == ["mx2"]
    own_lab.down()
    assert leftovers(own_lab, machines) == []


def test_failed_up_cleans_what_it_made(own_lab: TestLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A boot failing midway (here: nspawn never starts) must not leave the controller half set up."""
    from pyinfra_mailserver.lab import host as host_mod
    from pyinfra_mailserver.lab.state import EXIT_BOOT_FAILED, LabError

    real_boot = host_mod.boot
    calls = []

    def failing_boot(st, h):  # type: ignore[no-untyped-def]
        calls.append(h.name)
        if len(calls) == 2:  # the first host boots for real, the second fails
            raise LabError("boot failed on purpose", EXIT_BOOT_FAILED)
        return real_boot(st, h)

    monkeypatch.setattr(host_mod, "boot", failing_boot)
    with pytest.raises(LabError, match="on purpose"):
        own_lab.manager.up(2)
    machines = [f"{own_lab.bridge}-mx1", f"{own_lab.bridge}-mx2"]
    assert leftovers(own_lab, machines) == []
    st = load(own_lab.state_dir)
    assert st.hosts == {} and st.proxy is None and not st.bridge_created
