"""Postfix's checks: testinfra after each phase (files, then the running master and its ports), and
what drift reads of its effective settings (`postconf -n/-M/-P`, the tables answering)."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra_mailserver.engine import testinfra as ti
from pyinfra_mailserver.manifest import Manifest


def testinfra_checks(t: Any, manifest: Manifest, phase: str) -> list[str]:
    if phase == "install":
        return ti.packages_installed(t, manifest.distro.postfix_packages)
    found = ti.files_as_manifest(t, manifest.files_for("postfix"))
    if phase == "activate":
        found += ti.unit_running(t, next(s for s in manifest.services if s.name == "postfix"))
        found += ti.listening(t, [p for p in manifest.ports if p.service == "postfix"])
    return found


def effective_commands(m: Manifest) -> dict[str, str]:
    """Read-only commands of drift's effective checks, by section name."""
    cmds = {"postconf_n": "postconf -n", "postconf_m": "postconf -M", "postconf_p": "postconf -P"}
    for i, mp in enumerate(m.maps):
        if mp.sample_key is None:
            continue
        # the answer is discarded: only whether the key is found matters (values may be secret)
        cmds[f"map{i}"] = f"{mp.command} -q {shlex.quote(mp.sample_key)} {shlex.quote(mp.spec)} >/dev/null"
    return cmds
