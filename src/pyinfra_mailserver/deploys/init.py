"""Init-system handling in one place (systemd today): unit state fact, start/enable, reload/restart."""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation

from pyinfra_mailserver.deploys.ops import _skipped_by_if, cached, pending_marker, record, restart_marker
from pyinfra_mailserver.manifest import Service


def unit_state_script(units: tuple[str, ...], prefix: str = "") -> str:
    """Shell printing `PREFIX<unit>|<active state>|<enabled state>` per unit (also used by verify).

    A wrapper unit (Debian's postfix.service is a oneshot that stays "active") is only as active as the
    units it consists of (postfix@-.service, the real master), so those are asked too.
    """
    q = " ".join(shlex.quote(u) for u in units)
    return (
        f'for u in {q}; do parts=$(systemctl show -p ConsistsOf --value "$u" 2>/dev/null); '
        'a=$(systemctl is-active "$u" $parts 2>/dev/null | grep -vx active | head -n1); '
        f'printf \'{prefix}%s|%s|%s\\n\' "$u" "${{a:-active}}" "$(systemctl is-enabled "$u" 2>/dev/null)"; '
        "done"
    )


class UnitStates(FactBase[dict[str, tuple[str, str]]]):
    """(active state, enabled state) of each named unit, e.g. ("active", "enabled"), in one command."""

    @staticmethod
    def default() -> dict[str, tuple[str, str]]:
        return {}

    def command(self, units: tuple[str, ...]) -> str:
        return unit_state_script(units)

    def process(self, output: list[str]) -> dict[str, tuple[str, str]]:
        result = {}
        for line in output:
            unit, active, enabled = [*line.split("|"), "", ""][:3]
            result[unit] = (active, enabled)
        return result


# `systemctl is-enabled` answers that count as "starts at boot" (sysv-generated units say "generated").
ENABLED_STATES = {"enabled", "enabled-runtime", "static", "generated", "alias", "indirect"}


def unit_states(units: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """States of the deploy's units, read once per stage of the run (after packages are installed)."""
    return cached(f"units:{units}", lambda: host.get_fact(UnitStates, units=units))


def _started() -> set[str]:
    return cached("started", set)


@operation()
def ensure_service_running(service: Service, units: tuple[str, ...] = ()) -> Generator[Any, None, None]:
    """
    Make a service enabled at boot and running, as the manifest says.

    + service: the manifest's service entry (unit name, enabled, running)
    + units: every unit of the deploy, so one fact reads them all

    **Example:**

    .. code:: python

        ensure_service_running(name="Postfix enabled and running", service=postfix_service)
    """
    active, enabled = unit_states(units or (service.unit,)).get(service.unit, ("", ""))
    cmds = []
    if service.enabled and enabled not in ENABLED_STATES:
        cmds.append(f"systemctl enable {shlex.quote(service.unit)}")
    if service.running and active != "active":
        # started with the config on disk: no reload is pending any more
        unit, pending = shlex.quote(service.unit), shlex.quote(pending_marker(service.name))
        cmds.append(f"systemctl restart {unit} && rm -f {pending}")
        _started().add(service.unit)
        record("reloaded", f"{service.name} (start)")
    if not cmds:
        host.noop(f"{service.unit} is enabled and running")
        return
    yield StringCommand(" && ".join(cmds))


@operation()
def reload_service(service: Service, units: tuple[str, ...] = ()) -> Generator[Any, None, None]:
    """
    Reload (or restart, when the service cannot reload) a running service after its inputs changed.

    + service: the manifest's service entry; `reload=False` means restart
    + units: every unit of the deploy, so one fact reads them all

    Use as a handler: `_if=changed(*ops_that_feed_it)`. A unit that is not running is left to
    `ensure_service_running`, which starts it with the new config anyway.

    **Example:**

    .. code:: python

        reload_service(name="Reload Postfix", service=postfix_service, _if=changed(main_cf_op))
    """
    if _skipped_by_if():
        host.noop(f"{service.unit}: inputs unchanged")
        return
    active, _ = unit_states(units or (service.unit,)).get(service.unit, ("", ""))
    if active != "active" or service.unit in _started():
        host.noop(f"{service.unit} is not running yet; it starts with the new config")
        return
    unit = shlex.quote(service.unit)
    record("reloaded", service.name)
    done = f"rm -f {shlex.quote(pending_marker(service.name))}"  # the activation's marker: reloaded now
    if not service.reload:
        yield StringCommand(f"systemctl restart {unit} && {done}")
        return
    # Some changes cannot be reloaded (Postfix's inet_interfaces / inet_protocols): the activation left a
    # marker for them, and then this restarts instead.
    marker = shlex.quote(restart_marker(service.name))
    yield StringCommand(
        f"if [ -e {marker} ]; then rm -f {marker} && systemctl restart {unit}; "
        f"else systemctl reload {unit}; fi && {done}"
    )
