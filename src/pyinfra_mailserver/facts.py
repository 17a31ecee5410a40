"""Custom pyinfra facts that read everything the deploy compares in one command each (few round trips)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from pyinfra.api import FactBase

from pyinfra_mailserver.distro import Distro, for_host


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


def unit_state_script(units: tuple[str, ...], prefix: str = "", parts: tuple[str, ...] = ()) -> str:
    """Shell printing `PREFIX<unit>|<active state>|<enabled state>` per unit (also used by verify).

    A wrapper unit (Debian 12's postfix.service is a oneshot that stays "active") is only as active as
    the units it consists of (postfix@-.service, the real master), so those are asked too. A unit with a
    process of its own (Type other than oneshot: Debian 13's postfix.service runs the master itself) is
    judged alone: its ConsistsOf only names template instances that would conflict with it. `systemctl show`
    answers for every unit at once: `is-active`/`is-enabled` per unit cost the host ten times the CPU
    (P3 in bench/ runs this on ten hosts sharing two cores). Only a unit generated from a SysV script
    (saslauthd on Debian) is asked `is-enabled`, which reads its rc.d links. `parts`: units the services
    are expected to consist of, read in the first call (a second one asks only for others).
    """
    q = " ".join(shlex.quote(u) for u in (*units, *parts))
    # `systemctl show` prints one blank-line-separated block per unit, in the order asked: the first
    # `want` are the units, the rest their parts. awk reads them and itself asks, only when needed, the
    # parts nobody listed (a second `show`) and the generated units' `is-enabled`: two programs in the
    # common case, where sed, a second awk and their subshells used to run too (host CPU, see above).
    # Unit names come from systemd (letters, digits, ":-_.@\"), quoted for the shell all the same.
    awk = (
        'function block(b,  f, i, k, v) { id = a = e = c = t = ""; split(b, f, "\\n"); '
        'for (i in f) { k = f[i]; sub(/=.*/, "", k); v = substr(f[i], length(k) + 2); '
        'if (k == "Id") id = v; else if (k == "ActiveState") a = v; '
        'else if (k == "UnitFileState") e = v; else if (k == "ConsistsOf") c = v; '
        'else if (k == "Type") t = v } '
        'if (t != "" && t != "oneshot") c = "" } '
        'BEGIN { RS = "" } '
        "{ block($0); n++; if (n <= want) { I[n] = id; A[n] = a; E[n] = e; C[n] = c } else S[id] = a } "
        'END { q = ""; for (j = 1; j <= want; j++) { split(C[j], ps, " "); '
        'for (p in ps) if (ps[p] != "" && !(ps[p] in S) && !(ps[p] in Q)) { Q[ps[p]] = 1; '
        'q = q " \'" ps[p] "\'" } } '
        'if (q != "") { cmd = "systemctl show -p Id,ActiveState" q " 2>/dev/null"; '
        "while ((cmd | getline b) > 0) { block(b); S[id] = a } close(cmd) } "
        'for (j = 1; j <= want; j++) { a = A[j]; e = E[j]; split(C[j], ps, " "); '
        'for (p in ps) if (a == "active" && ps[p] != "" && S[ps[p]] != "active") '
        'a = (S[ps[p]] == "" ? "unknown" : S[ps[p]]); '
        'if (e == "generated") { cmd = "systemctl is-enabled \'" I[j] "\' 2>/dev/null"; '
        "if ((cmd | getline v) > 0) e = v; close(cmd) } "
        f'printf "{prefix}%s|%s|%s\\n", U[j], a, e }} }}'
    )
    names = " ".join(f"U[{i}] = {json.dumps(u)};" for i, u in enumerate(units, 1))
    return (
        f"systemctl show -p Id,ActiveState,UnitFileState,ConsistsOf,Type {q} 2>/dev/null "
        f"| awk -v want={len(units)} {shlex.quote('BEGIN { ' + names + ' } ' + awk)}"
    )


class UnitStates(FactBase[dict[str, tuple[str, str]]]):
    """(active state, enabled state) of each named unit, e.g. ("active", "enabled"), in one command."""

    @staticmethod
    def default() -> dict[str, tuple[str, str]]:
        return {}

    def command(self, units: tuple[str, ...]) -> str:
        return unit_state_script(units)

    def process(self, output: list[str]) -> dict[str, tuple[str, str]]:
        result = {}
        for line in output:
            unit, active, enabled = [*line.split("|"), "", ""][:3]
            result[unit] = (active, enabled)
        return result


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
        # regular files only (a FIFO would block sha256sum), hashed by one sha256sum process
        return (
            f"stat -c 'S|%F|%U|%G|%a|%Y|%n' {q} 2>/dev/null; set --; "
            f'for p in {q}; do [ -f "$p" ] && set -- "$@" "$p"; done; '
            '[ $# -eq 0 ] || sha256sum -- "$@" 2>/dev/null; true'
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


class OsRelease(FactBase[dict[str, str]]):
    """The host's /etc/os-release as KEY -> value (quotes removed), e.g. {"ID": "debian", ...}.

    One `cat` instead of pyinfra's LinuxDistribution (a loop over every /etc/*-release file): the deploy
    only needs ID and ID_LIKE to pick the distro family.
    """

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self) -> str:
        return "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null; true"

    def process(self, output: list[str]) -> dict[str, str]:
        result = {}
        for line in output:
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                result[key] = value.strip().strip("\"'")
        return result


class MailPlatform(FactBase[dict[str, str]]):
    """The host's os-release plus the versions of its mail programs, in one command.

    Keys are os-release's (ID, VERSION_ID, ...) and `DOVECOT_VERSION` / `POSTFIX_VERSION`, empty when the
    program is not installed (a fresh host: the release's own versions apply, see `distro.for_host`).
    """

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self) -> str:
        return (
            OsRelease().command()
            + "; printf 'DOVECOT_VERSION=%s\\n' \"$(dovecot --version 2>/dev/null)\""
            + "; printf 'POSTFIX_VERSION=%s\\n' \"$(postconf -h mail_version 2>/dev/null)\"; true"
        )

    def process(self, output: list[str]) -> dict[str, str]:
        return OsRelease().process(output)


def host_distro(host: Any, family: str | None = None) -> Distro:
    """The distro row of a host: its os-release and installed mail programs (`MailPlatform`), with the
    model's `distro` (`family`) or host data `mailserver_distro`, and host data `mailserver_release` and
    `mailserver_dovecot` winning.

    Deploy, drift and audit all ask this; raises ValueError naming what the distro table lacks.
    """
    meta = host.get_fact(MailPlatform) or {}
    return for_host(
        meta,
        meta.get("DOVECOT_VERSION", ""),
        meta.get("POSTFIX_VERSION", ""),
        family=family or host.data.get("mailserver_distro") or None,
        release=_str_or_none(host.data.get("mailserver_release")),
        dovecot=_str_or_none(host.data.get("mailserver_dovecot")),
    )


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


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
        # getent's passwd lines have 7 fields and group lines 4, so they need no tag; `sha256sum` is the
        # only program run per user (every process is host CPU, times ten hosts sharing two cores in P3)
        u, g = _q(users) or "''", _q(groups) or "''"
        return (
            f"getent passwd {u}; getent group {g}; "
            f"getent shadow {u} 2>/dev/null | while IFS=: read -r n h rest; do "
            'printf \'H:%s:\' "$n"; printf %s "$h" | sha256sum; done; true'
        )

    def process(self, output: list[str]) -> AccountState:
        users: dict[str, dict[str, object]] = {}
        groups: dict[str, dict[str, object]] = {}
        hashes: dict[str, str] = {}
        for line in output:
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


class MailboxDirs(FactBase[list[str]]):
    """Directories `base/DOMAIN/USER` under the virtual mail base directory (paths only)."""

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, base_dir: str) -> str:
        return f"find {shlex.quote(base_dir)} -mindepth 2 -maxdepth 2 -type d 2>/dev/null; true"

    def process(self, output: list[str]) -> list[str]:
        return sorted(line.strip() for line in output if line.strip())


@dataclass(frozen=True)
class Snapshot:
    """Everything a deploy compares, read by one command (see `MailHostSnapshot`)."""

    packages: dict[str, str]
    accounts: AccountState
    paths: dict[str, FileState]
    units: dict[str, tuple[str, str]]
    ports: tuple[str, ...]  # local addresses of listening TCP sockets, as `ss` prints them (4th field)
    sockets: frozenset[str]  # the asked-for paths that are UNIX sockets
    mailboxes: tuple[str, ...]  # `base/DOMAIN/USER` directories under the virtual mail base


SECTION = "--mailserver-section:"


class MailHostSnapshot(FactBase[Snapshot]):
    """Installed packages, accounts, managed paths, unit states, listening ports, auth sockets and
    mailbox directories, in one command: the facts a no-change run needs, for one round trip.

    Each part is the command of its own fact (`DebPackageStatus`, `Accounts`, `ManagedPaths`, ...) and is
    parsed by it, so the snapshot and the single facts can never read the host differently.
    """

    @staticmethod
    def default() -> Snapshot:
        return Snapshot({}, AccountState({}, {}), {}, {}, (), frozenset(), ())

    def command(
        self,
        family: str,
        packages: tuple[str, ...],
        users: tuple[str, ...],
        groups: tuple[str, ...],
        paths: tuple[str, ...],
        unit_script: str,
        sockets: tuple[str, ...],
        mailbox_base: str | None,
    ) -> str:
        pkg = DebPackageStatus() if family == "debian" else RpmPackageStatus()
        parts = {
            f"packages-{family}": pkg.command(packages),
            "accounts": Accounts().command(users, groups),
            "paths": ManagedPaths().command(paths),
            "units": unit_script or "true",
            "ports": "ss -Hltn 2>/dev/null",
            "sockets": (
                f'for s in {_q(sockets)}; do [ -S "$s" ] && echo "$s"; done; true' if sockets else "true"
            ),
            "mailboxes": MailboxDirs().command(mailbox_base) if mailbox_base else "true",
        }
        return "; ".join(f"echo {SECTION}{name}; {{ {cmd}; }}" for name, cmd in parts.items())

    def process(self, output: list[str]) -> Snapshot:
        sections: dict[str, list[str]] = {}
        current: list[str] = []
        for line in output:
            if line.startswith(SECTION):
                current = sections.setdefault(line[len(SECTION) :], [])
            else:
                current.append(line)
        get = sections.get
        packages = (
            DebPackageStatus().process(get("packages-debian", []))
            if "packages-debian" in sections
            else RpmPackageStatus().process(get("packages-rhel", []))
        )
        return Snapshot(
            packages=packages,
            accounts=Accounts().process(get("accounts", [])),
            paths=ManagedPaths().process(get("paths", [])),
            units=UnitStates().process(get("units", [])),
            ports=tuple(f[3] for f in (line.split() for line in get("ports", [])) if len(f) >= 4),
            sockets=frozenset(line.strip() for line in get("sockets", []) if line.strip()),
            mailboxes=tuple(MailboxDirs().process(get("mailboxes", []))),
        )
