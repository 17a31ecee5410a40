"""fail2ban's deploy phases: the jail and filter files checked with `fail2ban-client -t` before they go
live, then a restart (bans in effect are kept in fail2ban's database)."""

from __future__ import annotations

from pyinfra_mailserver.engine.operations import activate_service, activation, install_files
from pyinfra_mailserver.engine.plan import DeployPlan

# fail2ban-client reads the whole new configuration tree (jail.conf, jail.d/, filters) and exits non-zero
# on a missing filter, a bad option or a jail without a log source
CHECKS = ('status:fail2ban-client -c "$tree" -t',)


def configure(plan: DeployPlan) -> None:
    """Configure phase: the jail file, checked and installed."""
    if changes := plan.of("fail2ban", "file", "file-attrs"):
        install_files(
            name="Check and activate the fail2ban jails",
            manifest=plan.manifest,
            stage=plan.stage,
            service="fail2ban",
            changes=changes,
            config_dir=plan.manifest.distro.fail2ban_dir,
            checks=CHECKS,
        )


def activate(plan: DeployPlan) -> None:
    """Activate phase: restart after a change (a reload leaves its journal readers deaf), start, enable."""
    if activation(plan.manifest, "fail2ban", plan.changes):
        activate_service(
            name="fail2ban running its jails",
            manifest=plan.manifest,
            stage=plan.stage,
            service="fail2ban",
            changes=plan.changes,
        )
