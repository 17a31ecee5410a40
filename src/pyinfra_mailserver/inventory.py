"""Loading a pyinfra inventory file as `pyinfra` reads one, and validating each host's `mailserver` data.

An inventory file's module-level lists (or `(hosts, data)` tuples) are its groups, plus one named after
the file; `group_data/<group>.py` next to it and in the current directory give each group its data;
a host's own data beats its groups', `--data` overrides beat both. The result is a `pyinfra.api.Inventory`
(pyinfra's public API), so render, `mailserver deploy`, drift and audit read the same data as a
`pyinfra INVENTORY deploy.py` run.

    hosts = load_hosts("inventories/example.py")          # every host with `mailserver` data
    for h in hosts:
        manifest = h.manifest()                  # the newest release of the data's family, or:
        manifest = h.manifest("bookworm")         # a release by name (or a Distro row)

Inside a pyinfra deploy, where `host` is the current host: `server_from_host(host, inventory_path)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra_mailserver import distro as distros
from pyinfra_mailserver import secretstore
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.model import MailServer, ModelError, validate_server
from pyinfra_mailserver.render import build_manifest

DATA_KEY = "mailserver"
# every host data key the tool reads; another `mailserver...` key is a typo whose setting would be ignored
HOST_KEYS = frozenset(
    {
        DATA_KEY,
        secretstore.HOST_DATA_KEY,
        "mailserver_audit",
        "mailserver_distro",
        "mailserver_dovecot",
        "mailserver_lock_path",
        "mailserver_release",
        "mailserver_stage_dir",
        "mailserver_verify",
    }
)


def unknown_host_keys(data: Mapping[str, Any]) -> list[str]:
    """`key: fix` problems for host data keys that look like ours but are not read by anything."""
    import difflib

    out = []
    for key in sorted(
        k for k in data if isinstance(k, str) and k.startswith(DATA_KEY) and k not in HOST_KEYS
    ):
        close = difflib.get_close_matches(key, sorted(HOST_KEYS), n=1)
        hint = f"did you mean {close[0]}?" if close else f"the keys read are {', '.join(sorted(HOST_KEYS))}"
        out.append(f"{key}: host data that nothing reads (its setting would be ignored) — {hint}")
    return out


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


def _module_values(path: Path) -> dict[str, Any]:
    """A Python data file's top-level names and values, without private names and what it imports."""
    import ast
    import runpy

    tree = ast.parse(path.read_text(), filename=str(path))
    imported = {
        (a.asname or a.name.split(".")[0])
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for a in node.names
    }
    values = runpy.run_path(str(path))
    return {k: v for k, v in values.items() if not k.startswith("_") and k not in imported}


def _group_hosts(value: Any) -> list[Any] | None:
    """The hosts of an inventory group (a list of names or (name, data), or a (hosts, data) tuple)."""
    hosts = value[0] if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict) else value
    if isinstance(hosts, list) and all(isinstance(h, (str, tuple)) for h in hosts):
        return hosts
    return None


def load_pyinfra_inventory(
    path: str | os.PathLike[str], cwd: str | None = None, override_data: Mapping[str, Any] | None = None
) -> Any:
    """A `pyinfra.api.Inventory` of an inventory file, read as `pyinfra` reads it (see above)."""
    from pyinfra.api import Inventory

    inv_path = Path(path).resolve()
    if not inv_path.is_file():
        raise FileNotFoundError(f"inventory {path} does not exist")
    groups: dict[str, Any] = {}
    for name, value in _module_values(inv_path).items():
        if _group_hosts(value) is not None:
            groups[name] = value if isinstance(value, tuple) else (value, {})
    all_hosts, all_data = groups.pop("all", ([], {}))
    if not all_hosts:
        for hosts, _data in groups.values():
            for h in hosts:
                name = h[0] if isinstance(h, tuple) else h
                if name not in all_hosts:
                    all_hosts.append(name)
    groups.setdefault(inv_path.stem, (all_hosts, {}))
    folders = [Path(cwd or os.getcwd()) / "group_data", inv_path.parent / "group_data"]
    group_data: dict[str, dict[str, Any]] = {}
    for folder in dict.fromkeys(f.resolve() for f in folders):
        if folder.is_dir():
            for file in sorted(folder.glob("*.py")):
                group_data.setdefault(file.stem, {}).update(_module_values(file))
    all_data = {**group_data.pop("all", {}), **all_data}
    final = {name: (hosts, {**data, **group_data.pop(name, {})}) for name, (hosts, data) in groups.items()}
    final.update({name: ([], data) for name, data in group_data.items()})
    return Inventory((all_hosts, all_data), override_data=dict(override_data or {}), **final)


def host_data(host: Any) -> dict[str, Any]:
    """All data of a pyinfra host as a plain dict (inventory, group and host data merged by pyinfra)."""
    return dict(host.data.dict())


def secrets_dir_for(data: Mapping[str, Any], inventory_path: str | os.PathLike[str] | None) -> Path:
    return secretstore.resolve_dir(data.get(secretstore.HOST_DATA_KEY), inventory_path)


def server_from_data(
    name: str, data: Mapping[str, Any], inventory_path: str | os.PathLike[str] | None = None
) -> MailServer:
    """Validate one host's data (its `mailserver` key) into a MailServer, or raise ModelError."""
    unknown = unknown_host_keys(data)
    if DATA_KEY not in data:
        raise ModelError(
            name, [f"{DATA_KEY}: host has no `{DATA_KEY}` data (set it in group_data/<group>.py)", *unknown]
        )
    try:
        server = validate_server(
            data[DATA_KEY], hostname=name, secrets_dir=secrets_dir_for(data, inventory_path)
        )
    except ModelError as e:
        raise ModelError(name, [*e.problems, *unknown]) from None
    if unknown:
        raise ModelError(name, unknown)
    return server


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


def limit_hosts(inventory: Any, names: Sequence[str]) -> list[Any] | None:
    """pyinfra's --limit semantics: host names, group names, or glob patterns; short names allowed."""
    import fnmatch

    if not names:
        return None
    hosts: list[Any] = []
    for name in names:
        group = inventory.get_group(name, None)
        if group:
            hosts.extend(group)
            continue
        match = [h for h in inventory if fnmatch.fnmatch(h.name, name) or h.name.split(".")[0] == name]
        if not match:
            raise LookupError(f"no host or group matches --limit {name!r}")
        hosts.extend(match)
    return list(dict.fromkeys(hosts))
