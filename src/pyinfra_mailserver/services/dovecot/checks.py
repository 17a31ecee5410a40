"""Dovecot's checks: testinfra after each phase (files, then the running master, its ports and
sockets), and what drift reads of its effective settings (`doveconf KEY...`)."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra_mailserver.engine import testinfra as ti
from pyinfra_mailserver.manifest import Manifest


def testinfra_checks(t: Any, manifest: Manifest, phase: str) -> list[str]:
    service = next((s for s in manifest.services if s.name == "dovecot"), None)
    if service is None:
        return []
    if phase == "install":
        return ti.packages_installed(t, manifest.distro.dovecot_core_packages)
    found = ti.files_as_manifest(t, manifest.files_for("dovecot"))
    if phase == "activate":
        found += ti.unit_running(t, service)
        found += ti.listening(t, [p for p in manifest.ports if p.service == "dovecot"])
        found += ti.sockets_exist(t, [s for s in manifest.sockets if not s.endswith("/mux")])
    return found


def effective_commands(m: Manifest) -> dict[str, str]:
    """Read-only commands of drift's effective checks, by section name."""
    if not m.doveconf:
        return {}
    return {"doveconf": "doveconf " + " ".join(shlex.quote(k) for k in sorted(m.doveconf))}
