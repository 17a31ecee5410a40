"""Checks a deploy makes on the controller before it contacts any host (issue 6: bad input).

Why before connecting: invalid data must never cost a connection, let alone a command, on a production
host; and an operator running against a fleet wants every data problem listed at once, without waiting
for SSH timeouts of unrelated hosts. Only the data is checked here (the model, secrets, the distro
override); what needs the host (its os-release) is checked after connecting, before any change.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

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
