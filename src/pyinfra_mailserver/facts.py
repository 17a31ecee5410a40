"""pyinfra facts of a mail host: what it runs (`MailPlatform`), everything a deploy compares
(`MailHostSnapshot`), and batched read-only commands (`Script`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase

from pyinfra_mailserver.distro import Distro, for_host
from pyinfra_mailserver.engine import script, shell


@dataclass(frozen=True)
class FileState:
    """What the host has at a path: kind, owner, group, mode (octal string), mtime and sha256 of a file."""

    path: str
    kind: str  # "file" | "directory" | "other"
    owner: str
    group: str
    mode: str  # as `stat -c %a` prints it, e.g. "644", "2755"
    mtime: int
    sha256: str | None = None

    def mode_matches(self, mode: str) -> bool:
        return int(self.mode, 8) == int(mode, 8)


@dataclass(frozen=True)
class AccountState:
    """Users (uid, primary gid, home, shell, supplementary groups, sha256 of the shadow hash) and groups."""

    users: dict[str, dict[str, object]]
    groups: dict[str, dict[str, object]]


@dataclass(frozen=True)
class Snapshot:
    """Everything a deploy compares, read in one command (see `MailHostSnapshot`)."""

    packages: dict[str, str] = field(default_factory=dict)  # installed package -> version
    accounts: AccountState = field(default_factory=lambda: AccountState({}, {}))
    paths: dict[str, FileState] = field(default_factory=dict)
    units: dict[str, tuple[str, str]] = field(default_factory=dict)  # unit -> (active, enabled)
    ports: tuple[str, ...] = ()  # local addresses of listening TCP sockets, as `ss` prints them
    sockets: frozenset[str] = frozenset()  # the asked-for paths that are UNIX sockets
    mailboxes: tuple[str, ...] = ()  # `base/DOMAIN/USER` directories under the virtual mail base

    @property
    def listening(self) -> frozenset[int]:
        """The TCP ports something listens on."""
        out = set()
        for addr in self.ports:
            port = addr.rsplit(":", 1)[-1]
            if port.isdigit():
                out.add(int(port))
        return frozenset(out)


@dataclass(frozen=True)
class SnapshotSpec:
    """What a snapshot asks the host (from the manifest): the arguments of `resources/snapshot.sh`."""

    family: str
    packages: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    sockets: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    mailbox_base: str | None = None

    def arguments(self, wait: int = 0) -> list[str]:
        """The script's options; with `wait`, it first waits that long for the ports and sockets."""
        args = ["-F", self.family]
        for flag, values in (
            ("-p", self.packages),
            ("-u", self.users),
            ("-g", self.groups),
            ("-f", self.paths),
            ("-s", self.units),
            ("-t", self.parts),
            ("-k", self.sockets),
        ):
            for v in values:
                args += [flag, v]
        if self.mailbox_base:
            args += ["-m", self.mailbox_base]
        if wait:
            args += ["-w", str(wait)]
            for p in self.ports:
                args += ["-l", str(p)]
        return args


# ---- parsers of the snapshot's sections (each a pure function of the lines the host printed)


def parse_packages(lines: Iterable[str]) -> dict[str, str]:
    """`STATUS|NAME|VERSION` lines: the installed ones (status `ii`)."""
    result: dict[str, str] = {}
    for line in lines:
        status, _, rest = line.partition("|")
        name, _, version = rest.partition("|")
        if status.strip() == "ii":
            result[name] = version
    return result


def parse_accounts(lines: Iterable[str]) -> AccountState:
    """getent passwd (7 fields) and group (4 fields) lines, and `H:user:<sha256 of the shadow hash>`."""
    users: dict[str, dict[str, object]] = {}
    groups: dict[str, dict[str, object]] = {}
    hashes: dict[str, str] = {}
    for line in lines:
        f = line.split(":")
        if len(f) == 7:
            users[f[0]] = {"uid": int(f[2]), "gid": int(f[3]), "home": f[5], "shell": f[6]}
        elif len(f) == 4:
            groups[f[0]] = {"gid": int(f[2]), "members": [m for m in f[3].split(",") if m]}
        elif len(f) == 3 and f[0] == "H":
            hashes[f[1]] = f[2][:64]  # sha256sum prints "<hex>  -"
    for name, user in users.items():
        user["groups"] = sorted(g for g, info in groups.items() if name in info["members"])  # type: ignore[operator]
        user["password_sha256"] = hashes.get(name)
    return AccountState(users, groups)


def parse_paths(lines: Iterable[str]) -> dict[str, FileState]:
    """`S|kind|owner|group|mode|mtime|path` lines and sha256sum lines; absent paths are left out."""
    stats: dict[str, list[str]] = {}
    hashes: dict[str, str] = {}
    for line in lines:
        if line.startswith("S|"):
            _, kind, owner, group, mode, mtime, path = line.split("|", 6)
            stats[path] = [kind, owner, group, mode, mtime]
        elif len(line) > 66 and line[64:66] == "  ":
            hashes[line[66:]] = line[:64]
    result: dict[str, FileState] = {}
    for path, (kind, owner, group, mode, mtime) in stats.items():
        k = "file" if kind.startswith("regular") else "directory" if kind == "directory" else "other"
        result[path] = FileState(path, k, owner, group, mode, int(mtime), hashes.get(path))
    return result


def parse_units(lines: Iterable[str]) -> dict[str, tuple[str, str]]:
    """`unit|active state|enabled state` lines."""
    result = {}
    for line in lines:
        if line.strip():
            unit, active, enabled = [*line.split("|"), "", ""][:3]
            result[unit] = (active, enabled)
    return result


class MailHostSnapshot(FactBase[Snapshot]):
    """Installed packages, accounts, managed paths (stat and sha256), unit states, listening ports,
    sockets and mailbox directories, in one command (`resources/snapshot.sh`): everything the deploy,
    its verification and drift compare with the manifest, for one round trip.

    + spec: what to ask (a `SnapshotSpec` made from the manifest)
    + wait: seconds to wait first for the spec's ports and sockets (after a restart)
    """

    @staticmethod
    def default() -> Snapshot:
        return Snapshot()

    def command(self, spec: SnapshotSpec, wait: int = 0) -> str:
        return shell.command("snapshot", *spec.arguments(wait))

    def process(self, output: list[str]) -> Snapshot:
        sections = script.parse(output)

        def lines(name: str) -> list[str]:
            s = sections.get(name)
            return s.lines if s is not None else []

        return Snapshot(
            packages=parse_packages(lines("packages")),
            accounts=parse_accounts(lines("accounts")),
            paths=parse_paths(lines("paths")),
            units=parse_units(lines("units")),
            ports=tuple(f[3] for f in (line.split() for line in lines("ports")) if len(f) >= 4),
            sockets=frozenset(line.strip() for line in lines("sockets") if line.strip()),
            mailboxes=tuple(sorted(line.strip() for line in lines("mailboxes") if line.strip())),
        )


def parse_os_release(output: Iterable[str]) -> dict[str, str]:
    """/etc/os-release lines as KEY -> value, quotes removed."""
    result = {}
    for line in output:
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            result[key] = value.strip().strip("\"'")
    return result


class MailPlatform(FactBase[dict[str, str]]):
    """The host's os-release plus the versions of its mail programs (`resources/platform.sh`).

    Keys are os-release's (ID, VERSION_ID, ...) and `DOVECOT_VERSION` / `POSTFIX_VERSION`, empty when the
    program is not installed (a fresh host: the release's own versions apply, see `distro.for_host`).
    """

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self) -> str:
        return shell.command("platform")

    def process(self, output: list[str]) -> dict[str, str]:
        return parse_os_release(output)


def distro_row(platform: dict[str, str], data: Any, family: str | None = None) -> Distro:
    """The distro row for what a host said of itself (`MailPlatform`), with the model's `distro`
    (`family`) or host data `mailserver_distro`, and host data `mailserver_release` and
    `mailserver_dovecot` winning. Raises ValueError naming what the distro table lacks."""
    return for_host(
        platform,
        platform.get("DOVECOT_VERSION", ""),
        platform.get("POSTFIX_VERSION", ""),
        family=family or data.get("mailserver_distro") or None,
        release=_str_or_none(data.get("mailserver_release")),
        dovecot=_str_or_none(data.get("mailserver_dovecot")),
    )


def host_distro(host: Any, family: str | None = None) -> Distro:
    """`distro_row` of a connected pyinfra host (one `MailPlatform` round trip)."""
    return distro_row(host.get_fact(MailPlatform) or {}, host.data, family)


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


class Script(FactBase[list[str]]):
    """Output lines of a read-only shell script whose sections print their own exit status (see
    `engine.script`). The fact always succeeds: a failing check command is data to judge, not an error.

    + script: the batched commands
    """

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, script: str) -> str:
        return f"{script}\ntrue"

    def process(self, output: list[str]) -> list[str]:
        return output
