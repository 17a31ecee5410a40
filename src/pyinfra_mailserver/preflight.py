"""Checks a deploy makes on the controller before it contacts any host (issue 6: bad input).

Why before connecting: invalid data must never cost a connection, let alone a command, on a production
host; and an operator running against a fleet wants every data problem listed at once, without waiting
for SSH timeouts of unrelated hosts. Only the data is checked here (the model, secrets, the distro
override); what needs the host (its os-release) is checked after connecting, before any change.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import ConnectError
from pyinfra.api.state import BaseStateCallback

from pyinfra_mailserver import distro, inventory
from pyinfra_mailserver.model import ModelError
from pyinfra_mailserver.secretstore import SecretError


def host_problem(host: Any, inventory_path: str | os.PathLike[str] | None) -> str | None:
    """Why this pyinfra host cannot be deployed, from its data alone; None when its data is valid."""
    data = inventory.host_data(host)
    override = data.get("mailserver_distro")
    if override and override not in {f.value for f in distro.Family}:
        families = ", ".join(f.value for f in distro.Family)
        return f"DeployError: {host.name}: mailserver_distro {override!r} is not one of {families}"
    try:
        inventory.server_from_data(host.name, data, inventory_path)
    except (ModelError, SecretError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def invalid_hosts(hosts: Iterable[Any], inventory_path: str | os.PathLike[str] | None) -> dict[str, str]:
    """host name -> problem, for every host whose data cannot be deployed (no host is contacted)."""
    problems = {}
    for h in hosts:
        problem = host_problem(h, inventory_path)
        if problem is not None:
            problems[h.name] = problem
    return problems


class RefuseInvalidData(BaseStateCallback):
    """pyinfra state callback: a host whose mail-server data is invalid is failed instead of connected.

    pyinfra's CLI connects to every host before it loads the deploy file, so the model's refusal in
    `deploy_mailserver` would come after a connection. Registered from `config.py` (which the CLI loads
    before the inventory), this checks each host's data as pyinfra is about to connect and makes the
    connection attempt fail at once with the model's message: the host is never contacted, the other
    hosts go on.
    """

    def __init__(self, inventory_path: str | None) -> None:
        self.inventory_path = inventory_path

    def host_before_connect(self, state: Any, host: Any) -> None:  # type: ignore[override]
        problem = host_problem(host, self.inventory_path)
        if problem is None:
            return

        def refuse() -> None:
            raise ConnectError(f"not connecting, the data is invalid: {problem}")

        host.connector.connect = refuse


def cli_inventory_and_deploys() -> tuple[str | None, list[str]]:
    """`pyinfra [OPTIONS] INVENTORY DEPLOY...`: the inventory file and the deploy files of this run
    (the positional arguments that are files)."""
    files = [a for a in sys.argv[1:] if not a.startswith("-") and Path(a).is_file()]
    return (str(Path(files[0]).resolve()) if files else None), files[1:]


def refuse_invalid_data_before_connect(state: Any) -> None:
    """In a `pyinfra INVENTORY .../deploy_mailserver.py` run, check every host's data before connecting.

    Other pyinfra runs (`exec`, facts, other deploys) are left alone: they may have reasons to reach a
    host whose mail-server data is being fixed.
    """
    inventory_path, deploys = cli_inventory_and_deploys()
    if not any(Path(d).name == "deploy_mailserver.py" for d in deploys):
        return
    from pyinfra.context import ctx_state

    real = ctx_state.get() if ctx_state.isset() else state
    init = real.init

    # `State.init` (after the inventory is loaded, before connecting) resets the callback handlers
    def init_then_register(*args: Any, **kwargs: Any) -> Any:
        result = init(*args, **kwargs)
        real.add_callback_handler(RefuseInvalidData(inventory_path))
        return result

    real.init = init_then_register
