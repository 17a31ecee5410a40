"""Importable pyinfra 3 deploys, one module per service, each with install / configure / activate phases.

    from pyinfra_mailserver.deploys import deploy_mailserver
    deploy_mailserver()            # the whole stack for the current host, from its data

or per service, given a Manifest: `postfix.configure(manifest)`, `dovecot.activate(manifest)`, ...
"""

from pyinfra_mailserver import speedups
from pyinfra_mailserver.deploys.mailserver import deploy_mailserver

speedups.install()  # pyinfra per-operation hot spots (stack inspection, type hints): see the module

__all__ = ["deploy_mailserver"]
