"""Checks a deploy makes on the controller before it contacts any host.

Why before connecting: invalid data must never cost a connection, let alone a command, on a production
host; and an operator running against a fleet wants every data problem listed at once, without waiting
for SSH timeouts of unrelated hosts. Only the data is checked here (the model, secrets, the distro
override); what needs the host (its os-release) is checked after connecting, before any change.

`mailserver deploy` leaves an invalid host out and deploys the others. pyinfra's own command line
(`pyinfra INVENTORY deploys/deploy_mailserver.py`) offers no public way to leave one host out once it
has read the inventory, so its config file (the repository's `config.py`, read before the inventory)
reads the inventory itself and refuses the whole run, listing every problem, when any host's data is
invalid.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
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


def cli_run() -> tuple[str | None, list[str], list[str], dict[str, str]]:
    """`pyinfra [OPTIONS] INVENTORY DEPLOY...`: the inventory file, the deploy files, the --limit
    values and the --data overrides of this run."""
    argv = sys.argv[1:]
    files = [a for a in argv if not a.startswith("-") and Path(a).is_file()]
    limits, data = [], {}
    for flag, value in itertools.pairwise(argv):
        if flag == "--limit":
            limits += value.split(",")
        elif flag == "--data" and "=" in value:
            key, _, val = value.partition("=")
            data[key] = val
    inventory_file = str(Path(files[0]).resolve()) if files else None
    return inventory_file, files[1:], limits, data


def refuse_invalid_data() -> None:
    """In a `pyinfra INVENTORY .../deploy_mailserver.py` run, check every host's data before pyinfra
    reads the inventory and connects; exit (nothing contacted) listing each host's problem.

    Other pyinfra runs (`exec`, facts, other deploys) are left alone: they may have reasons to reach a
    host whose mail-server data is being fixed.
    """
    import fnmatch

    inventory_file, deploys, limits, data = cli_run()
    if inventory_file is None or not any(Path(d).name == "deploy_mailserver.py" for d in deploys):
        return
    inv = inventory.load_pyinfra_inventory(inventory_file, None, data)
    hosts = [
        h
        for h in inv
        if not limits
        or any(fnmatch.fnmatch(h.name, x) or x in h.groups or h.name.split(".")[0] == x for x in limits)
    ]
    mail_hosts = [h for h in hosts if inventory.DATA_KEY in inventory.host_data(h)]
    problems = invalid_hosts(mail_hosts, inventory_file)
    if problems:
        for name, problem in problems.items():
            print(f"[{name}] not connecting, the data is invalid: {problem}", file=sys.stderr)
        print(
            f"pyinfra-mailserver: {len(problems)} host(s) with invalid data; no host was contacted "
            "(fix the data, or deploy the others with --limit)",
            file=sys.stderr,
        )
        raise SystemExit(1)
