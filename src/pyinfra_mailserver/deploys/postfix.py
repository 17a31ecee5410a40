"""Postfix: config files staged and checked with `postfix check` / `postconf -n`, maps built, reloaded."""

from __future__ import annotations

from dataclasses import replace

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver.deploys import init, packages
from pyinfra_mailserver.deploys.ops import (
    activate_config,
    build_maps,
    is_under,
    manifest_paths,
    notify_files,
    register_paths,
    sync_files,
)
from pyinfra_mailserver.manifest import Manifest

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


@deploy("Postfix install")
def install(manifest: Manifest) -> None:
    """Install phase: the manifest's packages (a no-op when the full stack was installed already)."""
    packages.install._inner(manifest)  # type: ignore[attr-defined]


@deploy("Postfix configure")
def configure(manifest: Manifest) -> OperationMeta:
    """Configure phase: upload changed files, validate and activate the staged tree, build stale maps."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    staged = staged_files(manifest)
    sources = {m.source for m in manifest.maps}
    # A map source never reloads Postfix: its handler is postmap/postalias, and Postfix notices a
    # rebuilt indexed map by itself. So changing an alias rebuilds the alias table and nothing else.
    files = tuple(replace(f, reload=()) if f.path in sources else f for f in manifest.files_for("postfix"))
    reloading = tuple(f.path for f in files if f.reload)
    op = sync_files(
        name="Postfix files", files=files, staged=staged, secrets=manifest.secrets, bundle="postfix"
    )
    notify_files(op, files)
    activate_config(
        name="Check and activate the Postfix config",
        config_dir=manifest.distro.postfix_dir,
        checks=CHECKS,
        files=tuple(sorted(staged)),
        restart_when=RESTART_PROBES,
        service="postfix",
        reloading=reloading,
    )
    if manifest.maps:
        build_maps(
            name="Build maps: " + ", ".join(f"{m.command} {m.spec}" for m in manifest.maps),
            maps=manifest.maps,
        )
    return op


@deploy("Postfix activate")
def activate(manifest: Manifest) -> None:
    """Activate phase: reload after a change, and make sure Postfix is enabled and running."""
    init.activate(
        manifest, "postfix", reload_name="Reload Postfix", running_name="Postfix enabled and running"
    )
