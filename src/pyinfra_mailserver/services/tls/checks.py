"""testinfra checks of TLS after its configure phase: the certificate and the key in place, the key
readable by root (and the group it belongs to) only."""

from __future__ import annotations

from typing import Any

from pyinfra_mailserver.manifest import Manifest


def testinfra_checks(t: Any, manifest: Manifest, phase: str) -> list[str]:
    if phase == "install":
        return []
    plan = manifest.tls
    found = []
    if not t.file(plan.cert_path).exists:
        found.append(f"TLS certificate {plan.cert_path} is missing")
    key = t.file(plan.key_path)
    if not key.exists:
        found.append(f"TLS key {plan.key_path} is missing")
    elif key.mode & (0o077 if key.group == "root" else 0o007):
        found.append(f"TLS key {plan.key_path} is readable by others (mode {key.mode:o})")
    return found
