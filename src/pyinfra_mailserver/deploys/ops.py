"""The deploy's own pyinfra operations: files compared by one fact, uploaded through a private stage.

Why not `files.put`: it costs two or three commands per file even when nothing changed, shows content in
`--diff` without masking, and with an SFTP upload the new file exists for a moment with the SFTP server's
default mode. Here one `ManagedPaths` fact (hash + stat of every managed path, once per stage of the run)
decides what changed, an unchanged file costs no command at all (`host.noop`), and a changed file is
written into a root-only 0700 stage directory, given its owner and mode there, then copied next to its
target and renamed over it, so a key is never readable on the host, even briefly.

Files of a config tree with a checker (Postfix, Dovecot) stay in the stage until `activate_config`
validated the whole staged tree with the host's own programs; a failed check leaves the live config as it
was.
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import shlex
import tarfile
import weakref
from collections.abc import Callable, Generator, Iterable
from io import BytesIO
from typing import Any, cast

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host
from pyinfra.facts.files import FileContents

from pyinfra_mailserver.facts import (
    Accounts,
    AccountState,
    FileState,
    MailHostSnapshot,
    ManagedPaths,
    Snapshot,
)
from pyinfra_mailserver.manifest import Directory, Group, ManagedFile, Manifest, PostfixMap, User

# Where changed files wait (root-only) before they replace the live ones; host data can move it.
DEFAULT_STAGE_DIR = "/var/lib/pyinfra-mailserver/stage"
MASK = "********"

# Suffix of the indexed file each Postfix map type writes next to its source.
MAP_SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb", "dbm": ".pag", "sdbm": ".pag"}


def stage_dir() -> str:
    return str(host.data.get("mailserver_stage_dir") or DEFAULT_STAGE_DIR)


def staged_path(path: str) -> str:
    """Where a live path waits in the stage: the stage mirrors absolute paths under `root/`."""
    return posixpath.join(stage_dir(), "root", path.lstrip("/"))


def sha256_text(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def map_output(m: PostfixMap) -> str:
    return m.source + MAP_SUFFIX.get(m.type, ".db")


# -- per-host, per-stage caches ---------------------------------------------------------------------
#
# pyinfra 3 does not cache facts and evaluates each operation twice (once to plan at prepare, once at
# execute). One `ManagedPaths` read per stage serves every file operation of that stage: the prepare
# read plans, the execute read (taken at the first file operation, after packages are installed) decides.

_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def _host_cache() -> dict[tuple[Any, ...], Any]:
    return _CACHE.setdefault(ctx_host.get(), {})


def cached(key: str, load: Callable[[], Any]) -> Any:
    """Load a value once per host and per stage of the run (prepare, execute)."""
    cache = _host_cache()
    k = (id(state), int(state.current_stage), key)
    if k not in cache:
        cache[k] = load()
    return cache[k]


def register_paths(paths: Iterable[str]) -> None:
    """Declare every path the deploy manages before the first file operation, so one fact reads them all."""
    cache = _host_cache()
    known: set[str] = cache.setdefault(("paths", id(state)), set())
    known.update(paths)


def manifest_paths(manifest: Manifest) -> set[str]:
    """Every path whose state one `ManagedPaths` fact reads: files, TLS files, directories, map outputs."""
    paths = {f.path for f in manifest.files} | {d.path for d in manifest.directories}
    paths |= {m.source for m in manifest.maps} | {map_output(m) for m in manifest.maps}
    plan = manifest.tls
    paths |= {p for p in (plan.cert_path, plan.key_path, plan.ca_path) if p}
    paths |= {pending_marker(s.name) for s in manifest.services}
    paths.add(stage_dir())
    if manifest.distro.policy_rc_d:  # a stale one is removed (deploys/packages.py)
        paths.add(manifest.distro.policy_rc_d)
    return paths


# -- the snapshot: every fact of a run in one command ------------------------------------------------
#
# `deploy_mailserver` registers what its operations will ask (packages, accounts, paths, units, sockets,
# mailbox directories); the first of them to ask reads it all in one `MailHostSnapshot`, and the others
# are served from it. The package install changes the host under it, so installing starts a new
# snapshot for the operations after it. A service deploy used on its own registers nothing and each
# accessor falls back to its own fact.


def register_snapshot(**spec: Any) -> None:
    """Declare the arguments of this run's `MailHostSnapshot` (see above)."""
    _host_cache()[("snapshot-spec", id(state))] = spec
    register_paths(spec["paths"])


def snapshot_spec() -> dict[str, Any] | None:
    return _host_cache().get(("snapshot-spec", id(state)))


def snapshot() -> Snapshot | None:
    """The registered snapshot, read once per stage of the run (and again after an install), or None."""
    spec = snapshot_spec()
    if spec is None:
        return None
    epoch = cached("snapshot-epoch", lambda: [0])[0]
    args = {k: v for k, v in spec.items() if k != "units"}  # `units` is what unit_script asks about
    if epoch == 0 and state.current_stage == StateStage.Execute:
        # pyinfra's CLI plans (Prepare) right before it executes, under this run's host lock: until the
        # first operation changes the host, what the plan read is what execution would read again
        planned = _host_cache().get((id(state), int(StateStage.Prepare), "snapshot:0"))
        if planned is not None:
            return cached("snapshot:0", lambda: planned)
    return cached(f"snapshot:{epoch}", lambda: host.get_fact(MailHostSnapshot, **args))


def snapshot_part(part: str, **asked: Any) -> Any:
    """The snapshot's `part` when this run registered exactly `asked` (e.g. packages=...), else None:
    then the caller reads its own fact."""
    spec = snapshot_spec()
    if spec is None or any(spec.get(k) != v for k, v in asked.items()):
        return None
    return getattr(snapshot(), part)


def host_changed() -> None:
    """Say that an operation is about to change what the snapshot read (the package install)."""
    if state.is_executing:
        cached("snapshot-epoch", lambda: [0])[0] += 1


def nothing_changed_yet() -> bool:
    """No operation of this run changed the current host so far (execution only)."""
    data = state.ops.get(ctx_host.get(), {})
    return all(not (d.operation_meta.is_complete() and d.operation_meta.did_change()) for d in data.values())


def path_states(*needed: str) -> dict[str, FileState]:
    """Hash + stat of all registered paths: one command per stage of the run.

    A path not registered yet (a service deploy used on its own) is added, and the set read again:
    correct first, fast when the caller registered everything up front as `deploy_mailserver` does.
    """
    register_paths(needed)
    paths = tuple(sorted(_host_cache()[("paths", id(state))]))
    spec = snapshot_spec()
    if spec is not None and set(paths) <= set(spec["paths"]):
        snap = snapshot()
        assert snap is not None
        return snap.paths
    return cached(f"paths:{hash(paths)}", lambda: host.get_fact(ManagedPaths, paths=paths))


def _staged_set() -> set[str]:
    return cached("staged", set)


def changed(*metas: OperationMeta) -> Callable[[], bool]:
    """A condition for `_if` that is true when any of `metas` changed the host.

    Unlike `any_changed`, it also answers while planning (before execution), from `will_change`, so the
    handler operations below can show an honest plan in `--dry`.
    """

    def condition() -> bool:
        for m in metas:
            if m.is_complete():
                if m.did_change():
                    return True
            elif m.will_change:
                return True
        return False

    return condition


def _skipped_by_if() -> bool:
    """While planning, pyinfra ignores `_if`; evaluate it ourselves so `--dry` shows no phantom changes."""
    if state.is_executing:
        return False  # pyinfra already evaluated _if before calling us
    args: dict[str, Any] = dict(host.current_op_global_arguments or {})
    conds = args.get("_if")
    if not conds:
        return False
    conds = conds if isinstance(conds, list) else [conds]
    for cond in conds:
        try:
            if not cond():
                return True
        except RuntimeError:  # a plain `op.did_change` before execution: assume it may change
            continue
    return False


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, MASK)
    return text


def _log_diff(
    path: str, exists: bool, old: list[str], new: str, secret: bool, secrets: tuple[str, ...]
) -> None:
    host.log(f"Will {'modify' if exists else 'create'} {path}", logger.info)
    if secret:
        logger.info("  (secret content: diff masked, %d lines)", len(new.splitlines()))
        return
    before = [_mask(line, secrets) + "\n" for line in old]
    after = [_mask(line, secrets) + "\n" for line in new.splitlines()]
    for line in difflib.unified_diff(before, after, "live", "new", n=1):
        logger.info("  %s", line.rstrip("\n"))


def _upload(content: str, dest: str) -> Generator[Any, None, None]:
    """Upload text into the stage (see `_upload_bytes`)."""
    yield from _upload_bytes(content.encode(), dest)


def _upload_bytes(content: bytes, dest: str) -> Generator[Any, None, None]:
    """Upload into the stage. Under sudo the SFTP hop goes through a 0700 dir of the SSH user."""
    temp = None
    args: dict[str, Any] = dict(host.current_op_global_arguments or {})
    if args.get("_sudo") or args.get("_su_user") or args.get("_doas"):
        name = hashlib.sha256(dest.encode()).hexdigest()[:16]
        as_ssh_user: Any = {"_sudo": False, "_su_user": None, "_doas": False}
        yield StringCommand("umask 077 && mkdir -p .pyinfra-mailserver", **as_ssh_user)
        temp = f".pyinfra-mailserver/{name}"
    yield FileUploadCommand(BytesIO(content), dest, remote_temp_filename=temp)


def _install_staged(live: str, staged: str) -> str:
    """Shell to put a staged file in place: copy next to the target (umask 077), rename over it."""
    new = f"{live}.mailserver-new"
    return (
        f"umask 077 && cp -p {shlex.quote(staged)} {shlex.quote(new)} "
        f"&& mv -f {shlex.quote(new)} {shlex.quote(live)} && rm -f {shlex.quote(staged)}"
    )


def _bundle(files: Iterable[ManagedFile]) -> bytes:
    """A tar of `files` laid out as under the stage's `root/`, with owner, group, mode and a fixed mtime.

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


def stage_directory() -> Directory:
    """The stage as a directory `ensure_directories` makes (root-only), with the mail directories."""
    return Directory(stage_dir(), "root", "root", "700")


def _stage_ready() -> bool:
    """The stage exists, is root's and 0700 (start-of-stage view), so no `mkdir` round trip is needed."""
    cur = path_states(stage_dir()).get(stage_dir())
    return cur is not None and cur.kind == "directory" and cur.owner == "root" and cur.mode_matches("700")


def _prepare_stage() -> Generator[Any, None, None]:
    """Create the root-only stage once per run when it is missing (or fix its mode)."""
    if _stage_ready() or cached("stage-made", lambda: [False])[0]:
        return
    cached("stage-made", lambda: [False])[0] = True
    # The stage is root-only even if something else made it first: everything below it is private.
    q = shlex.quote(stage_dir())
    yield StringCommand(f"umask 077 && mkdir -p {q} && chmod 700 {q}")


def changed_paths() -> set[str]:
    """Managed files `sync_files` found different on the host in this stage of the run (plan or execute)."""
    return cached("changed-paths", set)


@operation()
def sync_files(
    files: tuple[ManagedFile, ...],
    staged: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
    bundle: str = "files",
) -> Generator[Any, None, None]:
    """
    Make a service's managed files match their rendered content, owner, group and mode, all at once.

    + files: the manifest entries (path, content, owner, group, mode, secret, reload)
    + staged: paths to leave in the stage for `activate_config` to validate and install
    + secrets: strings to mask in `--diff` output
    + bundle: a name for the upload (one per service, e.g. "postfix")

    Unchanged files cost nothing; changed ones travel in one tar into the root-only stage and go live
    in one command (copied next to the target and renamed over it). A file whose change reloads a service
    is backed up first and a pending-reload marker left, so a failed restart or smoke check can roll it
    back (deploys/safety.py) and an interrupted run still reloads.

    **Example:**

    .. code:: python

        sync_files(name="Postfix files", files=manifest.files_for("postfix"), staged=staged_postfix_files)
    """
    states = path_states(*(f.path for f in files))
    new: list[ManagedFile] = []
    attrs: list[ManagedFile] = []
    for f in files:
        cur = states.get(f.path)
        if cur is not None and cur.sha256 == sha256_text(f.content):
            if not (cur.owner == f.owner and cur.group == f.group and cur.mode_matches(f.mode)):
                attrs.append(f)
            continue
        new.append(f)
    if not new and not attrs:
        host.noop(f"{len(files)} file(s) up to date")
        return
    # noted before the first yield: planning stops at it, and later operations must see the plan
    changed_paths().update(f.path for f in new + attrs)
    _staged_set().update(f.path for f in new if f.path in staged)
    for f in new + attrs:
        record("files_changed", f.path)
    if state.config.DIFF:
        for f in new:
            cur = states.get(f.path)
            old: list[str] = []
            if cur is not None and not f.secret:
                old = host.get_fact(FileContents, path=f.path) or []
            _log_diff(f.path, cur is not None, old, f.content, f.secret, secrets)
    script = ["set -u; umask 077"]
    if new:
        yield from _prepare_stage()
        tar = posixpath.join(stage_dir(), f"bundle-{bundle}.tar")
        yield from _upload_bytes(_bundle(new), tar)
        root = posixpath.join(stage_dir(), "root")
        script.append(
            f"mkdir -p {shlex.quote(root)} && tar -xpf {shlex.quote(tar)} -C {shlex.quote(root)} "
            f"--same-owner --no-overwrite-dir; rc=$?; rm -f {shlex.quote(tar)}; [ $rc -eq 0 ] || exit 1"
        )
        live = [f for f in new if f.path not in staged]
        script += [_backup(f.path) for f in live if f.reload]
        reloads = sorted({s for f in live for s in f.reload})
        script += [f"touch {shlex.quote(pending_marker(s))}" for s in reloads]
        script += [_install_staged(f.path, staged_path(f.path)) + " || exit 1" for f in live]
    for f in attrs:
        chown, chmod = ["chown", f"{f.owner}:{f.group}", f.path], ["chmod", f.mode, f.path]
        script.append(f"{shlex.join(chown)} && {shlex.join(chmod)} || exit 1")
    yield StringCommand("sh", "-c", shlex.quote("\n".join(script)))


def _checker_failed(state: Any, host: Any, message: str) -> bool:
    host.log_styled(message, fg="red", log_func=logger.error)
    return False


def restart_marker(service: str) -> str:
    """A file the activation leaves when a change needs a restart rather than a reload."""
    return posixpath.join(stage_dir(), f"restart-{service}")


def pending_marker(service: str) -> str:
    """A file the activation leaves until the service has been reloaded with the new config.

    Why: a run killed after the new files went live but before the reload would otherwise leave no
    trace, and the re-run (seeing no file change) would never reload: the service would keep running
    the old config. `reload_condition` also fires when this marker exists; the handler removes it.
    """
    return posixpath.join(stage_dir(), f"pending-{service}")


def backup_dir() -> str:
    """Copies of live files replaced by an activation, kept until the smoke check passed (rollback)."""
    return posixpath.join(stage_dir(), "backup")


def _backup(live: str) -> str:
    """Shell: keep the live file (or a note that it did not exist) unless a backup is already kept —
    the first copy is the last config known to work, even across an interrupted run."""
    b = shlex.quote(posixpath.join(backup_dir(), live.lstrip("/")))
    d, q = shlex.quote(posixpath.dirname(posixpath.join(backup_dir(), live.lstrip("/")))), shlex.quote(live)
    return (
        f"if [ ! -e {b} ] && [ ! -e {b}.created ]; then mkdir -p {d} && "
        f"if [ -e {q} ]; then cp -p {q} {b}; else touch {b}.created; fi; fi || exit 1"
    )


def rollback_lines(units: tuple[str, ...], pending: tuple[str, ...]) -> list[str]:
    """Shell lines that put back every file kept in `backup_dir()`, restart `units`, and fail saying why.

    `$why` must hold what went wrong. A `.created` note stands for a file that did not exist before: its
    new version is removed. The pending-reload markers go too: the restart applies the restored files.
    """
    b = shlex.quote(backup_dir())
    restart = " ".join(shlex.quote(u) for u in units)
    return [
        f"n=0; if [ -d {b} ]; then",
        f"  cd {b} && for f in $(find . -type f | sed 's|^\\.||'); do",
        '    case "$f" in',
        '      *.created) rm -f "${f%.created}";;',
        '      *) cp -p ".$f" "$f.mailserver-new" && mv -f "$f.mailserver-new" "$f";;',
        "    esac; n=$((n+1))",
        "  done",
        "fi",
        f"cd / && rm -rf {b} {' '.join(shlex.quote(p) for p in pending)}",
        f"systemctl restart {restart}",
        'if [ "$n" -gt 0 ]; then',
        f'  echo "$why: rolled back, $n file(s) of the previous config restored and {" ".join(units)} '
        'restarted" >&2',
        "else",
        '  echo "$why: nothing to roll back" >&2',
        "fi",
        "exit 1",
    ]


def pending_reload(service: str) -> bool:
    """A previous run installed config for `service` and did not get to reload it (start-of-stage view)."""
    return pending_marker(service) in path_states()


@operation()
def activate_config(
    config_dir: str,
    checks: tuple[str, ...],
    files: tuple[str, ...],
    restart_when: tuple[str, ...] = (),
    service: str = "",
    reloading: tuple[str, ...] | None = None,
) -> Generator[Any, None, None]:
    """
    Validate a staged config tree with the host's own programs, then install its changed files.

    + config_dir: the live directory the checkers read (e.g. /etc/postfix)
    + checks: shell commands run against the staged tree; `{stage}` is replaced by its path; a non-zero
      exit (or, for `postconf`, any warning on stderr) aborts with the checker's message
    + files: the managed files of this tree; those waiting in the stage are installed
    + restart_when: shell probes run with `{tree}` = live then staged dir; if any prints different
      output the service needs a restart, not a reload (`restart_marker(service)` is left for the handler)
    + service: the service name the restart marker is for
    + reloading: the files whose change makes the service reload (default: all of `files`); when one of
      them is installed, the live copies are kept for a rollback (`backup_dir`) and a pending-reload
      marker is left until the service has been reloaded (`pending_marker`)

    The staged tree is a copy of the live directory overlaid with the staged files, so a checker sees
    exactly what will be live. Nothing live changes unless every check passed.

    **Example:**

    .. code:: python

        activate_config(
            name="Check and activate Postfix config",
            config_dir="/etc/postfix",
            checks=("postfix -c {stage} check",),
            files=("/etc/postfix/main.cf", "/etc/postfix/master.cf"),
        )
    """
    waiting = [f for f in files if f in _staged_set()]
    if not waiting:
        host.noop(f"no staged change under {config_dir}")
        return
    # Checked in a fresh copy of the live tree overlaid with exactly this run's staged files, so a file
    # left in the stage by an interrupted run is never what gets validated.
    tree = posixpath.join(stage_dir(), "check", config_dir.lstrip("/"))
    q_tree, q_live = shlex.quote(tree), shlex.quote(config_dir)
    script = [
        "set -u; umask 077",
        f"rm -rf {q_tree} && mkdir -p {q_tree} && cp -a {q_live}/. {q_tree}/ || exit 1",
        *(
            shlex.join(["cp", "-p", staged_path(f), posixpath.join(tree, posixpath.relpath(f, config_dir))])
            + " || exit 1"
            for f in waiting
        ),
        'fail() { printf "%s\\n" "$1" >&2; printf "%s\\n" "$2" | tr -d "\\r" >&2; '
        + " ".join(f"rm -f {shlex.quote(staged_path(f))};" for f in waiting)
        + f" rm -rf {q_tree}; exit 1; }}",
    ]
    for check in checks:
        cmd = check.replace("{stage}", tree)
        # `postfix` writes its errors only to syslog unless stderr is a terminal: run it on a pty
        # (script) so the deploy can show the checker's own message.
        run = f"{{ script -qec {shlex.quote(cmd)} /dev/null 1>&2; }}" if check.startswith("postfix ") else cmd
        script.append(
            f"out=$({run} 2>&1 >/dev/null); rc=$?; "
            f'[ $rc -eq 0 ] || fail "check failed: {cmd} (exit $rc)" "$out"'
        )
        if check.startswith("postconf"):  # postconf warns on stderr and still exits 0
            script.append(f'[ -z "$out" ] || fail "check failed: {cmd} printed warnings" "$out"')
    marker = shlex.quote(restart_marker(service or posixpath.basename(config_dir)))
    for probe in restart_when:
        live, new = probe.replace("{tree}", q_live), probe.replace("{tree}", q_tree)
        script.append(f'[ "$({live} 2>/dev/null)" = "$({new} 2>/dev/null)" ] || touch {marker}')
    reload_files = [f for f in waiting if reloading is None or f in reloading]
    if reload_files:
        script += [_backup(f) for f in reload_files]  # for a rollback (deploys/safety.py)
        script.append(f"touch {shlex.quote(pending_marker(service or posixpath.basename(config_dir)))}")
    for f in waiting:
        script.append(_install_staged(f, staged_path(f)) + " || exit 1")
    script.append(f"rm -rf {q_tree} {shlex.quote(staged_path(config_dir))}")
    yield StringCommand("sh", "-c", shlex.quote("\n".join(script)))


@operation()
def build_maps(maps: tuple[PostfixMap, ...]) -> Generator[Any, None, None]:
    """
    Build the Postfix lookup tables whose source changed in this run, or whose indexed file is stale.

    + maps: the manifest's map entries

    Each table is built from a copy of its source in the root-only stage, then copied next to the live
    table and renamed over it: Postfix never reads a half-written table, and a run killed mid-build
    leaves the live table as it was (still older than its source, so the next run rebuilds it).

    **Example:**

    .. code:: python

        build_maps(name="Postfix maps", maps=manifest.maps)
    """
    todo = [m for m in maps if m.source in changed_paths() or map_is_stale(m)]
    if not todo:
        host.noop("every map is up to date")
        return
    yield from _prepare_stage()
    work = posixpath.join(stage_dir(), "maps")
    script = ["set -u; umask 077", f"rm -rf {shlex.quote(work)} && mkdir -p {shlex.quote(work)} || exit 1"]
    for i, m in enumerate(todo):
        # a numbered copy: two sources may share a file name (/etc/aliases, /etc/postfix/aliases)
        tmp = posixpath.join(work, f"{i}-{posixpath.basename(m.source)}")
        built, live = map_output(PostfixMap(tmp, m.type, m.command)), map_output(m)
        src, new = shlex.quote(m.source), shlex.quote(live + ".mailserver-new")
        # the table is exactly as readable as its source (a relay password map stays root-only)
        # -o: keep root privileges (the copy lives in the root-only stage, whatever its source's owner)
        script.append(
            f"cp -p {src} {shlex.quote(tmp)} "
            f"&& {m.command} -o {shlex.quote(f'{m.type}:{tmp}')} "
            f"&& cp {shlex.quote(built)} {new} && chown --reference={src} {new} "
            f"&& chmod --reference={src} {new} && mv -f {new} {shlex.quote(live)} || exit 1"
        )
    script.append(f"rm -rf {shlex.quote(work)}")
    yield StringCommand("sh", "-c", shlex.quote("\n".join(script)))


def map_is_stale(m: PostfixMap) -> bool:
    """The indexed file is missing or older than its source, per the start-of-stage snapshot."""
    paths = path_states(m.source, map_output(m))
    src, out = paths.get(m.source), paths.get(map_output(m))
    return src is not None and (out is None or out.mtime < src.mtime)


@operation()
def ensure_directories(directories: tuple[Directory, ...]) -> Generator[Any, None, None]:
    """
    Make directories exist with their owner, group and mode, all fixed by one command.

    + directories: the manifest's directory entries

    **Example:**

    .. code:: python

        ensure_directories(name="Mail directories", directories=manifest.directories)
    """
    paths = path_states(*(d.path for d in directories))
    todo = []
    for d in directories:
        cur = paths.get(d.path)
        if (
            cur
            and cur.kind == "directory"
            and cur.owner == d.owner
            and cur.group == d.group
            and cur.mode_matches(d.mode)
        ):
            continue
        todo.append(d)
    if not todo:
        host.noop("directories are up to date")
        return
    if any(d.path == stage_dir() for d in todo):  # the file operations need no mkdir of their own
        cached("stage-made", lambda: [False])[0] = True
    # `chmod 00750`, not `750`: GNU chmod keeps a directory's setgid bit (inherited from a setgid
    # parent such as /var/mail) unless the mode spells the special bits out.
    yield StringCommand(
        " && ".join(
            shlex.join(["install", "-d", "-o", d.owner, "-g", d.group, d.path])
            + " && "
            + shlex.join(["chmod", "0" + d.mode.zfill(4), d.path])
            for d in todo
        )
    )


def account_names(
    users: tuple[User, ...], groups: tuple[Group, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The user and group names whose state `ensure_accounts` compares."""
    names = tuple(u.name for u in users)
    group_names = tuple(
        sorted(
            {g.name for g in groups}
            | {g for u in users for g in u.groups}
            | {u.group for u in users if u.group}
        )
    )
    return names, group_names


def account_state(users: tuple[User, ...], groups: tuple[Group, ...]) -> AccountState:
    names, group_names = account_names(users, groups)
    found = snapshot_part("accounts", users=names, groups=group_names)
    if found is not None:
        return cast(AccountState, found)
    return cached(
        f"accounts:{names}:{group_names}", lambda: host.get_fact(Accounts, users=names, groups=group_names)
    )


@operation()
def ensure_accounts(groups: tuple[Group, ...], users: tuple[User, ...]) -> Generator[Any, None, None]:
    """
    Make groups and users exist with their ids, home, shell, supplementary groups and password hash.

    + groups: the manifest's groups
    + users: the manifest's users; `password_hash` (SHA512-CRYPT) is set through `chpasswd -e` from a
      root-only staged file, never on a command line

    **Example:**

    .. code:: python

        ensure_accounts(name="Mail users and groups", groups=manifest.groups, users=manifest.users)
    """
    current = account_state(users, groups)
    cmds: list[str] = []
    for g in groups:
        have = current.groups.get(g.name)
        if have is None:
            opts = (["--system"] if g.system else []) + (["--gid", str(g.gid)] if g.gid is not None else [])
            cmds.append(shlex.join(["groupadd", *opts, g.name]))
        elif g.gid is not None and have["gid"] != g.gid:
            cmds.append(shlex.join(["groupmod", "--gid", str(g.gid), g.name]))
    passwords: list[str] = []
    for u in users:
        have = current.users.get(u.name)
        if have is None:
            opts = ["--shell", u.shell]
            opts += ["--system"] if u.system else []
            opts += ["--uid", str(u.uid)] if u.uid is not None else []
            opts += ["--gid", u.group] if u.group else []
            opts += ["--home-dir", u.home] if u.home else []
            opts += ["--create-home"] if u.create_home else ["--no-create-home"]
            opts += ["--groups", ",".join(u.groups)] if u.groups else []
            if u.group is None and not u.system:
                opts += ["--user-group"]
            cmds.append(shlex.join(["useradd", *opts, u.name]))
        else:
            mod: list[str] = []
            if u.uid is not None and have["uid"] != u.uid:
                mod += ["--uid", str(u.uid)]
            if u.home and have["home"] != u.home:
                mod += ["--home", u.home]
            if have["shell"] != u.shell:
                mod += ["--shell", u.shell]
            if u.group:
                gid = current.groups.get(u.group, {}).get("gid")
                if gid is None or gid != have["gid"]:
                    mod += ["--gid", u.group]
            missing = [g for g in u.groups if g not in have["groups"]]  # type: ignore[operator]
            if missing:
                mod += (
                    ["--append", "--groups", ",".join(missing)]
                    if u.append_groups
                    else ["--groups", ",".join(u.groups)]
                )
            if mod:
                cmds.append(shlex.join(["usermod", *mod, u.name]))
        if u.password_hash and (have is None or have.get("password_sha256") != sha256_text(u.password_hash)):
            passwords.append(f"{u.name}:{u.password_hash}")
    if not cmds and not passwords:
        host.noop("users and groups are up to date")
        return
    if cmds:
        yield StringCommand(" && ".join(cmds))
    if passwords:
        target = posixpath.join(stage_dir(), "chpasswd")
        yield StringCommand(f"umask 077 && mkdir -p {shlex.quote(stage_dir())}")
        yield from _upload("\n".join(passwords) + "\n", target)
        yield StringCommand(
            f"chpasswd -e < {shlex.quote(target)}; rc=$?; rm -f {shlex.quote(target)}; exit $rc"
        )


def fail_with(message: str) -> FunctionCommand:
    """A command that fails the operation with `message` (no round trip)."""
    return FunctionCommand(_checker_failed, (message,), {})


# -- handlers: which operations feed which service ----------------------------------------------------


def _triggers() -> dict[str, list[tuple[OperationMeta, frozenset[str] | None]]]:
    return _host_cache().setdefault(("triggers", id(state)), {})


def notify(services: Iterable[str], op: OperationMeta, paths: Iterable[str] | None = None) -> OperationMeta:
    """Record that `op` changing means each of `services` must reload (see `reload_condition`).

    With `paths`, only a change to one of those paths counts (a `sync_files` operation carries a whole
    service's files, some of which, like map sources, reload nothing).
    """
    only = None if paths is None else frozenset(paths)
    for s in services:
        _triggers().setdefault(s, []).append((op, only))
    return op


def notify_files(op: OperationMeta, files: Iterable[ManagedFile]) -> OperationMeta:
    """`notify` each service some of `files` reload, for exactly the files that reload it."""
    by_service: dict[str, set[str]] = {}
    for f in files:
        for svc in f.reload:
            by_service.setdefault(svc, set()).add(f.path)
    for name, paths in by_service.items():
        notify([name], op, paths)
    return op


def reload_condition(service: str) -> Callable[[], bool]:
    """`_if` condition: true when any operation that notified `service` changed the host, or when an
    earlier, interrupted run activated config for it and never reloaded (`pending_marker`)."""
    triggers = [(changed(op), only) for op, only in _triggers().get(service, [])]

    def condition() -> bool:
        for op_changed, only in triggers:
            if op_changed() and (only is None or only & changed_paths()):
                return True
        return pending_reload(service)

    return condition


def is_under(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def record(key: str, value: str) -> None:
    """Note something this run did on the current host (read back by `host_record`); execution only."""
    if state.is_executing:
        _host_cache().setdefault(("record", id(state), key), []).append(value)


def host_record(host_obj: Any, key: str) -> list[str]:
    """What `record` noted for `host_obj` during the current run (e.g. "reloaded" services)."""
    for (kind, *rest), value in _CACHE.get(host_obj, {}).items():
        if kind == "record" and rest[1] == key:
            return list(value)
    return []
