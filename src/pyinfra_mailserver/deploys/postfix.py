"""Postfix: config files staged and checked with `postfix check` / `postconf -n`, maps built, reloaded."""

from __future__ import annotations

from collections.abc import Callable

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver.deploys import init, packages
from pyinfra_mailserver.deploys.ops import (
    activate_config,
    build_map,
    changed,
    is_under,
    manifest_paths,
    map_is_stale,
    notify,
    register_paths,
    reload_condition,
    sync_file,
)
from pyinfra_mailserver.manifest import Manifest, PostfixMap

# Checks run against the staged tree; `postconf` prints warnings (unknown or mistyped parameters) on
# stderr with exit status 0, so activate_config treats any output of a `postconf` check as an error.
CHECKS = ("postfix -c {stage} check", "postconf -c {stage} -n")
# Parameters `postfix reload` cannot apply (master must be stopped and started): a change restarts.
RESTART_PROBES = ("postconf -c {tree} -h inet_interfaces inet_protocols",)


def staged_files(manifest: Manifest) -> tuple[str, ...]:
    """Postfix files a checker reads: under the config dir and not a map source (maps are compiled)."""
    sources = {m.source for m in manifest.maps}
    return tuple(
        f.path
        for f in manifest.files_for("postfix")
        if is_under(f.path, manifest.distro.postfix_dir) and f.path not in sources
    )


def _source_changed_or_stale(m: PostfixMap, source_op: OperationMeta | None) -> Callable[[], bool]:
    """Rebuild a map when its source changed in this run, or its indexed file is missing or older."""
    source_changed = changed(source_op) if source_op is not None else None
    return lambda: (source_changed is not None and source_changed()) or map_is_stale(m)


@deploy("Postfix install")
def install(manifest: Manifest) -> None:
    """Install phase: the manifest's packages (a no-op when the full stack was installed already)."""
    packages.install._inner(manifest)  # type: ignore[attr-defined]


@deploy("Postfix configure")
def configure(manifest: Manifest) -> dict[str, OperationMeta]:
    """Configure phase: upload changed files, validate and activate the staged tree, build stale maps."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    staged = set(staged_files(manifest))
    ops: dict[str, OperationMeta] = {}
    sources = {m.source for m in manifest.maps}
    for f in manifest.files_for("postfix"):
        # A map source never reloads Postfix: its handler is postmap/postalias, and Postfix notices a
        # rebuilt indexed map by itself. So changing an alias runs newaliases and nothing else.
        ops[f.path] = notify(
            () if f.path in sources else f.reload,
            sync_file(
                name=f"Postfix file {f.path}", file=f, staged=f.path in staged, secrets=manifest.secrets
            ),
        )
    activate_config(
        name="Check and activate the Postfix config",
        config_dir=manifest.distro.postfix_dir,
        checks=CHECKS,
        files=tuple(sorted(staged)),
        restart_when=RESTART_PROBES,
        service="postfix",
        reloading=tuple(f.path for f in manifest.files_for("postfix") if f.path not in sources and f.reload),
    )
    for m in manifest.maps:
        build_map(name=f"{m.command} {m.spec}", map=m, _if=_source_changed_or_stale(m, ops.get(m.source)))
    return ops


@deploy("Postfix activate")
def activate(manifest: Manifest) -> None:
    """Activate phase: reload after a change, and make sure Postfix is enabled and running."""
    units = tuple(s.unit for s in manifest.services)
    for s in manifest.services:
        if s.name == "postfix":
            init.reload_service(
                name="Reload Postfix", service=s, units=units, _if=reload_condition("postfix")
            )
            init.ensure_service_running(name="Postfix enabled and running", service=s, units=units)
