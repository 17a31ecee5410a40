"""The whole stack for the current host: model from host data -> Manifest -> every service's phases."""

from __future__ import annotations

import os

import pyinfra
from pyinfra import host, logger, state
from pyinfra.api import deploy

from pyinfra_mailserver import distro, inventory, lock, preflight
from pyinfra_mailserver.deploys import dovecot, packages, postfix, sasl, tls, verify
from pyinfra_mailserver.deploys.ops import (
    account_names,
    ensure_accounts,
    ensure_directories,
    manifest_paths,
    register_snapshot,
    stage_directory,
)
from pyinfra_mailserver.deploys.safety import reloaded_condition, smoke_checked
from pyinfra_mailserver.deploys.verify import auth_sockets
from pyinfra_mailserver.facts import host_distro, unit_state_script
from pyinfra_mailserver.manifest import Manifest, build_manifest
from pyinfra_mailserver.model import ModelError
from pyinfra_mailserver.orphans import mailbox_dirs, report_orphaned_mailboxes
from pyinfra_mailserver.secretstore import SecretError


class DeployError(Exception):
    """The host cannot be deployed (unsupported distro, invalid data); the message says why."""


def host_distro_row(family: distro.Family | None = None) -> distro.Distro:
    """The host's distro row (family, release, Dovecot and Postfix versions): see `facts.host_distro`."""
    try:
        return host_distro(host, family)
    except ValueError as e:
        raise DeployError(f"{host.name}: {e}") from None


def inventory_path() -> str | None:
    """The inventory file of this run: set by `mailserver deploy`, else the `pyinfra` command line's."""
    env = os.environ.get("MAILSERVER_INVENTORY")
    if env:
        return env
    if pyinfra.is_cli:
        return preflight.cli_inventory_and_deploys()[0]
    return None


def manifest_for_host() -> Manifest:
    """Load and validate the model from this host's data and build its manifest (on the controller).

    The distro row comes from the host (os-release, installed Dovecot and Postfix), with the data's
    `distro` and the host data overrides winning, so the same data renders for Debian 12 and 13.
    """
    server = inventory.server_from_host(host, inventory_path())
    return build_manifest(server, host_distro_row(server.distro))


def register_run(manifest: Manifest) -> None:
    """Tell the operations of this run what they will ask the host, so it is asked in one command."""
    users, groups = account_names(manifest.users, manifest.groups)
    units = manifest.unit_names()
    register_snapshot(
        family=str(manifest.distro.family),
        packages=manifest.packages,
        users=users,
        groups=groups,
        paths=tuple(sorted(manifest_paths(manifest))),
        units=units,
        unit_script=unit_state_script(units, parts=manifest.distro.unit_parts),
        sockets=auth_sockets(manifest),
        mailbox_base=mailbox_dirs(manifest)[0],
    )


@deploy("Mail server")
def deploy_mailserver(manifest: Manifest | None = None, raise_errors: bool = False) -> Manifest | None:
    """Provision the host as its manifest says: packages, accounts, TLS, Postfix, SASL, Dovecot, verify.

    The order matters: packages bring the users (postfix, dovecot, sasl group) the files are owned by;
    TLS files must exist before the Postfix and Dovecot checks read their configs; services reload only
    after all their inputs are in place; verification runs last.

    Invalid data or an unsupported host fails this host only (before anything runs on it), with the
    model's message; `raise_errors=True` raises instead (for API callers that report it themselves).
    """
    if manifest is None:
        try:
            manifest = manifest_for_host()
        except (ModelError, SecretError, DeployError) as e:
            if raise_errors:
                raise
            host.log_styled(f"cannot deploy: {e}", fg="red", log_func=logger.error)
            state.fail_hosts({host})
            return None
    try:  # one deploy at a time per host, held until this run disconnects (pyinfra_mailserver.lock)
        lock.acquire(host)
    except lock.DeployLocked as e:
        if raise_errors:
            raise
        host.log_styled(f"cannot deploy: {e}", fg="red", log_func=logger.error)
        state.fail_hosts({host})
        return None
    register_run(manifest)

    packages.install._inner(manifest)  # type: ignore[attr-defined]
    ensure_accounts(name="Mail users and groups", groups=manifest.groups, users=manifest.users)
    ensure_directories(name="Mail directories", directories=(*manifest.directories, stage_directory()))
    packages.configure._inner(manifest)  # type: ignore[attr-defined]

    tls.configure._inner(manifest)  # type: ignore[attr-defined]
    postfix.configure._inner(manifest)  # type: ignore[attr-defined]
    sasl.configure._inner(manifest)  # type: ignore[attr-defined]
    dovecot.configure._inner(manifest)  # type: ignore[attr-defined]

    sasl.activate._inner(manifest)  # type: ignore[attr-defined]
    dovecot.activate._inner(manifest)  # type: ignore[attr-defined]
    postfix.activate._inner(manifest)  # type: ignore[attr-defined]
    # a reloaded config that breaks TLS is rolled back (pyinfra_mailserver.deploys.safety)
    smoke_checked(
        name="Smoke check (TLS on every port, auth sockets), rollback on failure",
        manifest=manifest,
        _if=reloaded_condition(manifest),
    )

    verify.verify._inner(manifest)  # type: ignore[attr-defined]
    # mail of mailboxes removed from the data is never deleted; say where it is
    report_orphaned_mailboxes(name="Report orphaned mailboxes", manifest=manifest)
    return manifest
