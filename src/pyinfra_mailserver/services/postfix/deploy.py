"""Postfix's deploy phases: the config checked with `postfix check` and `postconf` before it goes live,
the lookup tables built, then a reload (or a restart, for what a reload cannot change)."""

from __future__ import annotations

from pyinfra_mailserver.engine.operations import activate_service, activation, build_maps, install_files
from pyinfra_mailserver.engine.plan import DeployPlan

# Checks of the new tree (`$tree`: the live /etc/postfix with the new files laid over it). postconf
# prints warnings (unknown or mistyped parameters) on stderr and still exits 0, so its output counts
# as a failure; `postfix check` writes its errors only to syslog unless it runs on a terminal.
CHECKS = ('pty:postfix -c "$tree" check', 'silent:postconf -c "$tree" -n')
# Parameters `postfix reload` cannot apply (the master must be stopped and started): a change restarts.
RESTART_PROBES = ('postconf -c "$tree" -h inet_interfaces inet_protocols',)


def configure(plan: DeployPlan) -> None:
    """Configure phase: main.cf, master.cf and the map sources checked and installed, stale tables built."""
    m = plan.manifest
    if changes := plan.of("postfix", "file", "file-attrs"):
        install_files(
            name="Check and activate the Postfix files",
            manifest=m,
            stage=plan.stage,
            service="postfix",
            changes=changes,
            config_dir=m.distro.postfix_dir,
            checks=CHECKS,
            probes=RESTART_PROBES,
        )
    stale = {c.subject for c in plan.of("postfix", "map")}
    if maps := tuple(mp for mp in m.maps if mp.source in stale):
        build_maps(
            name="Build maps: " + ", ".join(f"{mp.command} {mp.spec}" for mp in maps),
            stage=plan.stage,
            maps=maps,
        )


def activate(plan: DeployPlan) -> None:
    """Activate phase: reload after a change, restart when a reload cannot apply it, start, enable."""
    if activation(plan.manifest, "postfix", plan.changes):
        activate_service(
            name="Postfix serving its config",
            manifest=plan.manifest,
            stage=plan.stage,
            service="postfix",
            changes=plan.changes,
        )
