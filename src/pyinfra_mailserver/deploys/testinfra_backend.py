"""A testinfra backend that runs its commands over pyinfra's own connection to the current host.

testinfra's modules (package, service, socket, file) then check the host inside the deploy without a
second SSH connection or a second set of credentials, with the operation's sudo/su settings.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from testinfra.backend import base
from testinfra.host import Host as TestinfraHost

_RC = "__mailserver_testinfra_rc="


class PyinfraBackend(base.BaseBackend):
    """testinfra → pyinfra: each `run` is one shell command on the host pyinfra is connected to."""

    NAME = "pyinfra"

    def __init__(self, pyinfra_host: Any, connector_arguments: dict[str, Any] | None = None) -> None:
        super().__init__(pyinfra_host.name)
        self._pyhost = pyinfra_host
        self._args = {k: v for k, v in (connector_arguments or {}).items() if k in CONNECTOR_ARGUMENT_KEYS}
        self.commands = 0

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        self.commands += 1
        # pyinfra reports success, not the exit status testinfra needs: print it after the command.
        _, output = self._pyhost.run_shell_command(
            StringCommand(f"{cmd}; printf '\\n{_RC}%s\\n' $?"), **self._args
        )
        lines = list(output.stdout_lines)
        rc = 1
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith(_RC):
                rc = int(lines[i][len(_RC) :] or 1)
                lines = lines[: i - 1] if i > 0 and lines[i - 1] == "" else lines[:i]
                break
        stdout = "\n".join(lines) + ("\n" if lines else "")
        stderr = "\n".join(output.stderr_lines)
        return self.result(rc, self.encode(cmd), stdout.encode(), stderr.encode())


def testinfra_host(pyinfra_host: Any, connector_arguments: dict[str, Any] | None = None) -> TestinfraHost:
    """A testinfra `Host` for the pyinfra host (use inside an operation, at execution)."""
    backend = PyinfraBackend(pyinfra_host, connector_arguments)
    host = TestinfraHost(backend)
    backend.set_host(host)
    return host
