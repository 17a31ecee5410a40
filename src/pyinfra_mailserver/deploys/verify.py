"""End-of-deploy verification: packages, services, listening ports, secret file modes, auth sockets."""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any

from pyinfra import host, state
from pyinfra.api import FactBase, deploy, operation

from pyinfra_mailserver.deploys.init import ENABLED_STATES, RUNNING_STATES
from pyinfra_mailserver.deploys.ops import fail_with, nothing_changed_yet, snapshot, snapshot_spec
from pyinfra_mailserver.distro import Family
from pyinfra_mailserver.facts import unit_state_script
from pyinfra_mailserver.manifest import Manifest


class MailHostCheck(FactBase[dict[str, list[str]]]):
    """Everything the verification looks at, in one command (lines tagged by check)."""

    @staticmethod
    def default() -> dict[str, list[str]]:
        return {}

    def command(
        self,
        family: str,
        packages: tuple[str, ...],
        units: tuple[str, ...],
        paths: tuple[str, ...],
        sockets: tuple[str, ...],
        wait_ports: tuple[int, ...] = (),
        unit_parts: tuple[str, ...] = (),
    ) -> str:
        q = shlex.quote
        pkg = (
            "dpkg-query -W -f='pkg|${db:Status-Abbrev}|${Package}\\n' "
            f"{' '.join(map(q, packages))} 2>/dev/null"
            if family == Family.DEBIAN
            else f"rpm -q --qf 'pkg|ii |%{{NAME}}\\n' {' '.join(map(q, packages))} 2>/dev/null | grep '^pkg|'"
        )
        # Poll (up to ~15 s) until the ports and sockets are there: a service restarted a moment ago
        # may not listen yet. Never a fixed sleep: it returns as soon as everything is up.
        want = " ".join(f":{p}" for p in wait_ports)
        wait = (
            f"for i in $(seq 150); do ok=1; l=$(ss -Hltn 2>/dev/null | awk '{{print $4}}' | sed 's/.*:/:/'); "
            f'for p in {want}; do echo "$l" | grep -qx "$p" || ok=0; done; '
            + "".join(f"[ -S {q(s)} ] || ok=0; " for s in sockets)
            + "[ $ok = 1 ] && break; sleep 0.1; done"
        )
        parts = [
            wait,
            pkg if packages else "true",
            "ss -Hltn 2>/dev/null | awk '{print \"port|\" $4}'",
        ]
        if units:
            parts.append(unit_state_script(units, prefix="unit|", parts=unit_parts))
        if paths:
            parts.append(f"stat -c 'file|%n|%U|%G|%a' {' '.join(map(q, paths))} 2>/dev/null")
        parts += [f"[ -S {q(s)} ] && echo 'socket|'{q(s)}" for s in sockets]
        return "; ".join(parts) + "; true"

    def process(self, output: list[str]) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for line in output:
            kind, _, rest = line.partition("|")
            result.setdefault(kind, []).append(rest)
        return result


def auth_sockets(manifest: Manifest) -> tuple[str, ...]:
    """The SASL sockets Postfix talks to: from the manifest, else derived from the effective postconf."""
    if manifest.sockets:
        return manifest.sockets
    pc = manifest.postconf
    if pc.get("smtpd_sasl_type") == "dovecot" and pc.get("smtpd_sasl_path"):
        path = pc["smtpd_sasl_path"]
        return (path if path.startswith("/") else f"{manifest.distro.postfix_queue_dir}/{path}",)
    return ()


def misses(manifest: Manifest, seen: dict[str, list[str]]) -> list[str]:
    """Every way the host differs from what a working deploy leaves, as readable sentences."""
    found: list[str] = []
    installed = {r.split("|")[1] for r in seen.get("pkg", []) if r.split("|")[0].strip() == "ii"}
    found += [f"package {p} is not installed" for p in manifest.packages if p not in installed]
    units = {r.split("|")[0]: r.split("|")[1:] for r in seen.get("unit", [])}
    for s in manifest.services:
        active, enabled = [*units.get(s.unit, []), "", ""][:2]
        if s.running and active != "active":
            found.append(f"service {s.unit} is not running ({active or 'unknown'})")
        if s.enabled and enabled not in ENABLED_STATES:
            found.append(f"service {s.unit} is not enabled at boot ({enabled or 'unknown'})")
        for old in s.replaces:
            if [*units.get(old, []), ""][0] in RUNNING_STATES:
                found.append(f"service {s.name} still runs as {old} (a unit of the release before)")
    ports = {int(p.rsplit(":", 1)[-1]) for p in seen.get("port", []) if p.rsplit(":", 1)[-1].isdigit()}
    found += [
        f"nothing listens on port {p.port} ({p.protocol})" for p in manifest.ports if p.port not in ports
    ]
    stats = {r.split("|")[0]: r.split("|")[1:] for r in seen.get("file", [])}
    for f in manifest.files:
        if not f.secret:
            continue
        st = stats.get(f.path)
        if st is None:
            found.append(f"secret file {f.path} is missing")
        elif (st[0], st[1]) != (f.owner, f.group) or int(st[2], 8) != int(f.mode, 8):
            found.append(
                f"secret file {f.path} is {st[0]}:{st[1]} {st[2]}, expected {f.owner}:{f.group} {f.mode}"
            )
    if manifest.tls.mode == "generate" or manifest.tls.key_path:
        st = stats.get(manifest.tls.key_path)
        if st is None:
            found.append(f"TLS key {manifest.tls.key_path} is missing")
        elif int(st[2], 8) & (0o077 if st[1] == "root" else 0o007):
            found.append(f"TLS key {manifest.tls.key_path} is readable by others (mode {st[2]})")
    sockets = set(seen.get("socket", []))
    found += [f"auth socket {s} is missing" for s in auth_sockets(manifest) if s not in sockets]
    return found


def testinfra_misses(manifest: Manifest) -> list[str]:
    """The same checks as `misses`, asked through testinfra's modules over pyinfra's connection.

    Opt-in (host data `mailserver_verify: "testinfra"`): about twenty commands instead of one, for
    operators who want testinfra's own reading of packages, services, sockets and files.
    """
    from pyinfra.context import ctx_host

    from pyinfra_mailserver.deploys.testinfra_backend import testinfra_host

    # The same wait as the one-command check: services restarted a moment ago may not listen yet.
    host.get_fact(
        MailHostCheck,
        family=str(manifest.distro.family),
        packages=(),
        units=(),
        paths=(),
        sockets=auth_sockets(manifest),
        wait_ports=tuple(sorted({p.port for p in manifest.ports})),
    )
    t = testinfra_host(ctx_host.get(), dict(host.current_op_global_arguments or {}))
    found: list[str] = []
    found += [f"package {p} is not installed" for p in manifest.packages if not t.package(p).is_installed]
    for s in manifest.services:
        svc = t.service(s.unit)
        if s.running and not svc.is_running:
            found.append(f"service {s.unit} is not running")
        if s.enabled and not svc.is_enabled:
            found.append(f"service {s.unit} is not enabled at boot")
    listening = {
        sock.rsplit(":", 1)[-1] for sock in t.socket.get_listening_sockets() if sock.startswith("tcp")
    }
    found += [
        f"nothing listens on port {p.port} ({p.protocol})"
        for p in manifest.ports
        if str(p.port) not in listening
    ]
    for f in manifest.files:
        if f.secret:
            tf = t.file(f.path)
            if not tf.exists:
                found.append(f"secret file {f.path} is missing")
            elif (tf.user, tf.group, tf.mode) != (f.owner, f.group, int(f.mode, 8)):
                found.append(
                    f"secret file {f.path} is {tf.user}:{tf.group} {tf.mode:o}, "
                    f"expected {f.owner}:{f.group} {f.mode}"
                )
    key = t.file(manifest.tls.key_path)
    if not key.exists:
        found.append(f"TLS key {manifest.tls.key_path} is missing")
    elif key.mode & (0o077 if key.group == "root" else 0o007):
        found.append(f"TLS key {manifest.tls.key_path} is readable by others (mode {key.mode:o})")
    found += [f"auth socket {s} is missing" for s in auth_sockets(manifest) if not t.file(s).is_socket]
    return found


def seen_in_snapshot(paths: tuple[str, ...]) -> dict[str, list[str]] | None:
    """What `MailHostCheck` would report, from this run's snapshot (None when there is none that
    covers `paths`, e.g. a service deploy used on its own)."""
    spec = snapshot_spec()
    if spec is None or not set(paths) <= set(spec["paths"]):
        return None
    snap = snapshot()
    assert snap is not None
    return {
        "pkg": [f"ii |{name}" for name in snap.packages],
        "unit": [f"{unit}|{active}|{enabled}" for unit, (active, enabled) in snap.units.items()],
        "port": list(snap.ports),
        "file": [
            f"{p}|{st.owner}|{st.group}|{st.mode}" for p in paths if (st := snap.paths.get(p)) is not None
        ],
        "socket": sorted(snap.sockets),
    }


@operation()
def verify_host(manifest: Manifest) -> Generator[Any, None, None]:
    """
    Check the host is what the manifest describes; fail naming every miss (nothing runs when all is well).

    + manifest: the host's manifest (packages, services, ports, secret files, TLS key, auth sockets)

    Runs only at execution (while planning, the host has not been changed yet). One command.

    **Example:**

    .. code:: python

        verify_host(name="Verify the mail host", manifest=manifest)
    """
    if not state.is_executing:
        host.noop("verified after execution")
        return
    if host.data.get("mailserver_verify") == "testinfra":
        problems = testinfra_misses(manifest)
        if problems:
            yield fail_with("verification (testinfra) failed:\n  - " + "\n  - ".join(problems))
        else:
            host.noop("mail host verified (testinfra)")
        return
    paths = tuple(sorted({f.path for f in manifest.files if f.secret} | {manifest.tls.key_path}))
    seen = seen_in_snapshot(paths) if nothing_changed_yet() else None
    if seen is not None:  # nothing changed since the run read the host: verify what it read
        problems = misses(manifest, seen)
        if not problems:
            host.noop("mail host verified (unchanged since this run read it)")
            return
        yield fail_with("verification failed:\n  - " + "\n  - ".join(problems))
        return
    seen = host.get_fact(
        MailHostCheck,
        family=str(manifest.distro.family),
        packages=manifest.packages,
        units=manifest.unit_names(),
        unit_parts=manifest.distro.unit_parts,
        paths=paths,
        sockets=auth_sockets(manifest),
        wait_ports=tuple(sorted({p.port for p in manifest.ports})),
    )
    problems = misses(manifest, seen)
    if not problems:
        host.noop("mail host verified")
        return
    yield fail_with("verification failed:\n  - " + "\n  - ".join(problems))


@deploy("Verify")
def verify(manifest: Manifest) -> None:
    """Final phase of every deploy: the host must pass `verify_host`."""
    verify_host(name="Verify the mail host", manifest=manifest)
