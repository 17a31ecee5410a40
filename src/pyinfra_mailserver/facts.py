"""Custom pyinfra facts that read everything the deploy compares in one command each (few round trips)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase


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


def _q(items: tuple[str, ...] | list[str]) -> str:
    return " ".join(shlex.quote(i) for i in items)


class ManagedPaths(FactBase[dict[str, FileState]]):
    """Stat (and sha256 for files) of every given path in one command; absent paths are left out.

    One round trip replaces the 2-3 commands per file of `files.put`, which is what makes a no-change
    re-run fast. Only paths go on the command line, never content, so nothing secret is shown.
    """

    @staticmethod
    def default() -> dict[str, FileState]:
        return {}

    def command(self, paths: tuple[str, ...]) -> str:
        if not paths:
            return "true"
        q = _q(sorted(set(paths)))
        return (
            f"stat -c 'S|%F|%U|%G|%a|%Y|%n' {q} 2>/dev/null; "
            f'for p in {q}; do [ -f "$p" ] && sha256sum "$p"; done 2>/dev/null; true'
        )

    def process(self, output: list[str]) -> dict[str, FileState]:
        stats: dict[str, list[str]] = {}
        hashes: dict[str, str] = {}
        for line in output:
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


@dataclass(frozen=True)
class AccountState:
    """Users (uid, primary gid, home, shell, supplementary groups, sha256 of the shadow hash) and groups."""

    users: dict[str, dict[str, object]]
    groups: dict[str, dict[str, object]]


class Accounts(FactBase[AccountState]):
    """The named users and groups, read with getent in one command.

    Password hashes are reduced to their sha256 on the host, so a hash never crosses into pyinfra's output.
    """

    @staticmethod
    def default() -> AccountState:
        return AccountState({}, {})

    def command(self, users: tuple[str, ...], groups: tuple[str, ...]) -> str:
        u, g = _q(users) or "''", _q(groups) or "''"
        return (
            f"getent passwd {u} | sed 's/^/P:/'; getent group {g} | sed 's/^/G:/'; "
            f"getent shadow {u} 2>/dev/null | while IFS=: read -r n h rest; do "
            'printf \'H:%s:%s\\n\' "$n" "$(printf %s "$h" | sha256sum | cut -c1-64)"; done; true'
        )

    def process(self, output: list[str]) -> AccountState:
        users: dict[str, dict[str, object]] = {}
        groups: dict[str, dict[str, object]] = {}
        hashes: dict[str, str] = {}
        for line in output:
            kind, _, rest = line.partition(":")
            f = rest.split(":")
            if kind == "P" and len(f) >= 7:
                users[f[0]] = {"uid": int(f[2]), "gid": int(f[3]), "home": f[5], "shell": f[6]}
            elif kind == "G" and len(f) >= 4:
                groups[f[0]] = {"gid": int(f[2]), "members": [m for m in f[3].split(",") if m]}
            elif kind == "H" and len(f) >= 2:
                hashes[f[0]] = f[1]
        for name, user in users.items():
            user["groups"] = sorted(g for g, info in groups.items() if name in info["members"])  # type: ignore[operator]
            user["password_sha256"] = hashes.get(name)
        return AccountState(users, groups)


class DebPackageStatus(FactBase[dict[str, str]]):
    """Installed version of each named Debian package (absent ones are left out), in one dpkg-query."""

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self, packages: tuple[str, ...]) -> str:
        fmt = "'${db:Status-Abbrev}|${Package}|${Version}\\n'"
        return f"dpkg-query -W -f={fmt} {_q(packages)} 2>/dev/null; true"

    def process(self, output: list[str]) -> dict[str, str]:
        result: dict[str, str] = {}
        for line in output:
            status, _, rest = line.partition("|")
            name, _, version = rest.partition("|")
            if status.strip() == "ii":
                result[name] = version
        return result


class RpmPackageStatus(FactBase[dict[str, str]]):
    """Installed version of each named RPM package (absent ones are left out), in one rpm -q."""

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self, packages: tuple[str, ...]) -> str:
        fmt = "'%{NAME}|%{VERSION}-%{RELEASE}\\n'"
        return f"rpm -q --qf {fmt} {_q(packages)} 2>/dev/null | grep '|'; true"

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split("|", 1) for line in output if "|" in line)  # type: ignore[misc]
