"""Init-system handling in one place (systemd today): unit state fact, start/enable, reload/restart."""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any, cast

from pyinfra import host
from pyinfra.api import StringCommand, operation

from pyinfra_mailserver.deploys.ops import (
    _skipped_by_if,
    cached,
    pending_marker,
    record,
    reload_condition,
    restart_marker,
    rollback_lines,
    snapshot_part,
)
from pyinfra_mailserver.facts import UnitStates
from pyinfra_mailserver.manifest import Manifest, Service

# `systemctl is-enabled` answers that count as "starts at boot" (sysv-generated units say "generated").
ENABLED_STATES = {"enabled", "enabled-runtime", "static", "generated", "alias", "indirect"}
# `ActiveState`s of a unit whose processes are (still) there
RUNNING_STATES = {"active", "activating", "reloading", "deactivating"}


def unit_states(units: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """States of the deploy's units, read once per stage of the run (after packages are installed)."""
    found = snapshot_part("units", units=units)
    if found is not None:
        return cast(dict[str, tuple[str, str]], found)
    return cached(f"units:{units}", lambda: host.get_fact(UnitStates, units=units))


def still_running_as(service: Service, states: dict[str, tuple[str, str]]) -> tuple[str, ...]:
    """The units of an earlier release this service still runs as (after a dist-upgrade)."""
    return tuple(u for u in service.replaces if states.get(u, ("", ""))[0] in RUNNING_STATES)


def _stop(units: tuple[str, ...]) -> str:
    """Shell that stops `units` and forgets their failed state, before the service's own unit starts."""
    if not units:
        return ""
    q = " ".join(shlex.quote(u) for u in units)
    return f"systemctl stop {q}; systemctl reset-failed {q} 2>/dev/null; "


def _daemon_reload(service: Service) -> str:
    """`systemctl daemon-reload && ` when the deploy manages a drop-in of the unit (it may just have
    changed, and systemd starts a unit from the definition it last read), else nothing."""
    return "systemctl daemon-reload && " if service.daemon_reload else ""


def _started() -> set[str]:
    return cached("started", set)


def or_roll_back(command: str, what: str, services: tuple[Service, ...]) -> str:
    """Shell: `command`, and if it fails, put back the files this run replaced and restart the services.

    Why: a config that every checker accepted can still stop a daemon from starting (a certificate path
    holding garbage, a saslauthd option it rejects); the host must not be left without the service.
    """
    units = tuple(s.unit for s in services)
    pending = tuple(pending_marker(s.name) for s in services)
    fail = "\n".join([f"why={shlex.quote(what + ' failed')}", *rollback_lines(units, pending)])
    return f"{command} || {{ {fail}\n}}"


@operation()
def ensure_service_running(
    service: Service, units: tuple[str, ...] = (), services: tuple[Service, ...] = ()
) -> Generator[Any, None, None]:
    """
    Make a service enabled at boot and running, as the manifest says.

    + service: the manifest's service entry (unit name, enabled, running)
    + units: every unit of the deploy, so one fact reads them all
    + services: every service of the deploy: restarted with the previous files if this one fails to start

    **Example:**

    .. code:: python

        ensure_service_running(name="Postfix enabled and running", service=postfix_service)
    """
    states = unit_states(units or (service.unit,))
    active, enabled = states.get(service.unit, ("", ""))
    stale = still_running_as(service, states)
    cmds = []
    if service.enabled and enabled not in ENABLED_STATES:
        cmds.append(f"systemctl enable {shlex.quote(service.unit)}")
    if service.running and (active != "active" or stale):
        # started with the config on disk: no reload is pending any more
        unit, pending = shlex.quote(service.unit), shlex.quote(pending_marker(service.name))
        start = f"{_stop(stale)}{_daemon_reload(service)}systemctl restart {unit} && rm -f {pending}"
        cmds.append(or_roll_back(start, f"starting {service.unit}", services or (service,)))
        _started().add(service.unit)
        record("reloaded", f"{service.name} (start)")
    if not cmds:
        host.noop(f"{service.unit} is enabled and running")
        return
    yield StringCommand("sh", "-c", shlex.quote(" && ".join(cmds)))


@operation()
def reload_service(
    service: Service, units: tuple[str, ...] = (), services: tuple[Service, ...] = ()
) -> Generator[Any, None, None]:
    """
    Reload (or restart, when the service cannot reload) a running service after its inputs changed.

    + service: the manifest's service entry; `reload=False` means restart
    + units: every unit of the deploy, so one fact reads them all
    + services: every service of the deploy: if the reload fails, the files this run replaced are put
      back and these restarted (`or_roll_back`), and the operation fails saying so

    Use as a handler: `_if=changed(*ops_that_feed_it)`. A unit that is not running is left to
    `ensure_service_running`, which starts it with the new config anyway.

    **Example:**

    .. code:: python

        reload_service(name="Reload Postfix", service=postfix_service, _if=changed(main_cf_op))
    """
    if _skipped_by_if():
        host.noop(f"{service.unit}: inputs unchanged")
        return
    states = unit_states(units or (service.unit,))
    active, _ = states.get(service.unit, ("", ""))
    if active != "active" or service.unit in _started() or still_running_as(service, states):
        host.noop(f"{service.unit} is not running yet; it starts with the new config")
        return
    unit = shlex.quote(service.unit)
    record("reloaded", service.name)
    done = f"rm -f {shlex.quote(pending_marker(service.name))}"  # the activation's marker: reloaded now
    every = services or (service,)
    if not service.reload:
        restart = f"{_daemon_reload(service)}systemctl restart {unit}"
        cmd = or_roll_back(restart, f"restarting {service.unit}", every)
        yield StringCommand("sh", "-c", shlex.quote(f"{cmd} && {done}"))
        return
    # Some changes cannot be reloaded (Postfix's inet_interfaces / inet_protocols): the activation left a
    # marker for them, and then this restarts instead.
    marker = shlex.quote(restart_marker(service.name))
    cmd = or_roll_back(
        f"if [ -e {marker} ]; then rm -f {marker} && systemctl restart {unit}; "
        f"else systemctl reload {unit}; fi",
        f"reloading {service.unit}",
        every,
    )
    yield StringCommand("sh", "-c", shlex.quote(f"{cmd} && {done}"))


def activate(manifest: Manifest, service: str, reload_name: str, running_name: str) -> None:
    """The activate phase every service shares: reload (or restart) after a change of its inputs, then
    make sure it is enabled and running; both roll back to the previous files if the service fails."""
    units = manifest.unit_names()
    for s in manifest.services:
        if s.name == service:
            reload_service(
                name=reload_name,
                service=s,
                units=units,
                services=manifest.services,
                _if=reload_condition(service),
            )
            ensure_service_running(name=running_name, service=s, units=units, services=manifest.services)
