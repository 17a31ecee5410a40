"""Dovecot: config tree staged and checked with `doveconf -n`, restarted only when an input changed."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver.deploys import init, packages
from pyinfra_mailserver.deploys.ops import (
    activate_config,
    is_under,
    manifest_paths,
    notify_files,
    register_paths,
    sync_files,
)
from pyinfra_mailserver.manifest import Manifest

# doveconf parses the whole staged tree (includes are relative to dovecot.conf) and exits non-zero on error.
CHECKS = ("doveconf -c {stage}/dovecot.conf -n",)


def staged_files(manifest: Manifest) -> tuple[str, ...]:
    return tuple(
        f.path for f in manifest.files_for("dovecot") if is_under(f.path, manifest.distro.dovecot_dir)
    )


@deploy("Dovecot install")
def install(manifest: Manifest) -> None:
    """Install phase: the manifest's packages (a no-op when the full stack was installed already)."""
    packages.install._inner(manifest)  # type: ignore[attr-defined]


@deploy("Dovecot configure")
def configure(manifest: Manifest) -> OperationMeta:
    """Configure phase: upload changed files into the stage, validate the staged tree, activate it."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    staged = staged_files(manifest)
    files = manifest.files_for("dovecot")
    op = notify_files(
        sync_files(
            name="Dovecot files", files=files, staged=staged, secrets=manifest.secrets, bundle="dovecot"
        ),
        files,
    )
    if staged:
        activate_config(
            name="Check and activate the Dovecot config",
            config_dir=manifest.distro.dovecot_dir,
            checks=CHECKS,
            files=tuple(sorted(staged)),
            service="dovecot",
            reloading=tuple(f.path for f in files if f.reload),
        )
    return op


@deploy("Dovecot activate")
def activate(manifest: Manifest) -> None:
    """Activate phase: restart after a change, and make sure Dovecot is enabled and running."""
    init.activate(
        manifest, "dovecot", reload_name="Restart Dovecot", running_name="Dovecot enabled and running"
    )
