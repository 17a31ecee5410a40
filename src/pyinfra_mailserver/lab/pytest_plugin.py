"""pytest plugin: a session-scoped test lab of real hosts (own state dir, bridge, subnet), always torn down.

Register with `pytest_plugins = ["pyinfra_mailserver.lab.pytest_plugin"]` (tests/conftest.py does).

Fixtures:
    lab             TestLab for the session. `lab.up(count=1, variant="virtual") -> list[LabHost]` adds
                    fresh hosts; `lab.down(names)`; `lab.hosts()`; `lab.inventory_path` + `lab.env` (or
                    `lab.pyinfra(*args)`) to run pyinfra against the test lab.
    lab_host        one shared virtual-variant LabHost for the session (treat it as read-mostly).
    fresh_lab_host  a new LabHost for one test, destroyed after it.

`TEST_RELEASES` is the release matrix of the tests that run on every Debian release (`lab.up(...,
release=r)` for r in it): $MAILSERVER_TEST_RELEASES (space-separated), else every release the lab knows.
Hosts made without a release run the lab's default (the newest).

Tests using these fixtures are marked `lab` automatically. Without root or the lab's tools they are
skipped with the reason, except under CI (CI=true), where they fail: CI must not pass by skipping.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from .manager import Lab
from .ssh import ssh_run
from .state import RELEASES, HostState, LabError, load
from .util import check_preconditions

TEST_LAB_BASE = Path(os.environ.get("MAILSERVER_TEST_LAB_BASE", "/var/lib/pyinfra-mailserver/test-lab"))
# Slot n: bridge mstest<n>, subnet 10.213.<100+n>.0/24 (a user's lab defaults to 10.213.0.0/24 on
# mslab0). A slot is claimed with a lock held for the whole session, so concurrent test runs (several
# developers, or xdist workers) each get their own lab instead of tearing down each other's hosts.
MAX_SLOTS = 20
REPO_ROOT = Path(__file__).resolve().parents[3]
TEST_RELEASES: tuple[str, ...] = tuple(os.environ.get("MAILSERVER_TEST_RELEASES", "").split()) or tuple(
    reversed(RELEASES)
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class LabHost:
    """A lab host as a test sees it."""

    name: str
    fqdn: str
    ip: str
    variant: str
    key_path: Path
    ssh_config: Path
    _testinfra: Any = field(default=None, repr=False)

    @classmethod
    def of(cls, h: HostState, key: Path, ssh_config: Path) -> LabHost:
        return cls(h.name, h.fqdn, h.ip, h.variant, key, ssh_config)

    def run(
        self, command: str, *, input: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command as root over SSH (`.returncode`, `.stdout`, `.stderr`; never raises)."""
        return ssh_run(self.key_path, self.ip, command, input=input, timeout=timeout)

    def check(self, command: str, **kw: Any) -> str:
        """Like `run`, but fail the test with the output if the command fails; returns stdout."""
        r = self.run(command, **kw)
        if r.returncode != 0:
            pytest.fail(f"{self.name}: `{command}` exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def testinfra(self) -> Any:
        """A testinfra host over paramiko (`paramiko://root@IP`, lab key, no host key checking)."""
        if self._testinfra is None:
            import testinfra

            self._testinfra = testinfra.get_host(
                f"paramiko://root@{self.ip}",
                ssh_config=str(self.ssh_config),
                ssh_identity_file=str(self.key_path),
            )
        return self._testinfra

    def close(self) -> None:
        """Close the testinfra (paramiko) connection and its transport thread.

        Threads matter: `import pyinfra_cli` runs gevent's monkey.patch_all(), which breaks
        (importlib "cannot release un-acquired lock", KeyError in threading) if paramiko threads are
        alive in the process at that moment. So the plugin closes connections after each module.
        """
        ti, self._testinfra = self._testinfra, None
        if ti is not None:
            client = ti.backend.__dict__.get("client")  # a functools.cached_property once connected
            if client is not None:
                transport = client.get_transport()
                with contextlib.suppress(Exception):
                    client.close()
                    if transport is not None:
                        transport.join(5)  # the transport is a thread: wait until it is gone


_ACTIVE: list[TestLab] = []


class TestLab:
    """The session's lab; `inventory_path` with `env` points pyinfra at exactly these hosts."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, slot: int, lock: IO[str]) -> None:
        self.slot = slot
        self._lock = lock
        self.state_dir = TEST_LAB_BASE / f"slot{slot}"
        self.bridge = f"mstest{slot}"
        self.subnet = f"10.213.{100 + slot}.0/24"
        self.manager = Lab(self.state_dir, subnet=self.subnet, bridge=self.bridge)
        self.inventory_path = REPO_ROOT / "inventories" / "lab.py"
        self._closed = False
        self._handed_out: list[LabHost] = []

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (pyinfra, mailserver) that must target this lab."""
        return {**os.environ, "MAILSERVER_LAB_DIR": str(self.state_dir)}

    @property
    def key_path(self) -> Path:
        return load(self.state_dir).key_path

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh_config"

    def _host(self, h: HostState) -> LabHost:
        lh = LabHost.of(h, load(self.state_dir).key_path, self.ssh_config)
        self._handed_out.append(lh)
        return lh

    def close_connections(self) -> None:
        """Close every testinfra connection of hosts handed out so far (see LabHost.close)."""
        for lh in self._handed_out:
            lh.close()

    def up(self, count: int = 1, variant: str = "virtual", release: str | None = None) -> list[LabHost]:
        """Add `count` fresh hosts (sshd answering when this returns)."""
        hosts = self.manager.add(count, release=release, variant=variant)
        self._write_ssh_config()
        return [self._host(h) for h in hosts]

    def hosts(self) -> list[LabHost]:
        return [self._host(h) for h in load(self.state_dir).sorted_hosts()]

    def down(self, names: list[str] | None = None) -> None:
        """Destroy the named hosts (all with None: then the bridge and proxy go too)."""
        self.manager.down(names)

    def pyinfra(
        self, *args: str, limit: list[LabHost] | None = None, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """Run `pyinfra -y <lab inventory> [--limit FQDN...] ARGS...` against this lab, from the repo
        root (so group_data/ applies). The session lab holds hosts of other tests too: pass `limit`.
        pyinfra writes its log to stderr; `.stdout + .stderr` is the full output."""
        exe = Path(sys.executable).parent / "pyinfra"
        argv = [str(exe) if exe.exists() else "pyinfra", "-y", str(self.inventory_path)]
        for h in limit or []:
            argv += ["--limit", h.fqdn]
        argv += args
        return subprocess.run(
            argv,
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def _write_ssh_config(self) -> None:
        st = load(self.state_dir)
        self.ssh_config.write_text(
            "# lab hosts only: fresh host keys on every boot, so no host key checking\n"
            f"Host {st.network.network_address.exploded.rsplit('.', 1)[0]}.* *.{st.domain}\n"
            "  User root\n"
            f"  IdentityFile {st.key_path}\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
        )

    def close(self) -> None:
        """Tear everything down; idempotent (called by the fixture, atexit and signal handlers)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.close_connections()
            self.manager.down()
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._lock.close()


def _claim_slot() -> TestLab:
    TEST_LAB_BASE.mkdir(parents=True, exist_ok=True)
    for slot in range(MAX_SLOTS):
        fh = open(TEST_LAB_BASE / f"slot{slot}.lock", "w")  # noqa: SIM115 - held for the session
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        lab = TestLab(slot, fh)
        # We hold the slot's lock, so anything recorded in it is a leftover of a crashed run: clean it.
        lab.manager.down()
        return lab
    raise LabError(f"all {MAX_SLOTS} test lab slots under {TEST_LAB_BASE} are in use")


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP become KeyboardInterrupt so the fixture's finally (teardown) runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@pytest.fixture(scope="session")
def lab() -> Iterator[TestLab]:
    """The session's test lab (empty until a test calls `lab.up`)."""
    try:
        check_preconditions()
    except LabError as e:
        msg = f"lab tests need root and the lab tools: {e}"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    test_lab = _claim_slot()
    atexit.register(test_lab.close)
    _ACTIVE.append(test_lab)
    with _signals_raise():
        try:
            yield test_lab
        finally:
            _ACTIVE.remove(test_lab)
            test_lab.close()
            atexit.unregister(test_lab.close)


@pytest.fixture(scope="module", autouse=True)
def _close_lab_connections() -> Iterator[None]:
    """After each test module, close the testinfra connections its tests opened (no stray threads)."""
    yield
    for test_lab in _ACTIVE:
        test_lab.close_connections()


@pytest.fixture(scope="session")
def lab_host(lab: TestLab) -> LabHost:
    """One virtual-variant host shared by the session's tests."""
    return lab.up(1, variant="virtual")[0]


@pytest.fixture
def fresh_lab_host(lab: TestLab) -> Iterator[LabHost]:
    """A host nobody else touched, destroyed after the test."""
    h = lab.up(1, variant="virtual")[0]
    try:
        yield h
    finally:
        lab.down([h.name])


LAB_FIXTURES = {"lab", "lab_host", "fresh_lab_host"}


@pytest.hookimpl(tryfirst=True)  # before `-m` selection runs, so the marker counts there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use lab fixtures get the `lab` marker, so `-m 'not lab'` leaves them out."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.lab)
