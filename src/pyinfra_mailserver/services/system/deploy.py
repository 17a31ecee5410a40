"""The system's deploy phases: install every package of the stack, then accounts, directories and the
MDA rc files (before any service's files, which are owned by those accounts).

Each phase adds its operation only when the plan has work for it: a run that changes nothing is the
verification alone.
"""

from __future__ import annotations

from pyinfra_mailserver.engine.operations import configure_system, install_packages
from pyinfra_mailserver.engine.plan import DeployPlan


def install(plan: DeployPlan) -> None:
    """Install phase: every missing package of the manifest, in one transaction (daemons held off)."""
    if changes := plan.of("system", "package", "policy-rc-d"):
        install_packages(name="Install mail packages", manifest=plan.manifest, changes=changes)


def configure(plan: DeployPlan) -> None:
    """Configure phase: groups, users (with their password hashes), directories, system files."""
    if changes := plan.of("system", "group", "user", "password", "directory", "file", "file-attrs"):
        configure_system(
            name="Mail users, groups and directories",
            manifest=plan.manifest,
            stage=plan.stage,
            changes=changes,
        )
