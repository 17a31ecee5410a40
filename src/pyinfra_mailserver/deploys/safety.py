"""After a reload: a smoke check of every TLS port, and a rollback to the previous config if it fails.

Why: the checkers (`postfix check`, `postconf`, `doveconf -n`) read configs, not what they point at. A
certificate path that exists but holds garbage passes them all, goes live, and then TLS is gone from
port 25 (Postfix silently drops STARTTLS) and 993 refuses handshakes, while every greeting still
answers. So once the services were reloaded, each manifest port is probed on the host with a TLS
handshake (STARTTLS where the port speaks it); if one fails, the files the activation replaced (kept in
`backup_dir()`) are put back, Postfix and Dovecot restarted, and the deploy fails saying so. When the
probes pass, the backup is dropped.
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
)
from pyinfra_mailserver.manifest import Manifest

STARTTLS = {"smtp": "smtp", "submission": "smtp", "imap": "imap", "pop3": "pop3"}
ATTEMPTS = 15  # one second apart: a restarted Dovecot or Postfix takes a moment to listen


def probe_script(manifest: Manifest) -> str:
    """Shell: probe each TLS port of the manifest; on failure restore the backup and restart."""
    probes = []
    for p in manifest.ports:
        if p.tls == "starttls" and p.protocol in STARTTLS:
            extra = f"-starttls {STARTTLS[p.protocol]}"
        elif p.tls == "implicit":
            extra = ""
        else:
            continue
        probes.append(f"probe {p.port} {shlex.quote(p.protocol)} {shlex.quote(extra)}")
    units = [s.unit for s in manifest.services if s.name in ("postfix", "dovecot")]
    pending = " ".join(shlex.quote(pending_marker(s.name)) for s in manifest.services)
    b = shlex.quote(backup_dir())
    return "\n".join([
        "set -u",
        'failed=""',
        # the address a port listens on (a wildcard means loopback will do), then a TLS handshake
        "probe() {",
        f"  i=0; while [ $i -lt {ATTEMPTS} ]; do",
        "    a=$(ss -Hltn \"sport = :$1\" | awk '{print $4}' | head -n1)",
        '    case "$a" in ""|0.0.0.0:*|\\*:*|"[::]:"*) a=127.0.0.1:$1;; esac',
        '    timeout 10 openssl s_client -connect "$a" $3 -brief </dev/null >/dev/null 2>&1 && return 0',
        "    i=$((i+1)); sleep 1",
        "  done",
        '  failed="$failed $2/$1"',
        "}",
        *probes,
        f'if [ -z "$failed" ]; then rm -rf {b}; exit 0; fi',
        f"n=0; if [ -d {b} ]; then",
        f"  cd {b} && for f in $(find . -type f | sed 's|^\\.||'); do",
        '    case "$f" in',
        '      *.created) rm -f "${f%.created}";;',
        '      *) cp -p ".$f" "$f.mailserver-new" && mv -f "$f.mailserver-new" "$f";;',
        "    esac; n=$((n+1))",
        "  done",
        "fi",
        f"cd / && rm -rf {b} {pending}",
        f"systemctl restart {' '.join(shlex.quote(u) for u in units)}",
        'if [ "$n" -gt 0 ]; then',
        '  echo "smoke check failed (TLS handshake on:$failed): rolled back, $n file(s) of the previous '
        f'config restored and {" ".join(units)} restarted" >&2',
        "else",
        '  echo "smoke check failed (TLS handshake on:$failed): nothing to roll back" >&2',
        "fi",
        "exit 1",
    ])


@operation()
def smoke_checked(manifest: Manifest) -> Generator[Any, None, None]:
    """
    After Postfix or Dovecot were reloaded, handshake TLS on every port; roll back when one fails.

    + manifest: the host's manifest (ports, services)
    """
    if _skipped_by_if():
        host.noop("no service was reloaded")
        return
    record("smoke_checked", "tls")
    yield StringCommand("sh", "-c", shlex.quote(probe_script(manifest)))


def reloaded_condition() -> Any:
    """`_if` for the smoke check: Postfix or Dovecot reload in this run (or a reload left pending)."""
    postfix, dovecot = reload_condition("postfix"), reload_condition("dovecot")
    return lambda: postfix() or dovecot()
