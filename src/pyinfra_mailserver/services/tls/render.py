"""TLS's part of the manifest: where the certificate and key live on the host, and (with `generate`)
the files the controller's CA makes for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyinfra_mailserver.manifest import ManagedFile, Manifest, TlsPlan

if TYPE_CHECKING:
    from pyinfra_mailserver.render.plan import Plan

CERT_MODE = "644"
KEY_MODE = "600"

# The cipher policy of every port where clients log in, Postfix's and Dovecot's alike: the TLS 1.2
# suites of Mozilla's "intermediate" server-side TLS profile (version 5.7), in its order: ECDHE or DHE
# key exchange (forward secrecy) with an AEAD cipher; no anonymous, NULL, export, RC4, 3DES, CBC, CCM8,
# Camellia or ARIA suite. TLS 1.3's suites are OpenSSL's defaults, which are the profile's. A DHE suite
# only ever runs with an RSA certificate and a group of at least 2048 bits (Postfix's built-in group;
# Dovecot offers DHE only with a DH file, which it is not given).
CIPHER_PROFILE = "Mozilla intermediate v5.7"
LOGIN_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)


def tls_plan(plan: Plan) -> TlsPlan:
    """The operator's files, or (`generate`) a certificate and key named after the host."""
    t = plan.server.tls
    names = tuple(dict.fromkeys([plan.hostname, *t.extra_names]))
    if t.mode == "files":
        assert t.cert and t.key
        return TlsPlan(mode="files", cert_path=t.cert, key_path=t.key, ca_path=t.ca, names=names)
    d = plan.distro
    return TlsPlan(
        mode="generate",
        cert_path=f"{d.tls_cert_dir}/{plan.hostname}.pem",
        key_path=f"{d.tls_key_dir}/{plan.hostname}.key",
        ca_path=f"{d.tls_cert_dir}/{plan.domain}-lab-ca.pem",
        names=names,
    )


def generated_files(manifest: Manifest, secrets_dir: Path, create: bool) -> tuple[ManagedFile, ...]:
    """The files `generate` puts on the host: server chain, private key, and the CA (if the plan has a
    path), from the controller's CA in `secrets_dir`.

    `create`: make (or renew) them now, as the deploy does, so every run uploads the same bytes and
    changes nothing; otherwise (drift) only read what is there, and nothing when the controller has no
    certificate for the host yet.
    """
    plan = manifest.tls
    if plan.mode != "generate":
        return ()
    from pyinfra_mailserver import pki  # cryptography is only needed where certificates are made or read

    if create:
        material = pki.ensure_server_cert(secrets_dir, manifest.hostname, plan.names)
        ca, cert, key = material.ca_pem, material.cert_pem, material.key_pem
    else:
        found = pki.existing_server_cert(secrets_dir, manifest.hostname)
        if found is None:
            return ()
        ca, cert, key = found
    services = tuple(s.name for s in manifest.services if s.name in ("postfix", "dovecot"))
    files = [
        ManagedFile(plan.cert_path, cert, mode=CERT_MODE, service="tls", reload=services),
        ManagedFile(plan.key_path, key, mode=KEY_MODE, service="tls", secret=True, reload=services),
    ]
    if plan.ca_path:
        files.append(ManagedFile(plan.ca_path, ca, mode=CERT_MODE, service="tls"))
    return tuple(files)
