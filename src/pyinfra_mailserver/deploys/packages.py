"""Packages of the mail stack from the distro table, preseeded and installed non-interactively."""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation

from pyinfra_mailserver.deploys.ops import cached, sync_file
from pyinfra_mailserver.distro import Family
from pyinfra_mailserver.facts import DebPackageStatus, RpmPackageStatus
from pyinfra_mailserver.manifest import Manifest

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
# Wait for a dpkg lock held by e.g. apt-daily (fresh cloud hosts) instead of failing at once; a stalled
# mirror or proxy connection times out (and is retried) instead of hanging the whole run.
APT_OPTS = "-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -o Acquire::http::Timeout=60"
APT_INSTALL = (
    f"apt-get install -y -q --no-install-recommends {APT_OPTS} "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


def installed_packages(family: Family, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `packages`, one command per stage of the run."""
    fact = DebPackageStatus if family == Family.DEBIAN else RpmPackageStatus
    return cached(f"packages:{packages}", lambda: host.get_fact(fact, packages=packages))


@operation()
def install_packages(
    packages: tuple[str, ...],
    family: Family = Family.DEBIAN,
    debconf: tuple[tuple[str, str, str, str], ...] = (),
) -> Generator[Any, None, None]:
    """
    Install the missing packages in one transaction, with debconf answers given first.

    + packages: package names from the distro table (via the manifest)
    + family: which package manager to speak (apt for Debian, dnf for RHEL)
    + debconf: (package, question, type, value) preseeds, applied only before a package is installed

    **Example:**

    .. code:: python

        install_packages(
            name="Mail packages", packages=m.packages, family=m.distro.family, debconf=m.debconf
        )
    """
    have = installed_packages(family, packages)
    missing = [p for p in packages if p not in have]
    if not missing:
        host.noop("all mail packages are installed")
        return
    names = " ".join(shlex.quote(p) for p in missing)
    if family == Family.DEBIAN:
        preseed = [d for d in debconf if d[0] in missing]
        if preseed:
            lines = "\n".join(" ".join(d) for d in preseed)
            yield StringCommand(f"printf '%s\\n' {shlex.quote(lines)} | debconf-set-selections")
        yield StringCommand(
            f"{APT_ENV} apt-get update -q {APT_OPTS} && {APT_ENV} {APT_INSTALL} {names} "
            f"|| {{ sleep 2; {APT_ENV} apt-get update -q {APT_OPTS} && {APT_ENV} {APT_INSTALL} {names}; }}"
        )
    else:
        yield StringCommand(f"dnf install -y -q {names}")


@deploy("Mail packages")
def install(manifest: Manifest) -> None:
    """Install phase: every package the manifest lists (one command when something is missing)."""
    install_packages(
        name="Install mail packages",
        packages=manifest.packages,
        family=manifest.distro.family,
        debconf=manifest.debconf,
    )


@deploy("System files")
def configure(manifest: Manifest) -> None:
    """Configure phase for files that belong to no service (e.g. /etc/mailname)."""
    for f in manifest.files_for("system"):
        sync_file(name=f"File {f.path}", file=f, secrets=manifest.secrets)
