"""`lab up --hosts 2`: real systemd hosts, own names and addresses, reached by SSH, pyinfra, testinfra."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from pyinfra_mailserver.lab.pytest_plugin import LabHost, TestLab
from pyinfra_mailserver.lab.state import default_release, load

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def two_hosts(lab: TestLab) -> list[LabHost]:
    return lab.up(2, variant="virtual")


def test_hosts_answer_ssh_with_own_names_and_addresses(two_hosts: list[LabHost]) -> None:
    assert len({h.ip for h in two_hosts}) == 2
    for h in two_hosts:
        assert h.check("hostname").strip() == h.fqdn
        assert h.check("cat /etc/mailname").strip() == h.fqdn
        assert h.check("hostname -s").strip() == h.name
        addrs = h.check("ip -4 -o addr show dev eth0")
        assert f"inet {h.ip}/" in addrs
        # Each host has its own machine-id and host key (not the image's).
        assert re.fullmatch(r"[0-9a-f]{32}\n", h.check("cat /etc/machine-id"))
    ids = {h.check("cat /etc/machine-id") for h in two_hosts}
    keys = {h.check("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1] for h in two_hosts}
    assert len(ids) == 2 and len(keys) == 2


def test_systemd_is_pid1_and_system_running(two_hosts: list[LabHost]) -> None:
    for h in two_hosts:
        assert h.check("cat /proc/1/comm").strip() == "systemd"
        state = h.run("systemctl is-system-running --wait", timeout=120).stdout.strip()
        failed = h.run("systemctl --failed --no-legend --plain").stdout
        # No degraded state is accepted: every unit of the image must start in a lab host.
        assert state == "running", f"{h.name}: {state}; failed units:\n{failed}"
        assert h.check("systemctl is-active ssh").strip() == "active"


def test_hosts_file_lists_all_hosts_and_hosts_reach_each_other(two_hosts: list[LabHost]) -> None:
    a, b = two_hosts
    for h in two_hosts:
        hosts = h.check("cat /etc/hosts")
        for other in two_hosts:
            line = rf"^{re.escape(other.ip)}\s+{re.escape(other.fqdn)}\s+{other.name}$"
            assert re.search(line, hosts, re.M), hosts
        assert "controller.lab.test" in hosts
    for src, dst in ((a, b), (b, a)):
        out = src.check(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{dst.fqdn}/22; head -c 4 <&3'")
        assert out == "SSH-", f"{src.name} -> {dst.name}:22 gave {out!r}"


def test_no_route_out_of_the_lab(two_hosts: list[LabHost]) -> None:
    """Lab hosts only see the bridge: packages come through the proxy, never straight from outside."""
    for h in two_hosts:
        assert "default" not in h.check("ip route")
        assert h.check("cat /etc/resolv.conf").strip() == ""


def test_apt_install_through_the_proxy(lab: TestLab, two_hosts: list[LabHost]) -> None:
    st = load(lab.state_dir)
    for h in two_hosts:
        assert st.proxy_url in h.check("apt-config dump Acquire::http::Proxy")
    # Both at once: parallel `apt-get update` through one apt-cacher-ng is what deploys do.
    cmd = "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q hello"
    with ThreadPoolExecutor(len(two_hosts)) as pool:
        procs = list(pool.map(lambda h: h.run(cmd, timeout=600), two_hosts))
    for h, r in zip(two_hosts, procs, strict=True):
        assert r.returncode == 0, f"{h.name}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert h.check("hello").strip() == "Hello, world!"


def test_pyinfra_reaches_lab_and_detects_systemd(lab: TestLab, two_hosts: list[LabHost]) -> None:
    r = lab.pyinfra("exec", "--", "hostname", limit=two_hosts)
    out = r.stdout + r.stderr  # pyinfra logs to stderr
    assert r.returncode == 0, out
    for h in two_hosts:
        assert f"[{h.fqdn}] {h.fqdn}" in out
    r = lab.pyinfra("fact", "systemd.SystemdStatus", limit=two_hosts)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    facts = json.loads(out[out.index("{", out.index("Fact data")) : out.rindex("}") + 1])
    for h in two_hosts:
        assert facts[h.fqdn]["ssh.service"] is True


def test_pyinfra_inventory_groups_and_data(lab: TestLab, two_hosts: list[LabHost]) -> None:
    from pyinfra_mailserver.lab.state import inventory_hosts

    groups = inventory_hosts(lab.state_dir)
    names = {n for n, _ in groups["lab"]}
    assert {h.fqdn for h in two_hosts} <= names
    assert {h.fqdn for h in two_hosts} <= {n for n, _ in groups["lab_virtual"]}
    data = dict(groups["lab"])[two_hosts[0].fqdn]
    assert data["ssh_hostname"] == two_hosts[0].ip
    assert data["ssh_user"] == "root"
    assert data["ssh_strict_host_key_checking"] == "no"
    assert data["mailserver_secrets_dir"] == str(lab.state_dir / "secrets")


def test_testinfra_reaches_lab_and_detects_systemd(two_hosts: list[LabHost]) -> None:
    for h in two_hosts:
        host = h.testinfra()
        assert host.system_info.distribution == "debian"
        assert host.system_info.codename == default_release()
        assert host.service("ssh").is_running
        assert host.service("ssh").is_enabled
        assert host.process.get(pid=1).comm == "systemd"
        assert host.socket("tcp://0.0.0.0:22").is_listening
        assert host.file("/etc/hostname").content_string.strip() == h.fqdn


def test_up_is_idempotent_and_variant_groups(lab: TestLab, two_hosts: list[LabHost]) -> None:
    before = {n: h.proc.pid for n, h in load(lab.state_dir).hosts.items() if h.proc}
    highest = max(int(n[2:]) for n in before)
    lab.manager.up(highest)  # every host mx1..mxN is up: nothing may change
    after = {n: h.proc.pid for n, h in load(lab.state_dir).hosts.items() if h.proc}
    assert after == before
    (sasl,) = lab.up(1, variant="saslauthd")
    try:
        from pyinfra_mailserver.lab.state import inventory_hosts

        groups = inventory_hosts(lab.state_dir)
        # (the session lab may hold other tests' saslauthd hosts: look only at this one)
        assert sasl.fqdn in [n for n, _ in groups["lab_saslauthd"]]
        assert sasl.fqdn not in [n for n, _ in groups["lab_virtual"]]
        # The hosts that were already up learn the new name.
        assert sasl.fqdn in two_hosts[0].check("cat /etc/hosts")
    finally:
        lab.down([sasl.name])
