"""TLS: with `generate`, a controller-side CA signs this host's cert; cert, chain and key go up 0644/0600."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from pyinfra_mailserver import pki
from pyinfra_mailserver.deploys.ops import manifest_paths, notify_files, register_paths, sync_files
from pyinfra_mailserver.inventory import host_data, secrets_dir_for
from pyinfra_mailserver.manifest import ManagedFile, Manifest

CERT_MODE = "644"
KEY_MODE = "600"


def secrets_dir() -> Path:
    """The controller's secrets directory for this host: the same one the model reads its secrets from."""
    from pyinfra_mailserver.deploys.mailserver import inventory_path

    return secrets_dir_for(host_data(host), inventory_path())


def tls_files(manifest: Manifest) -> tuple[ManagedFile, ...]:
    """The files `generate` puts on the host: server chain, private key, and the CA (if the plan has a path).

    Made (or reused) on the controller now, so every run uploads the same bytes and changes nothing.
    """
    plan = manifest.tls
    if plan.mode != "generate":
        return ()
    material = pki.ensure_server_cert(secrets_dir(), manifest.hostname, plan.names)
    services = tuple(s.name for s in manifest.services if s.name in ("postfix", "dovecot"))
    files = [
        ManagedFile(plan.cert_path, material.cert_pem, mode=CERT_MODE, service="tls", reload=services),
        ManagedFile(
            plan.key_path, material.key_pem, mode=KEY_MODE, service="tls", secret=True, reload=services
        ),
    ]
    if plan.ca_path:
        files.append(ManagedFile(plan.ca_path, material.ca_pem, mode=CERT_MODE, service="tls"))
    return tuple(files)


@deploy("TLS configure")
def configure(manifest: Manifest) -> OperationMeta | None:
    """Configure phase: upload the generated cert, chain and key (with `files` they are the operator's)."""
    register_paths(manifest_paths(manifest))  # one ManagedPaths read for all
    files = tls_files(manifest) + manifest.files_for("tls")
    if not files:
        return None
    op = sync_files(name="TLS files", files=files, secrets=manifest.secrets, bundle="tls")
    return notify_files(op, files)
