"""End-to-end support: deploy a fresh lab host per SASL variant with `mailserver deploy --json`.

Each variant's data is the example inventory's group data with lab-only changes (a transport route to an
SMTP sink on the controller's bridge address, a header_checks WARN rule, POP3 on), written next to a
throwaway inventory that holds exactly the one lab host.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyinfra_mailserver import distro
from pyinfra_mailserver.lab.state import inventory_hosts, load
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.model import validate_server
from pyinfra_mailserver.render import build_manifest

REPO = Path(__file__).resolve().parents[2]
MAILSERVER = str(Path(sys.executable).parent / "mailserver")
SINK_PORT = 2525
# the virtual variant's mailbox with a tiny quota, for the test that quotas are enforced
QUOTA_BOX, QUOTA = "bob@example.com", "1M"
BANTIME = 40  # seconds: short enough for a test to see a ban lift
CONNECTION_LIMIT = 10  # SMTP connections per minute from one client (the controller is exempt)
EXAMPLES = {
    "virtual": REPO / "inventories" / "group_data" / "example_virtual.py",
    "saslauthd": REPO / "inventories" / "group_data" / "example_saslauthd.py",
}


def group_data_source(
    variant: str,
    bridge_ip: str,
    extra_aliases: dict[str, list[str]] | None = None,
    postfix_extra: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> str:
    """Python source of the test group data: the example's, plus the lab-only changes."""
    lines = [
        f'"""e2e data for the {variant} variant: {EXAMPLES[variant].name} with lab changes."""',
        "import copy as _copy",
        "import runpy as _runpy",
        f"mailserver = _copy.deepcopy(_runpy.run_path({str(EXAMPLES[variant])!r})['mailserver'])",
        "_relay = mailserver.setdefault('relay', {})",
        f"_relay['transport'] = {{'sink.test': 'smtp:[{bridge_ip}]:{SINK_PORT}'}}",
        "mailserver['header_checks'] = list(mailserver.get('header_checks', [])) + "
        "[{'pattern': '/^Subject:.*e2e-legal/', 'action': 'WARN'}]",
        "mailserver['services']['pop3'] = {'enabled': True}",
        # no DNS in the lab: sender domains cannot be looked up (the check would defer every message)
        "mailserver.setdefault('smtpd', {})['reject_unknown_sender_domain'] = False",
        # a connection limit a test can reach (the controller is exempt: fail2ban.ignore_ip below)
        f"mailserver['smtpd']['rate_limits'] = {{'connections': {CONNECTION_LIMIT}}}",
        # the controller tries wrong passwords on purpose: never banned; short bans, so a test sees one end
        f"mailserver['fail2ban'] = {{'ignore_ip': ['{bridge_ip}/32'], 'maxretry': 3, 'findtime': 600, "
        f"'bantime': {BANTIME}}}",
        "mailserver['services']['pop3s'] = {'enabled': True}",
    ]
    if variant == "virtual":  # a mailbox small enough to fill with one message (QUOTA_BOX)
        lines += [
            "for _mb in mailserver['virtual']['mailboxes']:",
            f"    if _mb['address'] == {QUOTA_BOX!r}:",
            f"        _mb['quota'] = {QUOTA!r}",
        ]
    for name, members in (extra_aliases or {}).items():
        lines.append(f"mailserver['aliases'][{name!r}] = {members!r}")
    if postfix_extra:
        lines.append(f"mailserver['postfix_extra'] = {postfix_extra!r}")
    lines.extend(extra)
    return "\n".join(lines) + "\n"


@dataclass
class Deployment:
    """One deployed lab host and the means to re-deploy it and talk to it."""

    variant: str
    release: str
    host: Any  # LabHost
    env: dict[str, str]
    inventory: Path
    group_file: Path
    bridge_ip: str
    secrets_dir: Path
    first: dict[str, Any]
    first_seconds: float
    manifest: Manifest = field(repr=False)

    @property
    def ca_file(self) -> Path:
        return self.secrets_dir / "ca" / "ca.crt"

    @property
    def fqdn(self) -> str:
        return self.host.fqdn

    def deploy(self, *extra: str) -> dict[str, Any]:
        """Run `mailserver deploy --json` on this host; the host's entry of the JSON report."""
        r = subprocess.run(
            [MAILSERVER, "deploy", str(self.inventory), "--json", *extra],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
        try:
            report = json.loads(r.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"mailserver deploy printed no JSON (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
        host = report["hosts"][0]
        host["_report"] = report
        host["_stderr"] = r.stderr
        host["_exit"] = r.returncode
        return host

    def pyinfra_main_job(self) -> subprocess.CompletedProcess[str]:
        """The product's main job, `pyinfra -y INVENTORY deploys/deploy_mailserver.py`, on this host."""
        exe = Path(sys.executable).parent / "pyinfra"
        return subprocess.run(
            [str(exe), "-y", str(self.inventory), "deploys/deploy_mailserver.py"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )

    def set_data(
        self,
        extra_aliases: dict[str, list[str]] | None = None,
        postfix_extra: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        """Rewrite the host's group data: the test data plus these changes (none: back to the start)."""
        self.group_file.write_text(
            group_data_source(self.variant, self.bridge_ip, extra_aliases, postfix_extra, extra)
        )

    def secret_values(self) -> list[str]:
        """Every secret the controller holds for this lab: hashes, plaintexts, relay password, TLS keys."""
        values = []
        for p in self.secrets_dir.rglob("*"):
            if p.is_file() and p.suffix != ".crt":  # certificates are public
                text = p.read_text().strip()
                values += [line for line in text.splitlines() if len(line) >= 8 and "-----" not in line]
        return values

    def password(self, secret: str) -> str:
        return (self.secrets_dir / f"{secret}.password").read_text().strip()

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts only the generated CA (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def wait_on_host(self, command: str, timeout: float = 60) -> str:
        """Poll a host command until it succeeds (exit 0), returning its output; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.host.run(command, timeout=30)
            if last.returncode == 0:
                return last.stdout
            time.sleep(0.3)
        pytest.fail(f"{self.host.name}: `{command}` did not succeed within {timeout} s: {last}")

    def mailbox_has(self, mailbox: str, token: str, timeout: float = 60) -> str:
        """Wait until a message containing `token` is in `mailbox` (a Maildir dir or an mbox file)."""
        return self.wait_on_host(f"grep -rlF {token} {mailbox}", timeout=timeout)


def manifest_of(group_file: Path, fqdn: str, secrets_dir: Path, release: str) -> Manifest:
    """The host's manifest, built from the group data file directly, for its Debian release.

    Not through pyinfra's inventory loader: importing `pyinfra_cli` monkey-patches this test process
    with gevent (and breaks the lab's subprocess calls), so the tests read the model without it.
    """
    data = runpy.run_path(str(group_file))["mailserver"]
    server = validate_server(data, hostname=fqdn, secrets_dir=secrets_dir)
    return build_manifest(server, distro.get(distro.Family.DEBIAN, release))


def deploy_fresh(
    lab: Any,
    variant: str,
    tmp: Path,
    release: str,
    until: str = "activate",
    before: Callable[[Deployment], None] | None = None,
) -> Deployment:
    """A fresh lab host with the e2e data of `variant`, deployed (up to the phase `until`); `before`
    sees the host before its first deploy."""
    [host] = lab.up(1, variant=variant, release=release)
    st = load(lab.state_dir)
    data = dict(next(d for name, d in inventory_hosts(lab.state_dir)["lab"] if name == host.fqdn))
    group = f"e2e_{variant}"
    inv_dir = tmp / f"inv-{variant}-{release}"
    (inv_dir / "group_data").mkdir(parents=True)
    inventory = inv_dir / "inventory.py"
    inventory.write_text(f'"""e2e: one lab host."""\n{group} = [({host.fqdn!r}, {data!r})]\n')
    group_file = inv_dir / "group_data" / f"{group}.py"
    group_file.write_text(group_data_source(variant, st.bridge_ip))
    env = {**lab.env, "MAILSERVER_INVENTORY": str(inventory)}
    r = subprocess.run(
        [MAILSERVER, "secrets", "generate", str(inventory)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    dep = Deployment(
        variant,
        release,
        host,
        env,
        inventory,
        group_file,
        st.bridge_ip,
        Path(st.secrets_dir),
        {},
        0.0,
        manifest_of(group_file, host.fqdn, Path(st.secrets_dir), release),
    )
    if before is not None:
        before(dep)
    started = time.monotonic()
    dep.first = dep.deploy(*(("--until", until) if until != "activate" else ()))
    dep.first_seconds = time.monotonic() - started
    return dep


@contextlib.contextmanager
def resolving(fqdn: str, ip: str) -> Iterator[None]:
    """Make clients that connect to `fqdn` reach `ip`, while TLS still checks the name `fqdn`.

    smtplib, imaplib and poplib all open their sockets with `socket.create_connection`, so that is the
    one place to redirect (the controller has no DNS for lab names, and gevent may own getaddrinfo).
    """
    real = socket.create_connection

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        host, port = address[0], address[1]
        return real((ip if host == fqdn else host, port), *args, **kwargs)

    socket.create_connection = create_connection  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.create_connection = real  # type: ignore[assignment]
