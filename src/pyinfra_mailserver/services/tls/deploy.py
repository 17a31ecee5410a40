"""TLS's deploy phase: upload the generated certificate chain, key and CA (with `files` they are the
operator's, already on the host)."""

from __future__ import annotations

from pyinfra.api import deploy

from pyinfra_mailserver.engine.operations import install_files
from pyinfra_mailserver.engine.plan import DeployPlan


@deploy("TLS configure")
def configure(plan: DeployPlan) -> None:
    """Configure phase: the key is 0600 root's from the moment it exists on the host."""
    install_files(
        name="TLS files",
        manifest=plan.manifest,
        stage=plan.stage,
        service="tls",
        changes=plan.of("tls", "file", "file-attrs"),
    )
