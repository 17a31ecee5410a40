"""TLS's deploy phase: upload the generated certificate chain, key and CA (with `files` they are the
operator's, already on the host)."""

from __future__ import annotations

from pyinfra_mailserver.engine.operations import install_files
from pyinfra_mailserver.engine.plan import DeployPlan


def configure(plan: DeployPlan) -> None:
    """Configure phase: the key is 0600 root's from the moment it exists on the host."""
    if changes := plan.of("tls", "file", "file-attrs"):
        install_files(
            name="TLS files", manifest=plan.manifest, stage=plan.stage, service="tls", changes=changes
        )
