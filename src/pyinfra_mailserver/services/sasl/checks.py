"""testinfra checks of saslauthd after each phase: its files, then the daemon and its socket."""

from __future__ import annotations

from typing import Any

from pyinfra_mailserver.engine import testinfra as ti
from pyinfra_mailserver.manifest import Manifest


def testinfra_checks(t: Any, manifest: Manifest, phase: str) -> list[str]:
    service = next((s for s in manifest.services if s.name == "saslauthd"), None)
    if service is None:
        return []
    if phase == "install":
        return ti.packages_installed(t, manifest.distro.saslauthd_packages)
    found = ti.files_as_manifest(t, manifest.files_for("saslauthd"))
    if phase == "activate":
        found += ti.unit_running(t, service)
        found += ti.sockets_exist(t, [s for s in manifest.sockets if s.endswith("/mux")])
    return found
