"""Reaching hosts for drift and audit through pyinfra itself: its inventory, --limit, SSH settings.

No second SSH layer: hosts come from `pyinfra_mailserver.inventory` (a `pyinfra.api.Inventory` with the
group data `pyinfra` would give them),
connections from `host.connect()`, and every command runs as a pyinfra fact, so `_sudo` and the other
connector arguments of the host data apply exactly as in a deploy. Everything run here is read-only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra.api import FactBase

from pyinfra_mailserver.engine.script import Section, build, parse
from pyinfra_mailserver.facts import Script
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.report import CheckResult, Severity, Status

__all__ = ["Section", "Target", "connect", "disconnect"]


@dataclass
class Target:
    """One connected host with its validated model and Manifest."""

    name: str
    host: Any  # pyinfra.api.Host
    state: Any  # pyinfra.api.State
    manifest: Manifest
    data: dict[str, Any] = field(repr=False)
    secrets_dir: Path
    inventory_path: str

    @property
    def address(self) -> str:
        """Where the controller's probes connect: the SSH address pyinfra uses for this host."""
        return str(self.data.get("ssh_hostname") or self.name)

    def fact(self, cls: type[FactBase[Any]], **kwargs: Any) -> Any:
        from pyinfra.context import ctx_host, ctx_state

        with ctx_state.use(self.state), ctx_host.use(self.host):
            return self.host.get_fact(cls, **kwargs)

    def run(self, commands: dict[str, str]) -> dict[str, Section]:
        """Run named read-only commands in one round trip; missing sections come back with rc -1."""
        result = parse(self.fact(Script, script=build(commands)))
        for name in commands:
            result.setdefault(name, Section(-1, ["(no output: the command did not run)"]))
        return result


def _family(host: Any, state: Any, server: Any) -> Any:
    """The host's distro row (family, release, program versions), as the deploy reads it."""
    from pyinfra.context import ctx_host, ctx_state

    from pyinfra_mailserver.facts import host_distro

    with ctx_state.use(state), ctx_host.use(host):
        return host_distro(host, server.distro)


def _families(hosts: Sequence[Any], state: Any, servers: dict[Any, Any]) -> dict[Any, Any]:
    """Each host's distro row (or the exception that kept it from being known), all hosts at once:
    each costs a round trip (os-release and program versions), and one after the other that was a
    tenth of a second per host before any check ran."""
    from concurrent.futures import ThreadPoolExecutor

    def one(host: Any) -> Any:
        try:
            return _family(host, state, servers[host])
        except Exception as e:  # reported per host by the caller, like any manifest problem
            return e

    if len(hosts) <= 1:
        return {h: one(h) for h in hosts}
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:  # greenlets under the CLI's gevent
        return dict(zip(hosts, pool.map(one, hosts), strict=True))


def connect(
    inventory_path: str,
    limit: Sequence[str] = (),
    section: str = "drift",
    data_override: dict[str, str] | None = None,
) -> tuple[list[Target], list[CheckResult]]:
    """Load the inventory, validate each host's data, connect; problems come back as ERROR results.

    A host with invalid data or no connection is reported (exit 2) and the others are still checked, so
    one broken host does not hide the state of the fleet.
    """
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.exceptions import PyinfraError

    from pyinfra_mailserver import inventory
    from pyinfra_mailserver.model import ModelError
    from pyinfra_mailserver.render import build_manifest

    path = str(Path(inventory_path).resolve())
    if not Path(path).is_file():
        raise FileNotFoundError(f"inventory {inventory_path} does not exist")
    os.environ.setdefault("MAILSERVER_INVENTORY", path)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    inv = inventory.load_pyinfra_inventory(path, cwd, data_override)
    limited = inventory.limit_hosts(inv, limit)
    wanted = list(inv) if limited is None else limited
    problems: list[CheckResult] = []
    servers: dict[Any, Any] = {}
    for host in wanted:
        data = inventory.host_data(host)
        if inventory.DATA_KEY not in data and not limit:
            continue  # not a mail host (an inventory may hold others)
        try:
            servers[host] = inventory.server_from_data(host.name, data, path)
        except ModelError as e:
            problems.append(
                CheckResult(
                    "inventory.data",
                    host.name,
                    Status.ERROR,
                    "invalid mailserver data: " + "; ".join(e.problems),
                    Severity.HIGH,
                    "fix the inventory data (mailserver render shows the same errors)",
                    section=section,
                )
            )
        except Exception as e:  # secrets missing, unreadable files: still this host only
            problems.append(
                CheckResult(
                    "inventory.data",
                    host.name,
                    Status.ERROR,
                    f"{type(e).__name__}: {e}",
                    Severity.HIGH,
                    section=section,
                )
            )
    # only hosts with valid data are contacted
    reachable = [h for h in wanted if h in servers]
    state = State(check_for_changes=False)
    state.init(inv, Config(), initial_limit=reachable)
    if reachable:
        with contextlib.suppress(PyinfraError):  # "No hosts remaining!": each is reported below
            connect_all(state)
    families = _families([h for h in reachable if h.connected], state, servers)
    targets: list[Target] = []
    for host in reachable:
        if not host.connected:
            problems.append(
                CheckResult(
                    "host.reachable",
                    host.name,
                    Status.ERROR,
                    f"cannot connect to {host.data.get('ssh_hostname') or host.name}",
                    Severity.CRITICAL,
                    "check the host is up and the SSH settings",
                    section=section,
                )
            )
            continue
        data = inventory.host_data(host)
        server = servers[host]
        try:
            family = families[host]
            if isinstance(family, Exception):
                raise family
            manifest = build_manifest(server, family)
        except Exception as e:
            problems.append(
                CheckResult(
                    "inventory.data",
                    host.name,
                    Status.ERROR,
                    f"cannot build the manifest: {type(e).__name__}: {e}",
                    Severity.HIGH,
                    section=section,
                )
            )
            continue
        targets.append(
            Target(host.name, host, state, manifest, data, inventory.secrets_dir_for(data, path), path)
        )
    return targets, problems


def disconnect(targets: Sequence[Target]) -> None:
    for t in targets:
        with contextlib.suppress(Exception):  # a dropped connection at the end changes no result
            t.host.disconnect()
