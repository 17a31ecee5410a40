"""Lab networking: one bridge on the controller, and per host a network namespace with a veth into it."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from pathlib import Path

from .state import EXIT_ADDRESS_IN_USE, LabError, LabState
from .util import run

NETNS_DIR = Path("/run/netns")
IFNAME_MAX = 15  # kernel limit for interface names


def netns_name(bridge: str, host: str) -> str:
    """Bridge-prefixed so the tests' lab and a user's lab (both with an `mx1`) never collide."""
    return f"{bridge}-{host}"


def veth_name(bridge: str, host: str) -> str:
    name = f"{bridge}-{host}"
    if len(name) > IFNAME_MAX:
        raise LabError(f"interface name {name!r} too long: use a shorter bridge name (max 10 chars)")
    return name


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    out = run(["ip", "-j", "-4", "addr", "show"]).stdout
    result = []
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            result.append((link["ifname"], ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")))
    return result


def check_subnet_free(st: LabState) -> None:
    """Refuse a subnet that overlaps an address on another interface: routing into the lab would be
    ambiguous and the bridge address may belong to someone else."""
    net = st.network
    for ifname, iface in _addresses():
        if ifname == st.bridge:
            continue
        if iface.network.overlaps(net):
            raise LabError(
                f"lab subnet {net} overlaps {iface} on interface {ifname} (address already in use); "
                "choose another with --subnet or MAILSERVER_LAB_SUBNET",
                EXIT_ADDRESS_IN_USE,
            )


def preflight(st: LabState) -> None:
    """Network preconditions, checked before anything is built or created."""
    if link_exists(st.bridge):
        if not st.bridge_created:
            raise LabError(
                f"interface {st.bridge} already exists and was not made by this lab ({st.state_dir}); "
                "choose another with --bridge or remove it",
                EXIT_ADDRESS_IN_USE,
            )
        return
    check_subnet_free(st)


def ensure_bridge(st: LabState) -> None:
    """Create the lab bridge with the controller's address (.1) if it does not exist yet."""
    want = f"{st.bridge_ip}/{st.prefixlen}"
    if link_exists(st.bridge):
        have = [str(i) for n, i in _addresses() if n == st.bridge]
        if not st.bridge_created:
            raise LabError(
                f"interface {st.bridge} already exists and was not made by this lab ({st.state_dir}); "
                "choose another with --bridge or remove it",
                EXIT_ADDRESS_IN_USE,
            )
        if want not in have:
            run(["ip", "addr", "add", want, "dev", st.bridge])
        run(["ip", "link", "set", st.bridge, "up"])
        return
    check_subnet_free(st)
    run(["ip", "link", "add", st.bridge, "type", "bridge"])
    st.bridge_created = True
    st.save()
    run(["ip", "addr", "add", want, "dev", st.bridge])
    run(["ip", "link", "set", st.bridge, "up"])


def delete_bridge(st: LabState) -> None:
    if st.bridge_created and link_exists(st.bridge):
        run(["ip", "link", "del", st.bridge])
    st.bridge_created = False


def create_host_net(st: LabState, netns: str, veth: str, ip: str) -> None:
    """netns + veth pair: the host end joins the bridge, the peer becomes the guest's eth0."""
    delete_host_net(netns, veth)  # leftovers of a crashed run with the same name
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", st.bridge, "up"])
    run(["ip", "-n", netns, "addr", "add", f"{ip}/{st.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])


def delete_host_net(netns: str, veth: str) -> None:
    """Deleting the namespace destroys its eth0 and with it the veth's host end."""
    if (NETNS_DIR / netns).exists():
        run(["ip", "netns", "del", netns], check=False)
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)


def release_netns_mount() -> None:
    """`ip netns add` bind-mounts /run/netns onto itself; undo that once no namespace is left in it."""
    if not NETNS_DIR.is_dir() or any(NETNS_DIR.iterdir()):
        return
    mounted = any(
        line.split()[4] == str(NETNS_DIR) for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    if mounted:
        run(["umount", str(NETNS_DIR)], check=False)
    with contextlib.suppress(OSError):
        NETNS_DIR.rmdir()
