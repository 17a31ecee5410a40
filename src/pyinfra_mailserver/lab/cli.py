"""`mailserver lab up|down|status|ssh`: throwaway real Debian hosts on this machine."""

from __future__ import annotations

import argparse
import os
import sys

from pyinfra_mailserver import distro

from .state import DEFAULT_STATE_DIR, EXIT_NO_LAB, RELEASES, VARIANTS, LabError, LabState, default_release


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `mailserver lab` to the parser."""
    p = sub.add_parser(
        "lab",
        help="throwaway real Debian hosts (systemd-nspawn) for demos, tests and trial runs",
        description="Throwaway real systemd-booted Debian hosts on a private bridge (needs root). "
        "Target them with: pyinfra inventories/lab.py ...",
    )
    p.add_argument(
        "--state-dir",
        default=None,
        help="lab state dir (default: $MAILSERVER_LAB_DIR or /var/lib/pyinfra-mailserver/lab)",
    )
    lsub = p.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lsub.required = True

    up = lsub.add_parser("up", help="create hosts mx1..mxN (hosts already up are left alone)")
    up.add_argument("--hosts", type=int, default=1, metavar="N", help="number of hosts (default 1)")
    up.add_argument(
        "--release",
        choices=RELEASES,
        default=None,
        help=f"Debian release of new hosts (default $MAILSERVER_LAB_RELEASE or {distro.DEBIAN.release})",
    )
    up.add_argument(
        "--variant",
        choices=VARIANTS,
        default="virtual",
        help="inventory group for new hosts: lab_virtual or lab_saslauthd (default virtual)",
    )
    up.add_argument(
        "--subnet",
        default=None,
        help="lab subnet when creating the lab (default $MAILSERVER_LAB_SUBNET or 10.213.0.0/24)",
    )
    up.add_argument(
        "--bridge",
        default=None,
        help="bridge name when creating the lab (default $MAILSERVER_LAB_BRIDGE or mslab0)",
    )
    up.set_defaults(func=_up)

    down = lsub.add_parser("down", help="destroy hosts; with no NAME everything (bridge and proxy too)")
    down.add_argument("names", nargs="*", metavar="NAME")
    down.set_defaults(func=_down)

    status = lsub.add_parser("status", help="show the lab's hosts and whether they are alive")
    status.set_defaults(func=_status)

    ssh = lsub.add_parser("ssh", help="ssh into a lab host as root (optionally run CMD)")
    ssh.add_argument("name", metavar="NAME", help="mx1 or mx1.lab.test")
    ssh.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    ssh.set_defaults(func=_ssh)


def _lab(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .manager import Lab

    return Lab(args.state_dir, subnet=getattr(args, "subnet", None), bridge=getattr(args, "bridge", None))


def _guard(fn):  # type: ignore[no-untyped-def]
    """LabError -> message on stderr and its exit code (the codes are listed in docs/lab.md)."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except LabError as e:
            print(f"mailserver lab: error: {e}", file=sys.stderr)
            return e.exit_code

    return wrapper


def print_hosts(st: LabState, rows: list[tuple[str, str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in [("NAME", "FQDN", "IP", "VARIANT", "STATE"), *rows]) for i in range(5)]
    for r in [("NAME", "FQDN", "IP", "VARIANT", "STATE"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@_guard
def _up(args: argparse.Namespace) -> int:
    if args.hosts < 1:
        raise LabError("--hosts must be at least 1")
    lab = _lab(args)
    hosts = lab.up(args.hosts, release=args.release or default_release(), variant=args.variant)
    st = lab.state()
    print_hosts(st, [(h.name, h.fqdn, h.ip, h.variant, "up") for h in hosts])
    print(f"\nkey: {st.key_path}   proxy: {st.proxy_url}   state: {st.state_dir}")
    env = "" if st.state_dir == DEFAULT_STATE_DIR else f"MAILSERVER_LAB_DIR={st.state_dir} "
    print(f"try:  {env}pyinfra -y inventories/lab.py exec -- hostname")
    return 0


@_guard
def _down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    gone = lab.down(args.names or None)
    if gone:
        print("lab: destroyed " + ", ".join(gone))
    if not args.names:
        print("lab: down (bridge and apt proxy removed)")
    return 0


@_guard
def _status(args: argparse.Namespace) -> int:
    from .util import tcp_open

    lab = _lab(args)
    st, rows = lab.status()
    if not rows:
        print(f"lab: no hosts (state: {st.state_dir}); create some with `mailserver lab up`")
        return EXIT_NO_LAB
    print_hosts(st, [(r.host.name, r.host.fqdn, r.host.ip, r.host.variant, r.label) for r in rows])
    proxy = "up" if st.proxy and st.proxy.alive() and tcp_open(st.bridge_ip, st.proxy_port) else "down"
    print(f"\nbridge: {st.bridge} {st.bridge_ip}/{st.prefixlen}   apt proxy: {st.proxy_url} ({proxy})")
    print(f"key: {st.key_path}   state: {st.state_dir}")
    return 0 if all(r.label == "up" for r in rows) else 1


@_guard
def _ssh(args: argparse.Namespace) -> int:
    from .ssh import ssh_argv

    lab = _lab(args)
    h = lab.host(args.name)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    st = lab.state()
    argv = ssh_argv(st.key_path, h.ip, cmd or None, tty=not cmd and sys.stdin.isatty())
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 0  # not reached
