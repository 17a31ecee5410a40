"""Shared machinery of the deploy/audit benchmarks (issue 7): the bench lab, timed runs, results.

Benchmarks, not tests: they measure and report; only a broken precondition (a deploy that fails, a
no-change run that changes something) stops them, because a figure measured on a broken host would be
meaningless.

The bench lab is its own lab (state dir, bridge, subnet), so it never touches the default lab, the test
slots or other engineers' labs running at the same time. Each host gets a *role* recorded in
`<state dir>/bench-roles.json` so a later `bench/run p3` can reuse hosts an earlier figure deployed:

- `deployed`: deployed with bench/inventory (the lab's virtual example + the P5 discard route);
- `floor`: got the bare `apt-get install` of P1 (cheap to deploy later: its packages are there);
- `warm`: warmed the apt proxy's cache before P1; later the stock Postfix host of P5;
- `stock`: stock Debian Postfix for P5 (never deployed).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyinfra_mailserver import distro
from pyinfra_mailserver.lab.manager import Lab
from pyinfra_mailserver.lab.ssh import ssh_argv
from pyinfra_mailserver.lab.state import HostState, load
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.model import validate_server
from pyinfra_mailserver.render import build_manifest

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
INVENTORY = REPO / "bench" / "inventory" / "bench.py"
GROUP_DATA = REPO / "bench" / "inventory" / "group_data" / "bench.py"
RESULTS = REPO / "bench" / "results.json"
MAIN_JOB = "deploys/deploy_mailserver.py"

STATE_DIR = Path(os.environ.get("BENCH_LAB_DIR", "/var/lib/pyinfra-mailserver/bench-deploy"))
BRIDGE = os.environ.get("BENCH_LAB_BRIDGE", "msbench1")
SUBNET = os.environ.get("BENCH_LAB_SUBNET", "10.213.91.0/24")


class BenchError(RuntimeError):
    """A precondition of a figure failed (deploy error, changes on a no-change run, ...)."""


@dataclass
class Timed:
    """One timed child process: wall seconds, exit code, output and the child's peak RSS."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str
    maxrss_kib: int
    cpu_s: float = 0.0  # user + system CPU of the child (and its waited-for children)

    def tail(self, n: int = 2000) -> str:
        """The end of both outputs, for an error message."""
        return f"{self.stdout[-n:]}\n{self.stderr[-n:]}"

    def json(self) -> Any:
        """The child's stdout parsed as JSON (the tools' `--json` output)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise BenchError(
                f"no JSON on stdout (exit {self.returncode}):\n{self.stdout[-2000:]}\n{self.stderr[-3000:]}"
            ) from e


def run_timed(argv: Sequence[str], env: dict[str, str], timeout: float = 1800) -> Timed:
    """Run `argv` and time it; the peak RSS comes from wait4()'s rusage of that very child.

    wait4 rather than /usr/bin/time or /proc polling: it is exact (the kernel's high-water mark, not a
    sample) and adds no process of its own to the measurement. Output goes to temp files so a chatty
    child never blocks on a full pipe while we wait on it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        while True:  # bounded by the deadline
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen's finaliser does not wait again
        out.seek(0)
        err.seek(0)
        return Timed(
            seconds,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_maxrss,
            usage.ru_utime + usage.ru_stime,
        )


def median(values: Sequence[float], digits: int = 2) -> float:
    return round(statistics.median(values), digits)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def interleaved(rounds: int, runners: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each runner once per round, in turn (A B C A B C ...), rotating the start each round.

    Interleaving is what makes ratios trustworthy on a shared 2-core machine: a burst of load from
    another engineer's tests hits every side of the comparison, not just whichever ran at that moment.
    """
    names = list(runners)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            samples[n].append(runners[n]())
    return samples


@dataclass
class BenchLab:
    """The bench's own lab and helpers to run the product's commands against its hosts."""

    state_dir: Path = STATE_DIR
    bridge: str = BRIDGE
    subnet: str = SUBNET
    lab: Lab = field(init=False)
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.lab = Lab(self.state_dir, subnet=self.subnet, bridge=self.bridge)

    # -- environment and hosts -------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MAILSERVER_LAB_DIR": str(self.state_dir), "PYTHONUNBUFFERED": "1"}

    @property
    def roles_file(self) -> Path:
        return self.state_dir / "bench-roles.json"

    def roles(self) -> dict[str, str]:
        """Role of each live host by FQDN (hosts gone from the lab are forgotten)."""
        if not (self.state_dir / "state.json").exists():
            return {}
        live = {h.fqdn for h in load(self.state_dir).sorted_hosts()}
        stored = json.loads(self.roles_file.read_text()) if self.roles_file.exists() else {}
        return {k: v for k, v in stored.items() if k in live}

    def set_role(self, fqdns: Sequence[str], role: str) -> None:
        roles = self.roles()
        roles.update(dict.fromkeys(fqdns, role))
        self.roles_file.write_text(json.dumps(roles, indent=1, sort_keys=True) + "\n")

    def with_role(self, role: str) -> list[HostState]:
        roles = self.roles()
        return [h for h in self.hosts() if roles.get(h.fqdn) == role]

    def hosts(self) -> list[HostState]:
        if not (self.state_dir / "state.json").exists():
            return []
        return load(self.state_dir).sorted_hosts()

    def host_cpu_s(self, hosts: Sequence[HostState]) -> float:
        """CPU seconds the hosts have used so far (their cgroup v2 `cpu.stat` usage_usec; 0 where absent).

        The hosts share the controller's cores, so what a run costs *on the hosts* is half of the story of
        any multi-host figure; the difference of two readings around a run is that cost.
        """
        total = 0
        for h in hosts:
            for cg in h.cgroups:
                stat = Path(cg) / "cpu.stat"
                if stat.exists():
                    for line in stat.read_text().splitlines():
                        if line.startswith("usage_usec "):
                            total += int(line.split()[1])
                    break
        return total / 1e6

    def add(self, count: int, role: str) -> list[HostState]:
        """`count` fresh hosts from the cached image (about a second), with `role`."""
        new = self.lab.add(count) if self.hosts() else self.lab.up(count)
        self.set_role([h.fqdn for h in new], role)
        return new

    def down(self) -> None:
        self.lab.down()

    @property
    def key(self) -> Path:
        return load(self.state_dir).key_path

    @property
    def bridge_ip(self) -> str:
        return load(self.state_dir).bridge_ip

    @property
    def secrets_dir(self) -> Path:
        return Path(load(self.state_dir).secrets_dir)

    # -- commands --------------------------------------------------------------------------------
    def ssh(self, host: HostState, command: str, timeout: float = 1800) -> Timed:
        """One SSH session to a host (the lab's key, no host key checking), timed."""
        return run_timed(ssh_argv(self.key, host.ip, [command]), self.env, timeout)

    def pyinfra(self, hosts: Sequence[HostState], *args: str, timeout: float = 1800) -> Timed:
        """`pyinfra -y bench/inventory/bench.py --limit H1 --limit H2 ARGS` — the main job's way.

        Checks that pyinfra connected to exactly these hosts: a --limit that matches nothing makes
        pyinfra do nothing successfully, which would time as a very fast run.
        """
        limits = [a for h in hosts for a in ("--limit", h.fqdn)]
        t = run_timed([str(BIN / "pyinfra"), "-y", str(INVENTORY), *limits, *args], self.env, timeout)
        connected = set(re.findall(r"\[([^\]\s]+)\]\s+Connected", t.stdout + t.stderr))
        if connected != {h.fqdn for h in hosts}:
            raise BenchError(
                f"pyinfra connected to {sorted(connected)}, not {[h.fqdn for h in hosts]}:\n{t.tail()}"
            )
        return t

    def mailserver(
        self, command: str, hosts: Sequence[HostState], *args: str, timeout: float = 1800
    ) -> Timed:
        """`mailserver COMMAND bench/inventory/bench.py --limit H ... ARGS`."""
        limits = [a for h in hosts for a in ("--limit", h.fqdn)]
        return run_timed(
            [str(BIN / "mailserver"), command, str(INVENTORY), *limits, *args], self.env, timeout
        )

    def generate_secrets(self) -> None:
        r = run_timed([str(BIN / "mailserver"), "secrets", "generate", str(INVENTORY)], self.env, 300)
        if r.returncode != 0:
            raise BenchError(f"secrets generate failed:\n{r.stdout}\n{r.stderr}")

    def deploy(self, hosts: Sequence[HostState], batch: int = 5) -> list[dict[str, Any]]:
        """Deploy hosts with `mailserver deploy --json`, `batch` at a time (apt on 2 shared cores and one
        apt proxy: a handful at once keeps each batch well inside apt's timeouts)."""
        self.generate_secrets()
        reports: list[dict[str, Any]] = []
        for i in range(0, len(hosts), batch):
            part = hosts[i : i + batch]
            self.log(f"  deploying {', '.join(h.name for h in part)} ...")
            r = self.mailserver("deploy", part, "--json", timeout=3600)
            report = r.json()
            if not report["success"]:
                raise BenchError(f"deploy failed: {json.dumps(report, indent=1)[-3000:]}\n{r.stderr[-2000:]}")
            self.set_role([h.fqdn for h in part], "deployed")
            reports += report["hosts"]
        return reports

    def ensure_deployed(self, count: int) -> list[HostState]:
        """At least `count` deployed hosts: floor hosts of P1 first (their packages are installed, so
        their deploy is quick), then fresh ones; all new ones deployed in batches."""
        have = self.with_role("deployed")
        if len(have) >= count:
            return have[:count]
        todo = self.with_role("floor")[: count - len(have)]
        missing = count - len(have) - len(todo)
        if missing > 0:
            todo += self.add(missing, "fresh")
        self.deploy(todo)
        return self.with_role("deployed")[:count]

    # -- the model -------------------------------------------------------------------------------
    def manifest(self, fqdn: str) -> Manifest:
        """The manifest the deploy builds for `fqdn` from the bench data, built here without pyinfra
        (importing pyinfra_cli would gevent-patch this process and break its subprocess timing)."""
        os.environ["MAILSERVER_LAB_DIR"] = str(self.state_dir)  # the group data reads the lab's bridge
        data = runpy.run_path(str(GROUP_DATA))["mailserver"]
        model = validate_server(data, hostname=fqdn, secrets_dir=self.secrets_dir)
        return build_manifest(model, distro.DEBIAN)


def apt_install_command(manifest: Manifest) -> str:
    """The floor of P1: the apt part of the deploy's package step (same preseeds, same flags, same
    update) as one shell command, without its policy-rc.d: what a person would type to install the
    stack by hand."""
    names = " ".join(shlex.quote(p) for p in manifest.packages)
    lines = "\n".join(" ".join(d) for d in manifest.debconf)
    preseed = f"printf '%s\\n' {shlex.quote(lines)} | debconf-set-selections && " if lines else ""
    env = "DEBIAN_FRONTEND=noninteractive"
    opts = "-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -o Acquire::http::Timeout=60"
    install = f"apt-get install -y -q --no-install-recommends {opts} -o Dpkg::Options::=--force-confdef "
    install += "-o Dpkg::Options::=--force-confold"
    return f"{preseed}{env} apt-get update -q {opts} && {env} {install} {names}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def merge_results(figures: dict[str, Any]) -> None:
    """Merge top-level keys into bench/results.json, keeping every other key (e.g. "lab")."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.update(figures)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
