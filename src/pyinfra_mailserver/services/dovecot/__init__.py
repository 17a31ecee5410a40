"""Dovecot: IMAP, POP3, LMTP delivery and the SASL socket Postfix asks; the config tree checked with
`doveconf -n` before it goes live."""

from pyinfra_mailserver.services.dovecot import checks, deploy, render

__all__ = ["checks", "deploy", "render"]
