"""Loading a pyinfra inventory the way `pyinfra` does, and validating each host's `mailserver` data.

pyinfra's own loader (`pyinfra_cli.inventory.make_inventory`) is used so group_data/ files, group
precedence and host data behave exactly as in a `pyinfra INVENTORY deploy.py` run. Render, deploy, drift
and audit all come through here.

    hosts = load_hosts("inventories/example.py")          # every host with `mailserver` data
    for h in hosts:
        manifest = h.manifest()                  # the newest release of the data's family, or:
        manifest = h.manifest("bookworm")         # a release by name (or a Distro row)

Inside a pyinfra deploy, where `host` is the current host: `server_from_host(host, inventory_path)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra_mailserver import distro as distros
from pyinfra_mailserver import secretstore
from pyinfra_mailserver.manifest import Manifest, build_manifest
from pyinfra_mailserver.model import MailServer, ModelError, validate_server

DATA_KEY = "mailserver"


@dataclass(frozen=True)
class HostConfig:
    """One inventory host with validated mail-server data."""

    name: str
    groups: tuple[str, ...]
    server: MailServer = field(repr=False)
    secrets_dir: Path
    data: Mapping[str, Any] = field(repr=False, default_factory=dict)  # the host's whole pyinfra data

    def family(self, default: distros.Family | str = distros.Family.DEBIAN) -> distros.Family:
        """The distro family: the data's `distro` when set, else `default` (e.g. from host facts)."""
        return self.server.distro or distros.Family(default)

    def distro(self, which: distros.Distro | distros.Family | str | None = None) -> distros.Distro:
        """The distro row to render for without a host: `which` (a row, a family, a release name), else
        host data `mailserver_release` / `mailserver_dovecot`, else the family's newest release."""
        if isinstance(which, distros.Distro):
            return which
        if which in set(distros.Family):
            return distros.get(distros.Family(which))
        if which:
            return distros.find_release(str(which))
        release = self.data.get("mailserver_release")
        row = distros.get(self.family(), str(release)) if release else distros.get(self.family())
        dovecot = self.data.get("mailserver_dovecot")
        return row.for_versions(dovecot=str(dovecot)) if dovecot else row

    def manifest(self, which: distros.Distro | distros.Family | str | None = None) -> Manifest:
        """The manifest for a distro row (see `distro`)."""
        return build_manifest(self.server, self.distro(which))


def load_pyinfra_inventory(path: str | os.PathLike[str], cwd: str | None = None) -> Any:
    """A `pyinfra.api.Inventory` made by pyinfra's CLI loader (group_data/ next to the file and in cwd)."""
    from pyinfra.api.state import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    inv_path = Path(path)
    if not inv_path.is_file():
        raise FileNotFoundError(f"inventory {inv_path} does not exist")
    state = State()
    state.cwd = cwd if cwd is not None else os.getcwd()
    # pyinfra's loader records the file it executes on the current state, as `pyinfra` itself sets up
    with ctx_state.use(state):
        return make_inventory(str(inv_path), cwd=state.cwd)


def host_data(host: Any) -> dict[str, Any]:
    """All data of a pyinfra host as a plain dict (inventory, group and host data merged by pyinfra)."""
    return dict(host.data.dict())


def secrets_dir_for(data: Mapping[str, Any], inventory_path: str | os.PathLike[str] | None) -> Path:
    return secretstore.resolve_dir(data.get(secretstore.HOST_DATA_KEY), inventory_path)


def server_from_data(
    name: str, data: Mapping[str, Any], inventory_path: str | os.PathLike[str] | None = None
) -> MailServer:
    """Validate one host's data (its `mailserver` key) into a MailServer, or raise ModelError."""
    if DATA_KEY not in data:
        raise ModelError(
            name, [f"{DATA_KEY}: host has no `{DATA_KEY}` data (set it in group_data/<group>.py)"]
        )
    return validate_server(data[DATA_KEY], hostname=name, secrets_dir=secrets_dir_for(data, inventory_path))


def server_from_host(host: Any, inventory_path: str | os.PathLike[str] | None = None) -> MailServer:
    """The MailServer of a pyinfra host object (for deploys: `server_from_host(host, inventory_path)`)."""
    return server_from_data(host.name, host_data(host), inventory_path)


def load_hosts(
    path: str | os.PathLike[str],
    hosts: Iterable[str] | None = None,
    *,
    cwd: str | None = None,
) -> list[HostConfig]:
    """Every host of the inventory that has `mailserver` data (or exactly `hosts`), validated.

    Problems of all hosts are collected and raised together as one ModelError.
    """
    inventory = load_pyinfra_inventory(path, cwd)
    wanted = list(hosts) if hosts is not None else None
    by_name = {h.name: h for h in inventory}
    problems: list[str] = []
    if wanted is not None:
        for name in wanted:
            if name not in by_name:
                problems.append(f"{name}: no such host in {path} (hosts: {', '.join(sorted(by_name))})")
    out: list[HostConfig] = []
    for host in inventory:
        if wanted is not None and host.name not in wanted:
            continue
        data = host_data(host)
        if DATA_KEY not in data and wanted is None:
            continue
        try:
            server = server_from_data(host.name, data, path)
        except ModelError as exc:
            problems += [f"{host.name}: {p}" for p in exc.problems]
            continue
        groups = tuple(sorted(g for g in host.groups))
        out.append(HostConfig(host.name, groups, server, secrets_dir_for(data, path), data))
    if problems:
        raise ModelError(None, problems)
    if not out:
        raise ModelError(None, [f"{path}: no host has `{DATA_KEY}` data"])
    return out


def secret_refs(
    path: str | os.PathLike[str], cwd: str | None = None
) -> list[tuple[str, Path, secretstore.SecretRef]]:
    """(host, secrets dir, reference) for every `{"secret": NAME}` in every host's mailserver data."""
    inventory = load_pyinfra_inventory(path, cwd)
    out = []
    for host in inventory:
        data = host_data(host)
        if DATA_KEY not in data:
            continue
        directory = secrets_dir_for(data, path)
        for ref in secretstore.find_refs(data[DATA_KEY]):
            out.append((host.name, directory, ref))
    return out
