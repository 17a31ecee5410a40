"""The whole stack for the current host: the model from its data, its manifest for what the host runs,
one snapshot of the host, the diff, then every service's phases and the verification."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyinfra
from pyinfra import host, logger, state
from pyinfra.api import deploy

from pyinfra_mailserver import inventory, lock
from pyinfra_mailserver.engine.changes import diff, snapshot_spec
from pyinfra_mailserver.engine.operations import any_activation, smoke_check
from pyinfra_mailserver.engine.plan import DeployPlan
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.engine.verify import verify_host
from pyinfra_mailserver.facts import MailHostSnapshot, MailPlatform, distro_row
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.model import ModelError
from pyinfra_mailserver.orphans import mailbox_dirs, orphaned, report_orphaned_mailboxes
from pyinfra_mailserver.render import build_manifest
from pyinfra_mailserver.secretstore import SecretError
from pyinfra_mailserver.services import PHASES, activations, deploys
from pyinfra_mailserver.services.tls.render import generated_files


class DeployError(Exception):
    """The host cannot be deployed (unsupported distro, invalid data); the message says why."""


def inventory_path() -> str | None:
    """The inventory file of this run: set by `mailserver deploy`, else the `pyinfra` command line's
    (its first argument that is a Python file)."""
    env = os.environ.get("MAILSERVER_INVENTORY")
    if env:
        return env
    if pyinfra.is_cli:
        files = [a for a in sys.argv[1:] if a.endswith(".py") and Path(a).is_file()]
        return str(Path(files[0]).resolve()) if files else None
    return None


def manifest_for_host() -> Manifest:
    """Validate the model from this host's data (on the controller), take the host's deploy lock (which
    also reads what the host runs), and build the manifest for that release.

    The same data renders for Debian 12 and 13: the distro row comes from the host (os-release,
    installed Dovecot and Postfix), with the data's `distro` and the host data overrides winning.
    """
    server = inventory.server_from_host(host, inventory_path())
    platform = lock.acquire(host)
    if platform is None:  # not over SSH: nothing to lock, ask what it runs
        platform = host.get_fact(MailPlatform) or {}
    try:
        row = distro_row(platform, host.data, server.distro)
    except ValueError as e:
        raise DeployError(f"{host.name}: {e}") from None
    return build_manifest(server, row)


def plan_for_host(manifest: Manifest) -> DeployPlan:
    """Read the host once and compare it with its manifest (and the TLS files the controller makes)."""
    stage = Stage.of(host.data)
    secrets = inventory.secrets_dir_for(inventory.host_data(host), inventory_path())
    generated = generated_files(manifest, secrets, create=True)
    snap = host.get_fact(MailHostSnapshot, spec=snapshot_spec(manifest, stage, generated))
    changes = tuple(diff(manifest, snap, stage, generated))
    return DeployPlan(manifest, stage, snap, changes, generated)


@deploy("Mail server")
def deploy_mailserver(
    manifest: Manifest | None = None, raise_errors: bool = False, until: str = "activate"
) -> DeployPlan | None:
    """Provision the host as its manifest says, then verify it; returns the plan it applied.

    + manifest: the host's manifest (default: from its data and what it runs)
    + raise_errors: raise on invalid data, an unsupported host or a held lock, instead of failing the
      host with the message (for API callers that report it themselves)
    + until: the last phase to run (install, configure, activate): for tests that check each phase;
      the smoke check and verification run only after activate

    The phases run service by service: packages first (they bring the users files are owned by), then
    each service's files (TLS before the daemons whose checks read them), then the activations
    (authentication and delivery daemons before Postfix, which talks to their sockets). A phase adds
    its operation only when the plan has work for it, so a run that changes nothing is one operation,
    the verification, which reuses the plan's snapshot.
    """
    try:
        if manifest is None:
            manifest = manifest_for_host()
        else:
            lock.acquire(host)
    except (ModelError, SecretError, DeployError, lock.DeployLocked) as e:
        if raise_errors:
            raise
        host.log_styled(f"cannot deploy: {e}", fg="red", log_func=logger.error)
        state.fail_hosts({host})
        return None
    plan = plan_for_host(manifest)
    for phase in PHASES[: PHASES.index(until) + 1]:
        for service in activations() if phase == "activate" else deploys():
            run = getattr(service, phase, None)
            if run is not None:
                run(plan)
    if until != "activate":
        return plan
    # a reload that breaks TLS or a SASL socket is rolled back (resources/smoke.sh)
    if any_activation(manifest, plan.changes):
        smoke_check(
            name="Smoke check (TLS on every port, auth sockets), rollback on failure",
            manifest=manifest,
            stage=plan.stage,
            changes=plan.changes,
        )
    verify_host(name="Verify the mail host", plan=plan)
    # mail of mailboxes removed from the data is never deleted; say where it is
    base, expected = mailbox_dirs(manifest)
    if orphans := tuple(orphaned(plan.snapshot.mailboxes, expected)) if base else ():
        report_orphaned_mailboxes(name="Report orphaned mailboxes", orphans=orphans)
    return plan
