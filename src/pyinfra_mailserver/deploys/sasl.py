"""saslauthd (the PAM-backed SASL variant): defaults file and Postfix's smtpd.conf, restarted on change."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver.deploys import init, packages
from pyinfra_mailserver.deploys.ops import (
    manifest_paths,
    notify,
    register_paths,
    reload_condition,
    sync_file,
)
from pyinfra_mailserver.manifest import Manifest


@deploy("saslauthd install")
def install(manifest: Manifest) -> None:
    """Install phase: the manifest's packages (a no-op when the full stack was installed already)."""
    packages.install._inner(manifest)  # type: ignore[attr-defined]


@deploy("saslauthd configure")
def configure(manifest: Manifest) -> dict[str, OperationMeta]:
    """Configure phase: the defaults file (START, MECHANISMS, OPTIONS) and the SASL smtpd.conf."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    return {
        f.path: notify(f.reload, sync_file(name=f"SASL file {f.path}", file=f, secrets=manifest.secrets))
        for f in manifest.files_for("saslauthd")
    }


@deploy("saslauthd activate")
def activate(manifest: Manifest) -> None:
    """Activate phase: restart after a change, and make sure saslauthd is enabled and running."""
    units = tuple(s.unit for s in manifest.services)
    for s in manifest.services:
        if s.name == "saslauthd":
            init.reload_service(
                name="Restart saslauthd", service=s, units=units, _if=reload_condition("saslauthd")
            )
            init.ensure_service_running(name="saslauthd enabled and running", service=s, units=units)
