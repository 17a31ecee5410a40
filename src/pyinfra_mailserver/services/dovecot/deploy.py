"""Dovecot's deploy phases: the config tree checked with `doveconf -n` before it goes live, then a
reload (its master re-reads the config and replaces its processes)."""

from __future__ import annotations

from pyinfra_mailserver.engine.operations import activate_service, activation, install_files
from pyinfra_mailserver.engine.plan import DeployPlan

# doveconf parses the whole new tree (includes are relative to dovecot.conf) and exits non-zero on error
CHECKS = ('status:doveconf -c "$tree/dovecot.conf" -n',)


def configure(plan: DeployPlan) -> None:
    """Configure phase: dovecot.conf, its conf.d files and the passwd-file, checked and installed."""
    if changes := plan.of("dovecot", "file", "file-attrs"):
        install_files(
            name="Check and activate the Dovecot files",
            manifest=plan.manifest,
            stage=plan.stage,
            service="dovecot",
            changes=changes,
            config_dir=plan.manifest.distro.dovecot_dir,
            checks=CHECKS,
        )


def activate(plan: DeployPlan) -> None:
    """Activate phase: reload after a change, start, enable."""
    if activation(plan.manifest, "dovecot", plan.changes):
        activate_service(
            name="Dovecot serving its config",
            manifest=plan.manifest,
            stage=plan.stage,
            service="dovecot",
            changes=plan.changes,
        )
