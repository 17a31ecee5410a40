"""Importable pyinfra 3 deploys: the whole stack, or one service's phases (services/<name>/deploy.py).

    from pyinfra_mailserver.deploys import deploy_mailserver
    deploy_mailserver()            # the whole stack for the current host, from its data

A service's phases take the deploy's plan: `services.postfix.deploy.configure(plan)`, ...
"""

from pyinfra_mailserver.deploys.mailserver import deploy_mailserver

__all__ = ["deploy_mailserver"]
