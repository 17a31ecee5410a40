"""The shell that runs on hosts: scripts in `resources/`, sent with their arguments as one command."""

from __future__ import annotations

import shlex
from functools import cache

from pyinfra_mailserver import PACKAGE_DIR

RESOURCES = PACKAGE_DIR / "resources"


@cache
def script(name: str) -> str:
    """The text of `resources/NAME.sh`."""
    return (RESOURCES / f"{name}.sh").read_text()


quote = shlex.quote


def command(name: str, *args: str, libs: tuple[str, ...] = ()) -> str:
    """`sh -c SCRIPT NAME ARGS...`: the script (after the `libs` it calls, e.g. rollback) travels with
    the command, so nothing has to be installed on the host first and every host runs this version."""
    body = "".join(script(lib) for lib in libs) + script(name)
    return shlex.join(["sh", "-c", body, name, *args])
