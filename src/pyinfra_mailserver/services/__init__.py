"""The services of a mail host. Each is a package a reader finds by its name, holding its part of the
model, its part of the manifest (`render`), its deploy phases (`deploy`: install, configure, activate)
and its checks (`checks`: testinfra for each phase, and what drift reads of its effective settings);
its templates are under the top-level `templates/<service>/`.

`system` is the host's own part (packages, accounts, directories, local delivery); `tls` the
certificate and key the daemons serve; then the daemons.
"""

from __future__ import annotations

from types import ModuleType

from pyinfra_mailserver.services import dovecot, postfix, sasl, system, tls

# The order services are configured in: packages and accounts first (files are owned by the users the
# packages make), TLS files before the daemons whose checks read them.
SERVICES: tuple[ModuleType, ...] = (system, tls, postfix, sasl, dovecot)
# The order they are activated in: the authentication and delivery daemons before Postfix, which
# talks to their sockets.
ACTIVATION: tuple[ModuleType, ...] = (sasl, dovecot, postfix)
PHASES = ("install", "configure", "activate")
