"""The end of every deploy: the host must be what its manifest says, which is the diff of a fresh
snapshot being empty (the same comparison that planned the deploy, and that drift reports)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pyinfra import host, state
from pyinfra.api import operation

from pyinfra_mailserver.engine.changes import VERIFY_WAIT_SECONDS, diff, snapshot_spec
from pyinfra_mailserver.engine.operations import fail_with
from pyinfra_mailserver.engine.plan import DeployPlan
from pyinfra_mailserver.facts import MailHostSnapshot


def testinfra_misses(plan: DeployPlan, phase: str = "activate") -> list[str]:
    """Every service's testinfra checks for `phase`, over pyinfra's connection to the current host."""
    from pyinfra.context import ctx_host

    from pyinfra_mailserver import services
    from pyinfra_mailserver.engine.testinfra import testinfra_host

    t = testinfra_host(ctx_host.get(), dict(host.current_op_global_arguments or {}))
    return [miss for checks in services.checks() for miss in checks.testinfra_checks(t, plan.manifest, phase)]


@operation()
def verify_host(plan: DeployPlan) -> Generator[Any, None, None]:
    """
    Check the host is what the manifest describes; fail naming every difference.

    + plan: the deploy's plan. When it changes nothing, the snapshot it was made from is the proof
      (no round trip); otherwise a fresh snapshot is read, waiting up to 15 s for the ports and sockets
      of services restarted a moment ago. Host data `mailserver_verify: testinfra` adds every service's
      testinfra checks (about twenty commands).

    Runs only at execution (while planning, the host has not been changed yet).

    **Example:**

    .. code:: python

        verify_host(name="Verify the mail host", plan=plan)
    """
    if not state.is_executing:
        host.noop("verified after execution")
        return
    m = plan.manifest
    if plan.changes:
        spec = snapshot_spec(m, plan.stage, plan.generated)
        snap = host.get_fact(MailHostSnapshot, spec=spec, wait=VERIFY_WAIT_SECONDS)
    else:
        snap = plan.snapshot
    problems = [c.detail for c in diff(m, snap, plan.stage, plan.generated)]
    if host.data.get("mailserver_verify") == "testinfra":
        problems += testinfra_misses(plan)
    if problems:
        yield fail_with("verification failed:\n  - " + "\n  - ".join(problems))
        return
    host.noop("mail host verified" + ("" if plan.changes else " (unchanged since this run read it)"))
