"""The one comparison of a host with its manifest: `diff(manifest, snapshot) -> list[Change]`.

The deploy applies the changes (one operation per service phase, each taking its own), drift reports
them, and the verification at the end of a deploy takes a fresh snapshot and requires the diff to be
empty. Pure Python: the snapshot goes in, the changes come out, nothing touches a host.

Each change says which service it belongs to (whose phase applies it) and what it asks of services
once applied: a reload (a config file changed, or an earlier run installed config and never reloaded)
or a restart (a unit that is not running, a listener or socket that is missing, an account the daemon
runs as that changed: a running process keeps the groups it started with).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.facts import Snapshot, SnapshotSpec
from pyinfra_mailserver.manifest import ManagedFile, Manifest

Kind = Literal[
    "package",  # not installed
    "policy-rc-d",  # our daemon-start hook left behind by a host that went down
    "group",  # missing, or another gid
    "user",  # missing, or other uid, home, shell, primary or supplementary groups
    "password",  # the shadow hash differs from the data's
    "directory",  # missing, or other owner, group, mode
    "file",  # missing or other content
    "file-attrs",  # right content, other owner, group or mode
    "map",  # the indexed table is missing or older than its source
    "unit-enable",  # not enabled at boot
    "unit-start",  # not running
    "unit-replaced",  # a unit of the release before still runs the daemon
    "pending",  # an earlier run installed config and did not get to reload
    "listener",  # the service runs, but nothing listens on one of its ports
    "socket",  # the service runs, but one of its sockets is missing
    "tls-key",  # the key the daemons serve is missing or readable by others (whoever made it)
]

# `ActiveState`s of a unit whose processes are (still) there
RUNNING_STATES = frozenset({"active", "activating", "reloading", "deactivating"})
# `systemctl is-enabled` answers that count as "starts at boot" (SysV-generated units say "generated")
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "generated", "alias", "indirect"})
# how long the verification waits for a restarted service's ports and sockets
VERIFY_WAIT_SECONDS = 15


@dataclass(frozen=True)
class Change:
    """One way the host differs from its manifest."""

    kind: Kind
    subject: str  # a path, package, account, unit or port
    service: str  # whose phase applies it: system, tls, postfix, sasl, dovecot
    detail: str  # what differs, as a sentence (no secret ever: content is compared by hash)
    reload: tuple[str, ...] = ()  # services to reload once it is applied
    restart: tuple[str, ...] = ()  # services to restart once it is applied
    file: ManagedFile | None = field(default=None, compare=False, repr=False)


def sha256_text(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def snapshot_spec(manifest: Manifest, stage: Stage, files: Sequence[ManagedFile] = ()) -> SnapshotSpec:
    """What to read of the host to compare it with `manifest` (and the generated `files`, e.g. TLS)."""
    m = manifest
    paths = {f.path for f in (*m.files, *files)} | {d.path for d in m.directories} | {stage.dir}
    paths |= {mp.source for mp in m.maps} | {mp.output for mp in m.maps}
    paths |= {p for p in (m.tls.cert_path, m.tls.key_path, m.tls.ca_path) if p}
    paths |= {stage.pending(s.name) for s in m.services}
    if m.distro.policy_rc_d:
        paths.add(m.distro.policy_rc_d)
    users = tuple(u.name for u in m.users)
    groups = sorted(
        {g.name for g in m.groups}
        | {g for u in m.users for g in u.groups}
        | {u.group for u in m.users if u.group}
    )
    base = mailbox_base(m)
    return SnapshotSpec(
        family=str(m.distro.family),
        packages=m.packages,
        users=users,
        groups=tuple(groups),
        paths=tuple(sorted(paths)),
        units=m.unit_names(),
        parts=m.distro.unit_parts,
        sockets=m.sockets,
        ports=tuple(sorted({p.port for p in m.ports})),
        mailbox_base=base,
    )


def mailbox_base(m: Manifest) -> str | None:
    """The virtual mail base directory (`base/DOMAIN/USER/Maildir` of every virtual account), if any."""
    bases = {a.mailbox.rstrip("/").rsplit("/", 3)[0] for a in m.accounts if a.kind == "virtual"}
    return bases.pop() if len(bases) == 1 else None


def diff(manifest: Manifest, snap: Snapshot, stage: Stage, files: Sequence[ManagedFile] = ()) -> list[Change]:
    """Every way the host (`snap`) differs from `manifest` (plus generated `files`, e.g. TLS), in the
    order a deploy applies them."""
    m = manifest
    out: list[Change] = []
    out += _packages(m, snap)
    out += _accounts(m, snap)
    out += _directories(m, snap, stage)
    out += _files(m, snap, files)
    out += _tls_key(m, snap)
    out += _maps(m, snap, out)
    out += _units(m, snap, stage)
    return out


def _packages(m: Manifest, snap: Snapshot) -> list[Change]:
    out = [
        Change("package", p, "system", f"package {p} is not installed")
        for p in m.packages
        if p not in snap.packages
    ]
    hook = m.distro.policy_rc_d
    st = snap.paths.get(hook) if hook else None
    if st is not None and st.sha256 == sha256_text(POLICY_RC_D):
        out.append(Change("policy-rc-d", hook, "system", f"{hook} of an interrupted install is still there"))
    return out


# The policy-rc.d the package install puts in place while apt runs (resources/packages.sh writes the
# same text): found afterwards, it is one a host that went down left behind.
POLICY_RC_D = "#!/bin/sh\n# pyinfra-mailserver: no daemon starts with a stock config\nexit 101\n"


def _daemon_services(m: Manifest, user: str) -> tuple[str, ...]:
    """The services whose daemons run as `user` (a change to its groups needs their restart)."""
    d = m.distro
    runs_as = {d.postfix_user: "postfix", d.dovecot_user: "dovecot"}
    name = runs_as.get(user)
    return tuple(s.name for s in m.services if s.name == name)


def _accounts(m: Manifest, snap: Snapshot) -> list[Change]:
    out: list[Change] = []
    have_groups = snap.accounts.groups
    for g in m.groups:
        have = have_groups.get(g.name)
        if have is None:
            out.append(Change("group", g.name, "system", f"group {g.name}: missing"))
        elif g.gid is not None and have["gid"] != g.gid:
            out.append(
                Change("group", g.name, "system", f"group {g.name}: gid {have['gid']}, expected {g.gid}")
            )
    for u in m.users:
        have = snap.accounts.users.get(u.name)
        if have is None:
            out.append(
                Change(
                    "user", u.name, "system", f"user {u.name}: missing", restart=_daemon_services(m, u.name)
                )
            )
        else:
            bad: list[str] = []
            if u.uid is not None and have["uid"] != u.uid:
                bad.append(f"uid {have['uid']}, expected {u.uid}")
            if u.home and have["home"] != u.home:
                bad.append(f"home {have['home']}, expected {u.home}")
            if have["shell"] != u.shell:
                bad.append(f"shell {have['shell']}, expected {u.shell}")
            if u.group:
                gid = have_groups.get(u.group, {}).get("gid")
                if gid is None or gid != have["gid"]:
                    bad.append(f"primary group is not {u.group}")
            member_of = have.get("groups") or []
            missing = [g for g in u.groups if g not in member_of]  # type: ignore[operator]
            if missing:
                bad.append(f"not in group(s) {', '.join(missing)}")
            if bad:
                restart = _daemon_services(m, u.name) if missing else ()
                out.append(
                    Change("user", u.name, "system", f"user {u.name}: " + "; ".join(bad), restart=restart)
                )
        if u.password_hash and (have is None or have.get("password_sha256") != sha256_text(u.password_hash)):
            out.append(
                Change("password", u.name, "system", f"user {u.name}: password differs from the data's hash")
            )
    return out


def _directories(m: Manifest, snap: Snapshot, stage: Stage) -> list[Change]:
    out = []
    for d in (stage.directory, *m.directories):
        st = snap.paths.get(d.path)
        if st is None or st.kind != "directory":
            out.append(Change("directory", d.path, "system", f"{d.path}: missing directory"))
            continue
        bad = []
        if (st.owner, st.group) != (d.owner, d.group):
            bad.append(f"owner {st.owner}:{st.group}, expected {d.owner}:{d.group}")
        if not st.mode_matches(d.mode):
            bad.append(f"mode {st.mode}, expected {d.mode}")
        if bad:
            out.append(Change("directory", d.path, "system", f"{d.path}: " + "; ".join(bad)))
    return out


def _files(m: Manifest, snap: Snapshot, generated: Sequence[ManagedFile]) -> list[Change]:
    out = []
    sources = {mp.source for mp in m.maps}
    for f in (*m.files, *generated):
        # a map source never reloads anything: its table is rebuilt, and Postfix notices a new table
        reload = () if f.path in sources else f.reload
        st = snap.paths.get(f.path)
        if st is None or st.kind != "file":
            what = "is missing" if st is None else f"is a {st.kind}, not a file"
            out.append(Change("file", f.path, f.service, f"{f.path} {what}", reload=reload, file=f))
            continue
        attrs = []
        if (st.owner, st.group) != (f.owner, f.group):
            attrs.append(f"owner {st.owner}:{st.group}, expected {f.owner}:{f.group}")
        if not st.mode_matches(f.mode):
            attrs.append(f"mode {st.mode}, expected {f.mode}")
        if st.sha256 != sha256_text(f.content):
            note = " (secret file: not shown)" if f.secret else ""
            detail = "; ".join([f"{f.path}: content differs{note}", *attrs])
            out.append(Change("file", f.path, f.service, detail, reload=reload, file=f))
        elif attrs:
            detail = f"{f.path} is {st.owner}:{st.group} {st.mode}, expected {f.owner}:{f.group} {f.mode}"
            out.append(Change("file-attrs", f.path, f.service, detail, file=f))
    return out


def _tls_key(m: Manifest, snap: Snapshot) -> list[Change]:
    """The private key, whoever put it there (the operator's own with TLS `files`): there, and readable
    by root (and its group, when that is not root) only."""
    path = m.tls.key_path
    st = snap.paths.get(path)
    if st is None:
        return [Change("tls-key", path, "tls", f"TLS key {path} is missing")]
    if int(st.mode, 8) & (0o077 if st.group == "root" else 0o007):
        return [Change("tls-key", path, "tls", f"TLS key {path} is readable by others (mode {st.mode})")]
    return []


def _maps(m: Manifest, snap: Snapshot, so_far: Iterable[Change]) -> list[Change]:
    changed = {c.subject for c in so_far if c.kind == "file"}
    out = []
    for mp in m.maps:
        src, table = snap.paths.get(mp.source), snap.paths.get(mp.output)
        if table is None:
            detail = f"{mp.output} is missing"
        elif src is not None and table.mtime < src.mtime:
            detail = f"{mp.output} is older than {mp.source}: Postfix uses stale data"
        elif mp.source in changed:
            detail = f"{mp.output} is rebuilt from the new {mp.source}"
        else:
            continue
        out.append(Change("map", mp.source, "postfix", detail))
    return out


def _units(m: Manifest, snap: Snapshot, stage: Stage) -> list[Change]:
    out: list[Change] = []
    listening = snap.listening
    for s in m.services:
        active, enabled = snap.units.get(s.unit, ("unknown", "unknown"))
        if s.enabled and enabled not in ENABLED_STATES:
            out.append(
                Change(
                    "unit-enable",
                    s.unit,
                    s.name,
                    f"service {s.unit} is not enabled at boot ({enabled or 'unknown'})",
                )
            )
        running = active == "active"
        if s.running and not running:
            out.append(
                Change(
                    "unit-start",
                    s.unit,
                    s.name,
                    f"service {s.unit} is not running ({active or 'unknown'})",
                    restart=(s.name,),
                )
            )
        for old in s.replaces:
            if snap.units.get(old, ("", ""))[0] in RUNNING_STATES:
                out.append(
                    Change(
                        "unit-replaced",
                        old,
                        s.name,
                        f"service {s.name} still runs as {old} (a unit of the release before)",
                        restart=(s.name,),
                    )
                )
        if stage.pending(s.name) in snap.paths:
            out.append(
                Change(
                    "pending",
                    stage.pending(s.name),
                    s.name,
                    f"{s.name}: config installed by an earlier run was never reloaded",
                    reload=(s.name,),
                )
            )
        for p in m.ports:
            if p.service == s.name and p.port not in listening:
                out.append(
                    Change(
                        "listener",
                        str(p.port),
                        s.name,
                        f"nothing listens on port {p.port} ({p.protocol})",
                        restart=(s.name,),
                    )
                )
    names = [s.name for s in m.services]
    auth = m.auth_sockets()
    for sock in m.sockets:
        # saslauthd makes its mux, Dovecot its auth and LMTP sockets
        owner = "saslauthd" if sock.endswith("/mux") else "dovecot"
        owner = owner if owner in names else names[0]
        if sock not in snap.sockets:
            what = "auth socket" if sock in auth else "socket"
            out.append(Change("socket", sock, owner, f"{what} {sock} is missing", restart=(owner,)))
    return out


def of_service(changes: Iterable[Change], service: str, *kinds: Kind) -> list[Change]:
    """The changes a service's phase applies (all of its kinds, or only `kinds`)."""
    return [c for c in changes if c.service == service and (not kinds or c.kind in kinds)]


def services_to(action: Literal["reload", "restart"], changes: Iterable[Change]) -> set[str]:
    """The services the changes ask to reload (or restart) once they are applied."""
    return {s for c in changes for s in (c.reload if action == "reload" else c.restart)}
