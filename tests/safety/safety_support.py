"""Helpers of the safety tests (issue 6): data variants of one shared deployed host, host snapshots,
a loopback TCP relay that counts connections, and output/secret scanning.

Why a shared host: every guarantee here is about what a *re*-deploy does to a working mail server, and
first deploys are the expensive part (apt). Every test that changes the host's data puts the base data
back and re-deploys before it returns (`SafetyHost.restore`), so the next test starts from the same host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_DIR) not in sys.path:  # reuse the e2e helpers (deploy_fresh, Deployment, group data)
    sys.path.insert(0, str(E2E_DIR))

from e2e_support import MAILSERVER, REPO, Deployment, group_data_source, manifest_of  # noqa: E402

STAGE_DIR = "/var/lib/pyinfra-mailserver/stage"
RELAY_SECRET = "relay-safety.test"
# A relayhost on the controller's bridge address, on a port where nothing listens: mail to foreign
# domains is deferred (connection refused), which gives the queue tests deferred messages without any
# traffic leaving the lab.
RELAY_PORT = 2526


def base_lines(bridge_ip: str) -> list[str]:
    """Data the safety host adds to the e2e virtual data: a relayhost with SASL client credentials (a
    relay credential to look for in outputs) that refuses connections (deferred mail)."""
    return [
        f"_relay['relayhost'] = '[{bridge_ip}]:{RELAY_PORT}'",
        "_relay['credentials'] = {'username': 'safety-relay-user', "
        f"'password': {{'secret': {RELAY_SECRET!r}}}}}",
        "_relay['require_tls'] = False",
    ]


@dataclass
class SafetyHost:
    """The shared deployed host of the safety tests and the means to change and restore its data."""

    dep: Deployment

    @property
    def host(self) -> Any:
        return self.dep.host

    def write_data(self, *lines: str, postfix_extra: dict[str, str] | None = None) -> None:
        """Group data = e2e virtual data + the safety base + `lines` (Python statements on `mailserver`)."""
        src = group_data_source(self.dep.variant, self.dep.bridge_ip, postfix_extra=postfix_extra)
        src += "\n".join([*base_lines(self.dep.bridge_ip), *lines]) + "\n"
        self.dep.group_file.write_text(src)

    def manifest(self) -> Any:
        """The Manifest of the data the group file holds now (dep.manifest is the e2e start data)."""
        return manifest_of(self.dep.group_file, self.dep.fqdn, self.dep.secrets_dir, self.dep.release)

    def generate_secrets(self) -> None:
        r = subprocess.run(
            [MAILSERVER, "secrets", "generate", str(self.dep.inventory)],
            env=self.dep.env,
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout + r.stderr

    def deploy(self, *extra: str) -> dict[str, Any]:
        return self.dep.deploy(*extra)

    def restore(self) -> dict[str, Any]:
        """Back to the base data, deployed and verified; fails the test if that does not work."""
        self.write_data()
        r = self.deploy()
        assert r["success"], f"restore failed: {r['_report']['errors']}\n{r['_stderr'][-3000:]}"
        return r

    def run(self, cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.host.run(cmd, timeout=timeout)

    def check(self, cmd: str) -> str:
        return str(self.host.check(cmd))

    def wait_for(self, cmd: str, timeout: float = 60) -> str:
        return str(self.dep.wait_on_host(cmd, timeout=timeout))

    def smtp_banner(self, timeout: float = 30) -> str:
        """The 220 greeting on port 25 (read from the controller; fails the test without one)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host.ip, 25), timeout=10) as s:
                    data = s.recv(512).decode(errors="replace")
                    s.sendall(b"QUIT\r\n")
                if data.startswith("220"):
                    return data
            except OSError as e:
                last = e
            time.sleep(0.3)
        pytest.fail(f"no SMTP banner on {self.host.ip}:25 within {timeout} s ({last})")

    def imap_greeting(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host.ip, 143), timeout=10) as s:
                    data = s.recv(512).decode(errors="replace")
                if data.startswith("* OK"):
                    return data
            except OSError as e:
                last = e
            time.sleep(0.3)
        pytest.fail(f"no IMAP greeting on {self.host.ip}:143 within {timeout} s ({last})")


# -- host snapshots ---------------------------------------------------------------------------------------


def tree_hashes(h: Any, *roots: str) -> dict[str, str]:
    """sha256 of every regular file under `roots` on the host (path -> hash)."""
    q = " ".join(shlex.quote(r) for r in roots)
    out = h.check(f"find {q} -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum")
    result = {}
    for line in out.splitlines():
        digest, _, path = line.partition("  ")
        result[path] = digest
    return result


def stray_files(h: Any, config_dirs: Iterable[str]) -> list[str]:
    """Files an interrupted or failed deploy might leave: anything in the stage (but the lock/markers
    it documents), and `*.mailserver-new` half-installed copies next to live files."""
    dirs = " ".join(shlex.quote(d) for d in config_dirs)
    out = h.run(
        f"find {STAGE_DIR} -type f 2>/dev/null; find {dirs} -name '*.mailserver-new' 2>/dev/null; true"
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


# -- a loopback relay that counts connections --------------------------------------------------------------


class CountingRelay:
    """Listens on 127.0.0.1 and forwards each connection to (target_ip, 22), counting them.

    Test inventories point `ssh_hostname` at 127.0.0.1 and this port, so a bug can only ever reach
    loopback and a lab host, and the count says whether a run connected at all.
    """

    def __init__(self, target_ip: str, target_port: int = 22) -> None:
        self.target = (target_ip, target_port)
        self.count = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self.count += 1
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        t.start()
        pump(client, upstream)
        t.join(10)
        client.close()
        upstream.close()

    def close(self) -> None:
        self._stop = True
        self._sock.close()


def closed_loopback_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound then released; connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- running the tool ---------------------------------------------------------------------------------------


def run_tool(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command of the product from the repo root, stdin closed, output captured."""
    return subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def deploy_json(inventory: Path, env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any], str]:
    """`mailserver deploy INVENTORY --json`: (exit code, parsed report, stderr)."""
    r = run_tool([MAILSERVER, "deploy", str(inventory), "--json", *extra], env)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        report = {}
    return r.returncode, report, r.stderr


def pyinfra_exe() -> str:
    return str(Path(sys.executable).parent / "pyinfra")


def secret_values(secrets_dir: Path) -> dict[str, str]:
    """Every secret the controller holds (name -> value): hashes, plaintexts, relay passwords, private
    keys (each base64 line of a key counts, so a partial leak is caught too). Certificates are public."""
    values: dict[str, str] = {}
    for p in sorted(secrets_dir.rglob("*")):
        if not p.is_file() or p.suffix == ".crt" or p.name.endswith(".lock"):
            continue
        text = p.read_text(errors="replace").strip()
        if "PRIVATE KEY" in text:
            for i, line in enumerate(text.splitlines()):
                if "-----" not in line and len(line) >= 16:
                    values[f"{p.relative_to(secrets_dir)}#{i}"] = line
        elif len(text) >= 8:
            values[str(p.relative_to(secrets_dir))] = text
            if text.startswith("{") and "}" in text:  # also the hash without its {SCHEME} prefix
                values[f"{p.relative_to(secrets_dir)}(body)"] = text.split("}", 1)[1]
    return values


def leaks(output: str, secrets: dict[str, str]) -> list[str]:
    """Names (never values) of the secrets that occur in `output`."""
    return sorted(name for name, value in secrets.items() if value and value in output)


def world_readable(paths: Iterable[Path]) -> list[str]:
    out = []
    for p in paths:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        if mode & 0o004:
            out.append(f"{p} {oct(mode)}")
    return out
