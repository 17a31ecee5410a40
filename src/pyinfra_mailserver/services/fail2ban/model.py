"""fail2ban's part of the model: when an address is banned, for how long, and who never is."""

from __future__ import annotations

from pydantic import Field

from pyinfra_mailserver.model.common import Network, Strict


class Fail2ban(Strict):
    """Brute-force protection: `maxretry` failed logins (SMTP AUTH, IMAP, POP3) from one address within
    `findtime` seconds ban it from every mail port for `bantime` seconds (nftables). Loopback and
    mynetworks are never banned, nor `ignore_ip`: list the hosts that run `mailserver audit` or
    monitoring there, so a probe that tests refusals cannot lock them out."""

    enabled: bool = Field(
        default=True, description="Run fail2ban with the mail jails (postfix-sasl, dovecot)."
    )
    maxretry: int = Field(default=5, ge=1, le=100, description="Failures that get an address banned.")
    findtime: int = Field(default=600, ge=10, le=7 * 86400, description="Window the failures count in (s).")
    bantime: int = Field(default=3600, ge=10, le=365 * 86400, description="How long a ban lasts (s).")
    ignore_ip: list[Network] = Field(
        default_factory=list,
        description="Networks never banned besides loopback and mynetworks (CIDR), e.g. the audit host.",
    )
