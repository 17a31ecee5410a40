"""After a reload: a smoke check of every TLS port, and a rollback to the previous config if it fails.

Why: the checkers (`postfix check`, `postconf`, `doveconf -n`) read configs, not what they point at. A
certificate path that exists but holds garbage passes them all, goes live, and then TLS is gone from
port 25 (Postfix silently drops STARTTLS) and 993 refuses handshakes, while every greeting still
answers. So once a service was reloaded, each manifest port is probed on the host with a TLS
handshake (STARTTLS where the port speaks it), all at once, and each SASL socket Postfix uses must be
there (a saslauthd that did not come back fails SMTP AUTH only); if one fails, the files the run
replaced (kept in `backup_dir()`: configs, TLS files, saslauthd files) are put back, the mail services
restarted, and the deploy fails saying so. When the probes pass, the backup is dropped. A reload or
restart that fails outright rolls back the same way (deploys/init.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any

from pyinfra import host
from pyinfra.api import StringCommand, operation

from pyinfra_mailserver.deploys.ops import (
    _skipped_by_if,
    backup_dir,
    pending_marker,
    record,
    reload_condition,
    rollback_lines,
)
from pyinfra_mailserver.deploys.verify import auth_sockets
from pyinfra_mailserver.manifest import Manifest

STARTTLS = {"smtp": "smtp", "submission": "smtp", "imap": "imap", "pop3": "pop3"}
ATTEMPTS = 15  # one second apart: a restarted Dovecot or Postfix takes a moment to listen


def rollback_units(manifest: Manifest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The units a rollback restarts (every mail service) and the pending markers it clears."""
    return (
        tuple(s.unit for s in manifest.services),
        tuple(pending_marker(s.name) for s in manifest.services),
    )


def probe_script(manifest: Manifest) -> str:
    """Shell: probe every TLS port and auth socket of the manifest; on a failure, roll back (see above)."""
    probes = []
    for p in manifest.ports:
        if p.tls == "starttls" and p.protocol in STARTTLS:
            extra = f"-starttls {STARTTLS[p.protocol]}"
        elif p.tls == "implicit":
            extra = ""
        else:
            continue
        # all ports at once: the smoke check waits for the slowest handshake, not for their sum
        probes.append(
            f"probe {p.port} {shlex.quote(p.protocol)} {shlex.quote(extra)} & "
            f'pids="$pids $!:TLS-handshake:{p.protocol}/{p.port}"'
        )
    # the SASL sockets Postfix authenticates through (saslauthd's or Dovecot's): a restarted saslauthd
    # that did not come back would leave SMTP AUTH failing with every port still answering
    probes += [
        f'sock {shlex.quote(path)} & pids="$pids $!:auth-socket:{path}"' for path in auth_sockets(manifest)
    ]
    units, pending = rollback_units(manifest)
    b = shlex.quote(backup_dir())
    return "\n".join(
        [
            "set -u",
            'failed=""; pids=""',
            # the address a port listens on (a wildcard means loopback will do), then a TLS handshake
            "probe() {",
            f"  i=0; while [ $i -lt {ATTEMPTS} ]; do",
            "    a=$(ss -Hltn \"sport = :$1\" | awk '{print $4}' | head -n1)",
            '    case "$a" in ""|0.0.0.0:*|\\*:*|"[::]:"*) a=127.0.0.1:$1;; esac',
            '    timeout 10 openssl s_client -connect "$a" $3 -brief </dev/null >/dev/null 2>&1 && return 0',
            "    i=$((i+1)); sleep 1",
            "  done",
            "  return 1",
            "}",
            f"sock() {{ i=0; while [ $i -lt {ATTEMPTS * 10} ]; do",
            '  [ -S "$1" ] && return 0; i=$((i+1)); sleep 0.1; done; return 1; }',
            *probes,
            'for p in $pids; do wait "${p%%:*}" || failed="$failed ${p#*:}"; done',
            f'if [ -z "$failed" ]; then rm -rf {b}; exit 0; fi',
            'why="smoke check failed (on:$failed)"',
            *rollback_lines(units, pending),
        ]
    )


@operation()
def smoke_checked(manifest: Manifest) -> Generator[Any, None, None]:
    """
    After a mail service was reloaded, handshake TLS on every port and find the auth sockets; roll back
    when one fails.

    + manifest: the host's manifest (ports, services)
    """
    if _skipped_by_if():
        host.noop("no service was reloaded")
        return
    record("smoke_checked", "tls")
    yield StringCommand("sh", "-c", shlex.quote(probe_script(manifest)))


def reloaded_condition(manifest: Manifest) -> Any:
    """`_if` for the smoke check: a service reloaded in this run (or a reload left pending)."""
    conditions = [reload_condition(s.name) for s in manifest.services]
    return lambda: any(c() for c in conditions)
