"""The change engine without a host, as pyinfra tests its own operations: a snapshot in, the changes
(`diff`) and the commands each phase runs for them out, for every change kind."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from mailserver_testdata import EXAMPLE

from pyinfra_mailserver.engine import operations as ops
from pyinfra_mailserver.engine.changes import POLICY_RC_D, Change, diff, sha256_text
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.facts import AccountState, FileState, Snapshot
from pyinfra_mailserver.inventory import load_hosts
from pyinfra_mailserver.manifest import Manifest

STAGE = Stage("/var/lib/pyinfra-mailserver/stage")


def manifest(host: str, release: str = "trixie") -> Manifest:
    (h,) = load_hosts(EXAMPLE, [host])
    return h.manifest(release)


@pytest.fixture
def virtual(secrets_env: Path) -> Manifest:
    return manifest("mx2.example.org")


@pytest.fixture
def saslauthd(secrets_env: Path) -> Manifest:
    return manifest("mx1.example.org")


def clean(m: Manifest) -> Snapshot:
    """The snapshot of a host that is exactly as `m` says (nothing to change)."""
    paths = {
        f.path: FileState(f.path, "file", f.owner, f.group, f.mode, 100, sha256_text(f.content))
        for f in m.files
    }
    for d in (STAGE.directory, *m.directories):
        paths[d.path] = FileState(d.path, "directory", d.owner, d.group, d.mode, 100)
    for mp in m.maps:
        paths[mp.output] = FileState(mp.output, "file", "root", "root", "644", 200, "0" * 64)
    paths[m.tls.key_path] = FileState(m.tls.key_path, "file", "root", "root", "600", 100, "0" * 64)
    groups: dict[str, dict[str, object]] = {g.name: {"gid": g.gid or 100, "members": []} for g in m.groups}
    for u in m.users:
        for g in u.groups:
            groups.setdefault(g, {"gid": 200, "members": []})["members"].append(u.name)  # type: ignore[attr-defined]
        if u.group:
            groups.setdefault(u.group, {"gid": u.uid or 300, "members": []})
    users: dict[str, dict[str, object]] = {
        u.name: {
            "uid": u.uid or 1000,
            "gid": groups[u.group]["gid"] if u.group else 1000,
            "home": u.home or "/",
            "shell": u.shell,
            "groups": sorted(u.groups),
            "password_sha256": sha256_text(u.password_hash) if u.password_hash else None,
        }
        for u in m.users
    }
    return Snapshot(
        packages={p: "1" for p in m.packages},
        accounts=AccountState(users, groups),
        paths=paths,
        units={s.unit: ("active", "enabled") for s in m.services},
        ports=tuple(f"0.0.0.0:{p.port}" for p in m.ports),
        sockets=frozenset(m.sockets),
    )


def kinds(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.kind, c.subject) for c in changes]


def args(command: str) -> list[str]:
    """The arguments a resources/ script is called with (`sh -c SCRIPT NAME ARGS...`)."""
    return shlex.split(command)[4:]


def test_a_host_as_its_manifest_says_has_no_change(virtual: Manifest, saslauthd: Manifest) -> None:
    assert diff(virtual, clean(virtual), STAGE) == []
    assert diff(saslauthd, clean(saslauthd), STAGE) == []


def test_package(virtual: Manifest) -> None:
    snap = clean(virtual)
    snap = replace(
        snap, packages={p: v for p, v in snap.packages.items() if p not in ("postfix", "dovecot-lmtpd")}
    )
    changes = diff(virtual, snap, STAGE)
    assert kinds(changes) == [("package", "postfix"), ("package", "dovecot-lmtpd")]
    assert {c.service for c in changes} == {"system"}
    a = args(ops.packages_command(virtual, ["postfix", "dovecot-lmtpd"]))
    assert a[:4] == ["-F", "debian", "-P", "/usr/sbin/policy-rc.d"]
    assert "postfix postfix/main_mailer_type select Internet Site" in a  # preseeds of what is installed
    assert a[-2:] == ["postfix", "dovecot-lmtpd"]


def test_policy_rc_d_left_behind(virtual: Manifest) -> None:
    snap = clean(virtual)
    hook = virtual.distro.policy_rc_d
    paths = {**snap.paths, hook: FileState(hook, "file", "root", "root", "755", 1, sha256_text(POLICY_RC_D))}
    changes = diff(virtual, replace(snap, paths=paths), STAGE)
    assert kinds(changes) == [("policy-rc-d", hook)]
    assert args(ops.packages_command(virtual, [])) == ["-F", "debian", "-P", hook]  # only the removal


def test_group_user_and_directory(virtual: Manifest) -> None:
    snap = clean(virtual)
    accounts = AccountState({}, {})
    paths = {k: v for k, v in snap.paths.items() if k != "/var/mail/vmail"}
    changes = diff(virtual, replace(snap, accounts=accounts, paths=paths), STAGE)
    assert kinds(changes) == [("group", "vmail"), ("user", "vmail"), ("directory", "/var/mail/vmail")]
    vmail = next(u for u in virtual.users if u.name == "vmail")
    a = args(ops.system_command(virtual.groups, [vmail], virtual.directories, None))
    assert a[:2] == ["-g", "vmail:5000:yes"]
    assert a[2:4] == ["-u", "vmail:5000:vmail:/var/mail/vmail:/usr/sbin/nologin:yes:no::yes"]
    assert a[4:6] == ["-d", "vmail:vmail:00750:/var/mail/vmail"]


def test_a_daemon_user_that_lost_a_group_restarts_its_daemon(saslauthd: Manifest) -> None:
    snap = clean(saslauthd)
    users = dict(snap.accounts.users)
    users["postfix"] = {**users["postfix"], "groups": []}
    changes = diff(saslauthd, replace(snap, accounts=replace(snap.accounts, users=users)), STAGE)
    assert kinds(changes) == [("user", "postfix")]
    assert changes[0].restart == ("postfix",) and "not in group(s) sasl" in changes[0].detail
    postfix = next(s for s in saslauthd.services if s.name == "postfix")
    assert ops.action_for(postfix, changes) == "restart"


def test_password(saslauthd: Manifest) -> None:
    snap = clean(saslauthd)
    users = dict(snap.accounts.users)
    users["bob"] = {**users["bob"], "password_sha256": "f" * 64}
    changes = diff(saslauthd, replace(snap, accounts=replace(snap.accounts, users=users)), STAGE)
    assert kinds(changes) == [("password", "bob")]
    assert "$6$" not in changes[0].detail  # the hash itself is never said
    assert args(ops.system_command((), (), (), STAGE.chpasswd)) == ["-p", STAGE.chpasswd]


def test_file_content_reloads_its_service(virtual: Manifest) -> None:
    snap = clean(virtual)
    main = "/etc/postfix/main.cf"
    paths = {**snap.paths, main: replace(snap.paths[main], sha256="0" * 64, mode="666")}
    changes = diff(virtual, replace(snap, paths=paths), STAGE)
    assert kinds(changes) == [("file", main)]
    assert changes[0].reload == ("postfix",) and "mode 666" in changes[0].detail
    a = args(
        ops.install_files_command(
            STAGE,
            "postfix",
            changes,
            STAGE.bundle("postfix"),
            "/etc/postfix",
            ('silent:postconf -c "$tree" -n',),
            (),
        )
    )
    assert ["-m", STAGE.pending("postfix")] == a[a.index("-m") : a.index("-m") + 2]
    assert ["-b", main, "-i", main] == a[a.index("-b") : a.index("-b") + 4]
    assert a[a.index("-c") : a.index("-c") + 4] == [
        "-c",
        "/etc/postfix",
        "-x",
        'silent:postconf -c "$tree" -n',
    ]
    postfix = next(s for s in virtual.services if s.name == "postfix")
    assert ops.action_for(postfix, changes) == "reload"
    act = args(ops.activate_command(virtual, STAGE, postfix, "reload", False))
    assert act[:8] == ["-S", STAGE.dir, "-n", "postfix", "-u", "postfix", "-a", "reload"]


def test_a_map_source_change_rebuilds_the_table_and_reloads_nothing(virtual: Manifest) -> None:
    snap = clean(virtual)
    aliases = virtual.distro.aliases_file
    paths = {**snap.paths, aliases: replace(snap.paths[aliases], sha256="0" * 64)}
    changes = diff(virtual, replace(snap, paths=paths), STAGE)
    assert kinds(changes) == [("file", aliases), ("map", aliases)]
    assert changes[0].reload == ()
    assert all(ops.action_for(s, changes) == "none" for s in virtual.services)
    table = next(mp for mp in virtual.maps if mp.source == aliases)
    assert args(ops.maps_command(STAGE, (table,))) == [STAGE.dir, f"postalias:hash:{aliases}:{aliases}.db"]


def test_file_attrs_only(virtual: Manifest) -> None:
    snap = clean(virtual)
    users = "/etc/dovecot/users"
    paths = {**snap.paths, users: replace(snap.paths[users], group="root", mode="644")}
    changes = diff(virtual, replace(snap, paths=paths), STAGE)
    assert kinds(changes) == [("file-attrs", users)] and changes[0].reload == ()
    a = args(ops.install_files_command(STAGE, "dovecot", changes, None))
    assert a == ["-S", STAGE.dir, "-n", "dovecot", "-a", f"root:dovecot:640:{users}"]  # no upload


def test_stale_map(virtual: Manifest) -> None:
    snap = clean(virtual)
    table = next(mp for mp in virtual.maps if mp.source.endswith("vmailbox"))
    paths = {**snap.paths, table.output: replace(snap.paths[table.output], mtime=50)}
    changes = diff(virtual, replace(snap, paths=paths), STAGE)
    assert kinds(changes) == [("map", table.source)] and "older than" in changes[0].detail


def test_units_enable_start_and_pending(virtual: Manifest) -> None:
    snap = clean(virtual)
    units = {**snap.units, "postfix": ("active", "disabled"), "dovecot": ("failed", "enabled")}
    paths = {
        **snap.paths,
        STAGE.pending("postfix"): FileState(STAGE.pending("postfix"), "file", "root", "root", "600", 1),
    }
    changes = diff(virtual, replace(snap, units=units, paths=paths), STAGE)
    assert kinds(changes) == [
        ("unit-enable", "postfix"),
        ("pending", STAGE.pending("postfix")),
        ("unit-start", "dovecot"),
    ]
    postfix, dovecot = (next(s for s in virtual.services if s.name == n) for n in ("postfix", "dovecot"))
    assert ops.action_for(postfix, changes) == "reload" and ops.action_for(dovecot, changes) == "start"
    assert "-e" in args(ops.activate_command(virtual, STAGE, postfix, "none", True))


def test_a_unit_of_the_release_before_is_stopped_and_the_service_restarted(virtual: Manifest) -> None:
    snap = clean(virtual)
    changes = diff(virtual, replace(snap, units={**snap.units, "postfix@-.service": ("active", "")}), STAGE)
    assert kinds(changes) == [("unit-replaced", "postfix@-.service")]
    postfix = next(s for s in virtual.services if s.name == "postfix")
    assert ops.action_for(postfix, changes) == "restart"
    a = args(ops.activate_command(virtual, STAGE, postfix, "restart", False))
    assert a[a.index("-o") : a.index("-o") + 2] == ["-o", "postfix@-.service"]


def test_missing_listener_and_socket_restart_their_service(virtual: Manifest) -> None:
    snap = clean(virtual)
    lmtp = next(s for s in virtual.sockets if "lmtp" in s)
    ports = tuple(p for p in snap.ports if not p.endswith(":993"))
    changes = diff(virtual, replace(snap, ports=ports, sockets=snap.sockets - {lmtp}), STAGE)
    assert kinds(changes) == [("listener", "993"), ("socket", lmtp)]
    assert all(c.service == "dovecot" and c.restart == ("dovecot",) for c in changes)


def test_the_tls_key_must_be_private(virtual: Manifest) -> None:
    snap = clean(virtual)
    key = virtual.tls.key_path
    paths = {**snap.paths, key: replace(snap.paths[key], mode="644")}
    assert kinds(diff(virtual, replace(snap, paths=paths), STAGE)) == [("tls-key", key)]


def test_the_stage_is_made_first(virtual: Manifest) -> None:
    snap = clean(virtual)
    paths = {k: v for k, v in snap.paths.items() if k != STAGE.dir}
    assert kinds(diff(virtual, replace(snap, paths=paths), STAGE)) == [("directory", STAGE.dir)]


def test_smoke_check_probes_every_tls_port_and_auth_socket(virtual: Manifest) -> None:
    a = args(ops.smoke_command(virtual, STAGE))
    probes = [a[i + 1] for i, x in enumerate(a) if x == "-p"]
    assert "25:smtp:smtp" in probes and "993:imaps" in probes and "587:submission:smtp" in probes
    assert a[a.index("-k") : a.index("-k") + 2] == ["-k", "/var/spool/postfix/private/auth"]
