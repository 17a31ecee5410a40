"""The system's deploy phases: install every package of the stack, then accounts, directories and the
MDA rc files (before any service's files, which are owned by those accounts)."""

from __future__ import annotations

from pyinfra.api import deploy

from pyinfra_mailserver.engine.operations import configure_system, install_packages
from pyinfra_mailserver.engine.plan import DeployPlan


@deploy("System install")
def install(plan: DeployPlan) -> None:
    """Install phase: every missing package of the manifest, in one transaction (daemons held off)."""
    install_packages(
        name="Install mail packages",
        manifest=plan.manifest,
        changes=plan.of("system", "package", "policy-rc-d"),
    )


@deploy("System configure")
def configure(plan: DeployPlan) -> None:
    """Configure phase: groups, users (with their password hashes), directories, system files."""
    configure_system(
        name="Mail users, groups and directories",
        manifest=plan.manifest,
        stage=plan.stage,
        changes=plan.of("system", "group", "user", "password", "directory", "file", "file-attrs"),
    )
