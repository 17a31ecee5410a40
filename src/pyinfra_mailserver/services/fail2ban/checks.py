"""testinfra checks of fail2ban after each phase: its packages, its jail file, then the daemon."""

from __future__ import annotations

from typing import Any

from pyinfra_mailserver.engine import testinfra as ti
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.report import CheckSet, Severity


def testinfra_checks(t: Any, manifest: Manifest, phase: str) -> list[str]:
    service = next((s for s in manifest.services if s.name == "fail2ban"), None)
    if service is None:
        return []
    if phase == "install":
        return ti.packages_installed(t, manifest.distro.fail2ban_packages)
    found = ti.files_as_manifest(t, manifest.files_for("fail2ban"))
    if phase == "activate":
        found += ti.unit_running(t, service)
    return found


def expected_jails(manifest: Manifest) -> tuple[str, ...]:
    """The jails of the manifest's jail file (its sections but [DEFAULT]; filter files are not jails)."""
    out: list[str] = []
    for f in manifest.files_for("fail2ban"):
        if "/jail.d/" not in f.path:
            continue
        for line in f.content.splitlines():
            if line.startswith("[") and line.endswith("]") and line != "[DEFAULT]":
                out.append(line[1:-1])
    return tuple(out)


def running_jails(status: str) -> set[str]:
    """The jails `fail2ban-client status` lists (`|- Jail list:\tdovecot, postfix-sasl`)."""
    for line in status.splitlines():
        if "Jail list:" in line:
            return {j.strip() for j in line.split(":", 1)[1].split(",") if j.strip()}
    return set()


def audit_jails(checks: CheckSet, manifest: Manifest, rc: int | None, status: str) -> None:
    """fail2ban.jails: every jail of the model runs (a stopped fail2ban, or a jail it could not start,
    leaves brute force unanswered while the host otherwise looks fine)."""
    want = expected_jails(manifest)
    if not want:  # fail2ban is off in the model: nothing to expect
        return
    got = running_jails(status) if rc == 0 else set()
    missing = [j for j in want if j not in got]
    checks.add(
        "fail2ban.jails",
        not missing,
        f"fail2ban jails not running: {', '.join(missing)}"
        + ("" if rc == 0 else f" (fail2ban-client status: {status.strip()[:200]})"),
        ok_message=f"fail2ban jails running: {', '.join(want)}",
        severity=Severity.HIGH,
        fix="systemctl restart fail2ban; fail2ban-client -t names what keeps a jail from starting",
    )
