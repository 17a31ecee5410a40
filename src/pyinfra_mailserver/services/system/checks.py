"""testinfra checks of the system part after each phase: packages installed, then accounts and
directories in place."""

from __future__ import annotations

from typing import Any

from pyinfra_mailserver.engine import testinfra as ti
from pyinfra_mailserver.manifest import Manifest


def testinfra_checks(t: Any, manifest: Manifest, phase: str) -> list[str]:
    found = ti.packages_installed(t, manifest.packages)
    if phase in ("configure", "activate"):
        for u in manifest.users:
            if not t.user(u.name).exists:
                found.append(f"user {u.name} is missing")
            else:
                missing = [g for g in u.groups if g not in t.user(u.name).groups]
                found += [f"user {u.name} is not in group {g}" for g in missing]
        found += [f"group {g.name} is missing" for g in manifest.groups if not t.group(g.name).exists]
        found += ti.directories_as_manifest(t, manifest.directories)
        found += ti.files_as_manifest(t, manifest.files_for("system"))
    return found
