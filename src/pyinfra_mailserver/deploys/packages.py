"""Packages of the mail stack from the distro table, preseeded and installed non-interactively."""

from __future__ import annotations

import shlex
from collections.abc import Generator
from typing import Any, cast

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation

from pyinfra_mailserver.deploys.ops import (
    cached,
    host_changed,
    path_states,
    sha256_text,
    snapshot_part,
    sync_files,
)
from pyinfra_mailserver.distro import Family
from pyinfra_mailserver.facts import DebPackageStatus, RpmPackageStatus
from pyinfra_mailserver.manifest import Manifest

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
# Wait for a dpkg lock held by e.g. apt-daily (fresh cloud hosts) instead of failing at once; a stalled
# mirror or proxy connection times out (and is retried) instead of hanging the whole run.
APT_OPTS = "-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -o Acquire::http::Timeout=60"
# apt's own timeouts cover a silent connection, not every stall: on the lab's apt proxy `apt-get update`
# once sat idle for good (apt-get and both of its methods waiting on each other) with the retry never
# reached. A bound turns that into the retry below, and a second stall into a failed operation instead
# of a deploy that never ends.
APT_UPDATE = f"timeout 300 apt-get update -q {APT_OPTS}"
APT_INSTALL = (
    f"apt-get install -y -q --no-install-recommends {APT_OPTS} "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


# While the packages install, maintainer scripts may not start the daemons: they would run (and listen)
# with the stock config until the deploy writes its own, and then be restarted anyway, which made a cold
# deploy slower than the bare `apt-get install` it is measured against (bench/, P1). The services start
# once, with the deploy's config, in their activate phase. The hook is ours only when absent before
# (an operator's own policy-rc.d is left alone) and it is removed when the command ends, even on a
# signal; one left by a killed host is recognised by its content and removed by the next run.
POLICY_RC_D = "#!/bin/sh\n# pyinfra-mailserver: no daemon starts with a stock config\nexit 101\n"


def no_starts_during(command: str, policy_rc_d: str) -> str:
    """Shell: run `command` with a temporary policy-rc.d, so maintainer scripts start no daemon."""
    if not policy_rc_d:
        return command
    q = shlex.quote(policy_rc_d)
    ours = shlex.quote(POLICY_RC_D)
    return (  # absent, or ours from a run on a host that went down: (re)write it and remove it after
        f'if [ ! -e {q} ] || [ "$(cat {q})" = "$(printf %s {ours})" ]; then printf %s {ours} > {q} '
        f"&& chmod 755 {q} "
        f"&& trap 'rm -f {q}' EXIT && trap 'exit 1' HUP INT TERM; fi; {command}"
    )


def installed_packages(family: Family, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `packages`, one command per stage of the run."""
    found = snapshot_part("packages", packages=packages)
    if found is not None:
        return cast(dict[str, str], found)
    fact = DebPackageStatus if family == Family.DEBIAN else RpmPackageStatus
    return cached(f"packages:{packages}", lambda: host.get_fact(fact, packages=packages))


@operation()
def install_packages(
    packages: tuple[str, ...],
    family: Family = Family.DEBIAN,
    debconf: tuple[tuple[str, str, str, str], ...] = (),
    policy_rc_d: str = "",
) -> Generator[Any, None, None]:
    """
    Install the missing packages in one transaction, with debconf answers given first.

    + packages: package names from the distro table (via the manifest)
    + family: which package manager to speak (apt for Debian, dnf for RHEL)
    + debconf: (package, question, type, value) preseeds, applied only before a package is installed
    + policy_rc_d: the distro's policy-rc.d path: daemons do not start during the install (see above)

    **Example:**

    .. code:: python

        install_packages(
            name="Mail packages", packages=m.packages, family=m.distro.family, debconf=m.debconf
        )
    """
    have = installed_packages(family, packages)
    missing = [p for p in packages if p not in have]
    if not missing:
        # (read only when nothing installs: the managed paths are read once, after the install)
        stale = path_states(policy_rc_d).get(policy_rc_d) if policy_rc_d else None
        if stale and stale.sha256 == sha256_text(POLICY_RC_D):  # ours, kept by a host that went down
            yield StringCommand("rm", "-f", policy_rc_d)
            return
        host.noop("all mail packages are installed")
        return
    host_changed()  # what the operations after this one compare must be read after the install
    names = " ".join(shlex.quote(p) for p in missing)
    if family == Family.DEBIAN:
        install = (
            f"{APT_ENV} {APT_UPDATE} && {APT_ENV} {APT_INSTALL} {names} "
            f"|| {{ sleep 2; {APT_ENV} {APT_UPDATE} && {APT_ENV} {APT_INSTALL} {names}; }}"
        )
        preseed = [d for d in debconf if d[0] in missing]
        if preseed:  # in the same command: one round trip
            lines = "\n".join(" ".join(d) for d in preseed)
            install = f"printf '%s\\n' {shlex.quote(lines)} | debconf-set-selections || exit 1\n{install}"
        yield StringCommand("sh", "-c", shlex.quote(no_starts_during(install, policy_rc_d)))
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
        policy_rc_d=manifest.distro.policy_rc_d,
    )


@deploy("System files")
def configure(manifest: Manifest) -> None:
    """Configure phase for files that belong to no service (e.g. /etc/mailname)."""
    files = manifest.files_for("system")
    if files:
        sync_files(name="System files", files=files, secrets=manifest.secrets, bundle="system")
