"""saslauthd, the PAM-backed SMTP AUTH of system users: its defaults file, Postfix's smtpd.conf and (on
a native unit) the drop-in that names its PID file."""

from pyinfra_mailserver.services.sasl import checks, deploy, render

__all__ = ["checks", "deploy", "render"]
