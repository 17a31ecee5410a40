"""testinfra, the language each deploy step is verified in: a backend that runs its commands over
pyinfra's own connection to the current host, and the checks the services' `checks` modules are made of.

Through the backend, testinfra's modules (package, service, socket, file) check the host inside the
deploy without a second SSH connection or a second set of credentials, with the operation's sudo/su
settings; the lab tests hand the same checks a testinfra host of their own (paramiko).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from testinfra.backend import base
from testinfra.host import Host as TestinfraHost

from pyinfra_mailserver.manifest import Directory, ManagedFile, Port, Service

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


# ---- what each service's checks are made of (services/<name>/checks.py compose them per phase)


def packages_installed(t: TestinfraHost, names: Iterable[str]) -> list[str]:
    return [f"package {p} is not installed" for p in names if not t.package(p).is_installed]


def files_as_manifest(t: TestinfraHost, files: Iterable[ManagedFile]) -> list[str]:
    """Each file exists with its owner, group and mode (content is the snapshot's job: a sha256)."""
    found = []
    for f in files:
        tf = t.file(f.path)
        if not tf.exists:
            found.append(f"file {f.path} is missing")
        elif (tf.user, tf.group, tf.mode) != (f.owner, f.group, int(f.mode, 8)):
            found.append(
                f"file {f.path} is {tf.user}:{tf.group} {tf.mode:o}, expected {f.owner}:{f.group} {f.mode}"
            )
    return found


def directories_as_manifest(t: TestinfraHost, dirs: Iterable[Directory]) -> list[str]:
    found = []
    for d in dirs:
        td = t.file(d.path)
        if not td.is_directory:
            found.append(f"directory {d.path} is missing")
        elif (td.user, td.group) != (d.owner, d.group):
            found.append(f"directory {d.path} is {td.user}:{td.group}, expected {d.owner}:{d.group}")
    return found


def unit_running(t: TestinfraHost, service: Service) -> list[str]:
    svc = t.service(service.unit)
    found = []
    if service.running and not svc.is_running:
        found.append(f"service {service.unit} is not running")
    if service.enabled and not svc.is_enabled:
        found.append(f"service {service.unit} is not enabled at boot")
    return found


def listening(t: TestinfraHost, ports: Iterable[Port]) -> list[str]:
    have = {sock.rsplit(":", 1)[-1] for sock in t.socket.get_listening_sockets() if sock.startswith("tcp")}
    return [f"nothing listens on port {p.port} ({p.protocol})" for p in ports if str(p.port) not in have]


def sockets_exist(t: TestinfraHost, paths: Iterable[str]) -> list[str]:
    return [f"socket {s} is missing" for s in paths if not t.file(s).is_socket]
