"""saslauthd's deploy phases: its defaults file (and unit drop-in), then a restart (it cannot reload)."""

from __future__ import annotations

from pyinfra_mailserver.engine.operations import activate_service, activation, install_files
from pyinfra_mailserver.engine.plan import DeployPlan


def configure(plan: DeployPlan) -> None:
    """Configure phase: the defaults file (MECHANISMS, OPTIONS with the socket in Postfix's chroot)."""
    if changes := plan.of("saslauthd", "file", "file-attrs"):
        install_files(
            name="saslauthd files",
            manifest=plan.manifest,
            stage=plan.stage,
            service="saslauthd",
            changes=changes,
        )


def activate(plan: DeployPlan) -> None:
    """Activate phase: restart after a change (re-reading a changed drop-in first), start, enable."""
    if activation(plan.manifest, "saslauthd", plan.changes):
        activate_service(
            name="saslauthd serving its config",
            manifest=plan.manifest,
            stage=plan.stage,
            service="saslauthd",
            changes=plan.changes,
        )
