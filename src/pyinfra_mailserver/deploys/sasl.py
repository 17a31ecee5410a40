"""saslauthd (the PAM-backed SASL variant): defaults file and Postfix's smtpd.conf, restarted on change."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver.deploys import init, packages
from pyinfra_mailserver.deploys.ops import (
    manifest_paths,
    notify_files,
    register_paths,
    sync_files,
)
from pyinfra_mailserver.manifest import Manifest


@deploy("saslauthd install")
def install(manifest: Manifest) -> None:
    """Install phase: the manifest's packages (a no-op when the full stack was installed already)."""
    packages.install._inner(manifest)  # type: ignore[attr-defined]


@deploy("saslauthd configure")
def configure(manifest: Manifest) -> OperationMeta | None:
    """Configure phase: the defaults file (START, MECHANISMS, OPTIONS) and the SASL smtpd.conf."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    files = manifest.files_for("saslauthd")
    if not files:
        return None
    return notify_files(
        sync_files(name="SASL files", files=files, secrets=manifest.secrets, bundle="saslauthd"), files
    )


@deploy("saslauthd activate")
def activate(manifest: Manifest) -> None:
    """Activate phase: restart after a change, and make sure saslauthd is enabled and running."""
    init.activate(
        manifest, "saslauthd", reload_name="Restart saslauthd", running_name="saslauthd enabled and running"
    )
