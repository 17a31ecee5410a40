"""Dovecot: config tree staged and checked with `doveconf -n`, restarted only when an input changed."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver.deploys import init, packages
from pyinfra_mailserver.deploys.ops import (
    activate_config,
    is_under,
    manifest_paths,
    notify,
    register_paths,
    reload_condition,
    sync_file,
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
def configure(manifest: Manifest) -> dict[str, OperationMeta]:
    """Configure phase: upload changed files into the stage, validate the staged tree, activate it."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    staged = set(staged_files(manifest))
    ops = {
        f.path: notify(
            f.reload,
            sync_file(
                name=f"Dovecot file {f.path}", file=f, staged=f.path in staged, secrets=manifest.secrets
            ),
        )
        for f in manifest.files_for("dovecot")
    }
    if staged:
        activate_config(
            name="Check and activate the Dovecot config",
            config_dir=manifest.distro.dovecot_dir,
            checks=CHECKS,
            files=tuple(sorted(staged)),
            service="dovecot",
            reloading=tuple(f.path for f in manifest.files_for("dovecot") if f.reload),
        )
    return ops


@deploy("Dovecot activate")
def activate(manifest: Manifest) -> None:
    """Activate phase: restart after a change, and make sure Dovecot is enabled and running."""
    units = tuple(s.unit for s in manifest.services)
    for s in manifest.services:
        if s.name == "dovecot":
            init.reload_service(
                name="Restart Dovecot", service=s, units=units, _if=reload_condition("dovecot")
            )
            init.ensure_service_running(name="Dovecot enabled and running", service=s, units=units)
