"""The deploy's pyinfra operations: each takes the changes of its phase (from one snapshot, see
`changes.diff`) and yields the commands that apply them, or notes that there is nothing to do.

Why not pyinfra's `files.put` and friends: each of those reads the host itself, so a deploy of ~20
files would cost ~50 round trips just to find that nothing changed, and `--diff` would show secrets.
Here the host is read once, and each operation's commands are a function of its changes (tested
without a host: tests/unit/test_operations.py). The shell they run lives in `resources/`.
"""

from __future__ import annotations

import difflib
import hashlib
import tarfile
from collections.abc import Generator, Iterable, Sequence
from io import BytesIO
from typing import Any

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.facts.files import FileContents

from pyinfra_mailserver.engine import shell
from pyinfra_mailserver.engine.changes import Change, services_to
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.manifest import Directory, Group, ManagedFile, Manifest, PostfixMap, Service, User

MASK = "********"


# ---- commands (pure: what each operation runs for its changes)


def packages_command(manifest: Manifest, missing: Sequence[str]) -> str:
    """resources/packages.sh for the missing packages (none: only remove a stale policy-rc.d)."""
    d = manifest.distro
    args = ["-F", str(d.family)]
    if d.policy_rc_d:
        args += ["-P", d.policy_rc_d]
    for pkg, question, kind, value in manifest.debconf:
        if pkg in missing:
            args += ["-d", f"{pkg} {question} {kind} {value}"]
    return shell.command("packages", *args, *missing)


def system_command(
    groups: Iterable[Group], users: Iterable[User], directories: Iterable[Directory], passwords: str | None
) -> str:
    """resources/system.sh for the accounts and directories that differ (`passwords`: a chpasswd file)."""
    args: list[str] = []
    for g in groups:
        args += ["-g", f"{g.name}:{'' if g.gid is None else g.gid}:{'yes' if g.system else 'no'}"]
    for u in users:
        fields = [
            u.name,
            "" if u.uid is None else str(u.uid),
            u.group or "",
            u.home or "",
            u.shell,
            "yes" if u.system else "no",
            "yes" if u.create_home else "no",
            ",".join(u.groups),
            "yes" if u.append_groups else "no",
        ]
        args += ["-u", ":".join(fields)]
    if passwords:
        args += ["-p", passwords]
    for d in directories:
        # the mode with its special bits spelled out (GNU chmod keeps a directory's setgid otherwise)
        args += ["-d", f"{d.owner}:{d.group}:0{d.mode.zfill(4)}:{d.path}"]
    return shell.command("system", *args)


def bundle(files: Iterable[ManagedFile]) -> bytes:
    """A tar of `files` at their host paths, with owner, group, mode and a fixed mtime.

    One upload carries every changed file of a service; root's `tar -xp` restores names and modes, so
    each file is private from the moment it exists in the (root-only) stage.
    """
    out = BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in files:
            data = f.content.encode()
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), int(f.mode, 8), 0
            info.uname, info.gname = f.owner, f.group
            tar.addfile(info, BytesIO(data))
    return out.getvalue()


def install_files_command(
    stage: Stage,
    service: str,
    changes: Sequence[Change],
    tar: str | None,
    config_dir: str = "",
    checks: Sequence[str] = (),
    probes: Sequence[str] = (),
) -> str:
    """resources/install-files.sh for a service's file changes (content: from the uploaded tar;
    attributes: chown/chmod in place). Files whose change reloads a service are backed up first."""
    args = ["-S", stage.dir, "-n", service]
    reloaded = sorted({s for c in changes if c.kind == "file" for s in c.reload})
    for s in reloaded:
        args += ["-m", stage.pending(s)]
    if tar:
        args += ["-t", tar]
    if config_dir:
        args += ["-c", config_dir]
        for c in checks:
            args += ["-x", c]
        for p in probes:
            args += ["-r", p]
    for c in changes:
        if c.kind == "file":
            if c.reload:
                args += ["-b", c.subject]
            args += ["-i", c.subject]
    for c in changes:
        if c.kind == "file-attrs" and c.file is not None:
            f = c.file
            args += ["-a", f"{f.owner}:{f.group}:{f.mode}:{f.path}"]
    return shell.command("install-files", *args)


def maps_command(stage: Stage, maps: Sequence[PostfixMap]) -> str:
    """resources/maps.sh for the tables to rebuild."""
    return shell.command("maps", stage.dir, *(f"{m.command}:{m.type}:{m.source}:{m.output}" for m in maps))


def activate_command(manifest: Manifest, stage: Stage, service: Service, action: str, enable: bool) -> str:
    """resources/activate.sh: reload / restart / start (or only enable) one service, rolling back to
    the previous files and restarting every mail service when that fails."""
    args = ["-S", stage.dir, "-n", service.name, "-u", service.unit, "-a", action]
    if enable:
        args.append("-e")
    if service.daemon_reload and action != "none":
        args.append("-D")
    if action in ("restart", "start"):
        for old in service.replaces:
            args += ["-o", old]
    for s in manifest.services:
        args += ["-R", s.unit, "-M", stage.pending(s.name)]
    return shell.command("activate", *args, libs=("rollback",))


def smoke_command(manifest: Manifest, stage: Stage) -> str:
    """resources/smoke.sh: TLS on every TLS port and every SASL socket, or roll back."""
    starttls = {"smtp": "smtp", "submission": "smtp", "imap": "imap", "pop3": "pop3"}
    args = ["-S", stage.dir]
    for p in manifest.ports:
        if p.tls == "starttls" and p.protocol in starttls:
            args += ["-p", f"{p.port}:{p.protocol}:{starttls[p.protocol]}"]
        elif p.tls == "implicit":
            args += ["-p", f"{p.port}:{p.protocol}"]
    for sock in manifest.auth_sockets():
        args += ["-k", sock]
    for s in manifest.services:
        args += ["-R", s.unit, "-M", stage.pending(s.name)]
    return shell.command("smoke", *args, libs=("rollback",))


def activation(
    manifest: Manifest, service: str, changes: Sequence[Change]
) -> tuple[Service, str, bool] | None:
    """What the activate phase must do to `service`: (the service, its action, whether to enable it at
    boot), or None when it is not on this host or runs its config already."""
    svc = next((s for s in manifest.services if s.name == service), None)
    if svc is None:
        return None
    action = action_for(svc, changes)
    enable = any(c.kind == "unit-enable" and c.service == svc.name for c in changes)
    return None if action == "none" and not enable else (svc, action, enable)


def any_activation(manifest: Manifest, changes: Sequence[Change]) -> bool:
    """Whether this run reloads, restarts or starts any service (then the smoke check runs)."""
    return any(action_for(s, changes) != "none" for s in manifest.services)


def action_for(service: Service, changes: Sequence[Change]) -> str:
    """What the activate phase does to a service after its changes: start, restart, reload or none."""
    mine = [c for c in changes if c.service == service.name and c.kind == "unit-start"]
    if mine:
        return "start"
    if service.name in services_to("restart", changes):
        return "restart"
    if service.name in services_to("reload", changes):
        return "reload" if service.reload else "restart"
    return "none"


# ---- uploads


def _upload(content: bytes, dest: str) -> Generator[Any, None, None]:
    """Upload into the root-only stage. Under sudo the SFTP hop goes through a 0700 dir of the SSH user."""
    temp = None
    args: dict[str, Any] = dict(host.current_op_global_arguments or {})
    if args.get("_sudo") or args.get("_su_user") or args.get("_doas"):
        name = hashlib.sha256(dest.encode()).hexdigest()[:16]
        as_ssh_user: Any = {"_sudo": False, "_su_user": None, "_doas": False}
        yield StringCommand("umask 077 && mkdir -p .pyinfra-mailserver", **as_ssh_user)
        temp = f".pyinfra-mailserver/{name}"
    yield FileUploadCommand(BytesIO(content), dest, remote_temp_filename=temp)


def _mask(text: str, secrets: Sequence[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, MASK)
    return text


def _log_diffs(changes: Sequence[Change], secrets: Sequence[str]) -> None:
    """`--diff`: each changed file as a unified diff from the live one, secrets masked, secret files
    not shown at all."""
    for c in changes:
        f = c.file
        if c.kind != "file" or f is None:
            continue
        exists = not c.detail.endswith("is missing")
        host.log(f"Will {'modify' if exists else 'create'} {f.path}", logger.info)
        if f.secret:
            logger.info("  (secret content: diff masked, %d lines)", len(f.content.splitlines()))
            continue
        old = (host.get_fact(FileContents, path=f.path) or []) if exists else []
        before = [_mask(line, secrets) + "\n" for line in old]
        after = [_mask(line, secrets) + "\n" for line in f.content.splitlines()]
        for line in difflib.unified_diff(before, after, "live", "new", n=1):
            logger.info("  %s", line.rstrip("\n"))


def _failed(state_: Any, host_: Any, message: str) -> bool:
    host_.log_styled(message, fg="red", log_func=logger.error)
    return False


def fail_with(message: str) -> FunctionCommand:
    """A command that fails the operation with `message` (no round trip)."""
    return FunctionCommand(_failed, (message,), {})


# ---- operations


@operation()
def install_packages(manifest: Manifest, changes: tuple[Change, ...]) -> Generator[Any, None, None]:
    """
    Install the missing packages of the mail stack in one transaction, daemons held off.

    + manifest: the host's manifest (package names, debconf answers, the distro's policy-rc.d)
    + changes: this phase's changes (`package`, `policy-rc-d`)

    **Example:**

    .. code:: python

        install_packages(name="Install mail packages", manifest=m, changes=plan.of("system", "package"))
    """
    missing = [c.subject for c in changes if c.kind == "package"]
    if not changes:
        host.noop("all mail packages are installed")
        return
    yield StringCommand(packages_command(manifest, missing))


@operation()
def configure_system(
    manifest: Manifest, stage: Stage, changes: tuple[Change, ...], files: tuple[ManagedFile, ...] = ()
) -> Generator[Any, None, None]:
    """
    Make the mail stack's accounts, directories and system files as the manifest says.

    + manifest: the host's manifest (groups, users, directories)
    + stage: the host's stage (the chpasswd file and uploads wait there, root-only)
    + changes: this phase's changes (`group`, `user`, `password`, `directory`, and system `file`s)
    + files: the files those changes are about

    Password hashes go into a root-only staged file for `chpasswd -e`, never on a command line.

    **Example:**

    .. code:: python

        configure_system(name="Mail users, groups and directories", manifest=m, stage=s, changes=c)
    """
    if not changes:
        host.noop("users, groups and directories are up to date")
        return

    def subjects(kind: str) -> set[str]:
        return {c.subject for c in changes if c.kind == kind}

    # the stage first: every upload below (the chpasswd file, system files) lands in it
    dirs = sorted(
        (d for d in (stage.directory, *manifest.directories) if d.path in subjects("directory")),
        key=lambda d: d.path != stage.dir,
    )
    groups = [g for g in manifest.groups if g.name in subjects("group")]
    users = [u for u in manifest.users if u.name in subjects("user")]
    if groups or users or dirs:
        yield StringCommand(system_command(groups, users, dirs, None))
    hashes = [f"{u.name}:{u.password_hash}" for u in manifest.users if u.name in subjects("password")]
    if hashes:
        yield from _upload(("\n".join(hashes) + "\n").encode(), stage.chpasswd)
        yield StringCommand(system_command((), (), (), stage.chpasswd))
    file_changes = [c for c in changes if c.kind in ("file", "file-attrs")]
    if file_changes:
        yield from _files(manifest, stage, "system", tuple(file_changes))


def _files(
    manifest: Manifest,
    stage: Stage,
    service: str,
    changes: tuple[Change, ...],
    config_dir: str = "",
    checks: tuple[str, ...] = (),
    probes: tuple[str, ...] = (),
) -> Generator[Any, None, None]:
    new = [c.file for c in changes if c.kind == "file" and c.file is not None]
    if state.config.DIFF:
        _log_diffs(changes, manifest.secrets)
    tar = None
    if new:
        tar = stage.bundle(service)
        yield from _upload(bundle(new), tar)
    yield StringCommand(install_files_command(stage, service, changes, tar, config_dir, checks, probes))


@operation()
def install_files(
    manifest: Manifest,
    stage: Stage,
    service: str,
    changes: tuple[Change, ...],
    config_dir: str = "",
    checks: tuple[str, ...] = (),
    probes: tuple[str, ...] = (),
) -> Generator[Any, None, None]:
    """
    Put a service's changed files live: one upload, then checked with the host's own programs (when
    the service has a checker) and installed all at once, or not at all.

    + manifest: the host's manifest (secrets to mask in `--diff`)
    + stage: the host's stage (uploads, backups and markers)
    + service: whose files these are (its markers and backup)
    + changes: this phase's `file` and `file-attrs` changes
    + config_dir: the live directory the checks read (e.g. /etc/postfix); empty: no check
    + checks: `MODE:COMMAND` checks run against `$tree`, the live directory with the new files over it
    + probes: commands whose output, live and new, must be equal for a reload to apply the change

    **Example:**

    .. code:: python

        install_files(name="Check and activate the Postfix config", manifest=m, stage=s,
                      service="postfix", changes=c, config_dir="/etc/postfix",
                      checks=('status:postfix -c "$tree" check',))
    """
    if not changes:
        host.noop(f"{service} files are up to date")
        return
    yield from _files(manifest, stage, service, changes, config_dir, checks, probes)


@operation()
def build_maps(stage: Stage, maps: tuple[PostfixMap, ...]) -> Generator[Any, None, None]:
    """
    Build the Postfix lookup tables whose source changed or whose table is missing or stale.

    + stage: the host's stage (the tables are built there, then renamed into place)
    + maps: the tables to build

    **Example:**

    .. code:: python

        build_maps(name="Build Postfix maps", stage=s, maps=(aliases_map,))
    """
    if not maps:
        host.noop("every map is up to date")
        return
    yield StringCommand(maps_command(stage, maps))


@operation()
def activate_service(
    manifest: Manifest, stage: Stage, service: str, changes: tuple[Change, ...]
) -> Generator[Any, None, None]:
    """
    Make a service run with its config: start it, or reload or restart it after its changes, and
    enable it at boot; a failure rolls back to the previous files.

    + manifest: the host's manifest (its services: this one's unit, reload or restart, drop-in, the
      units it replaces; every one of them is restarted by a rollback)
    + stage: the host's stage (markers and backup)
    + service: the service's name (a host without it: nothing to do)
    + changes: every change of this run (those that ask this service to reload or restart count)

    **Example:**

    .. code:: python

        activate_service(name="Postfix serving its config", manifest=m, stage=s, service="postfix",
                         changes=plan.changes)
    """
    todo = activation(manifest, service, changes)
    if todo is None:
        host.noop(f"{service} runs its config (or is not on this host)")
        return
    svc, action, enable = todo
    yield StringCommand(activate_command(manifest, stage, svc, action, enable))


@operation()
def smoke_check(manifest: Manifest, stage: Stage, changes: tuple[Change, ...]) -> Generator[Any, None, None]:
    """
    After a service was reloaded or restarted: TLS on every port and the SASL sockets, or a rollback.

    + manifest: the host's manifest (ports, sockets, services)
    + stage: the host's stage (backup, markers)
    + changes: every change of this run (nothing reloaded or restarted: nothing to check)
    """
    if not any_activation(manifest, changes):
        host.noop("no service was reloaded")
        return
    yield StringCommand(smoke_command(manifest, stage))
