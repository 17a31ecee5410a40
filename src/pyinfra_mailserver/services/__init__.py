"""The services of a mail host. Each is a package a reader finds by its name, holding its part of the
model (`model`), its part of the manifest (`render`), its deploy phases (`deploy`: install, configure,
activate) and its checks (`checks`: testinfra for each phase, and what drift reads of its effective
settings); its templates are under the top-level `templates/<service>/`.

`system` is the host's own part (packages, accounts, directories, local delivery); `tls` the
certificate and key the daemons serve; then the daemons.
"""

from __future__ import annotations

from types import ModuleType

NAMES = ("system", "tls", "postfix", "sasl", "dovecot", "fail2ban")
PHASES = ("install", "configure", "activate")


def deploys() -> tuple[ModuleType, ...]:
    """The services' deploy modules, in the order they are configured: packages and accounts first
    (files are owned by the users the packages make), TLS files before the daemons whose checks read
    them."""
    from pyinfra_mailserver.services.dovecot import deploy as dovecot
    from pyinfra_mailserver.services.fail2ban import deploy as fail2ban
    from pyinfra_mailserver.services.postfix import deploy as postfix
    from pyinfra_mailserver.services.sasl import deploy as sasl
    from pyinfra_mailserver.services.system import deploy as system
    from pyinfra_mailserver.services.tls import deploy as tls

    return (system, tls, postfix, sasl, dovecot, fail2ban)


def activations() -> tuple[ModuleType, ...]:
    """The order services are activated in: the authentication and delivery daemons before Postfix,
    which talks to their sockets; fail2ban last, reading what the daemons log."""
    _system, _tls, postfix, sasl, dovecot, fail2ban = deploys()
    return (sasl, dovecot, postfix, fail2ban)


def checks() -> tuple[ModuleType, ...]:
    """The services' checks modules (testinfra per phase, drift's effective settings)."""
    from pyinfra_mailserver.services.dovecot import checks as dovecot
    from pyinfra_mailserver.services.fail2ban import checks as fail2ban
    from pyinfra_mailserver.services.postfix import checks as postfix
    from pyinfra_mailserver.services.sasl import checks as sasl
    from pyinfra_mailserver.services.system import checks as system
    from pyinfra_mailserver.services.tls import checks as tls

    return (system, tls, postfix, sasl, dovecot, fail2ban)
