"""SMTP AUTH for clients: Cyrus SASL with saslauthd (reference 001) or Dovecot SASL (reference 002)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import Strict, err

Mech = Literal["plain", "login"]
MECHS: tuple[Mech, ...] = ("plain", "login")


class Saslauthd(Strict):
    """saslauthd checks passwords for Postfix; its socket must be reachable from Postfix's chroot."""

    mechanism: Literal["pam", "shadow", "sasldb"] = Field(
        default="pam",
        description="pam/shadow: system users (local.users); sasldb: saslpasswd2 users (unmanaged).",
    )
    socket_dir: str | None = Field(
        default=None,
        description="Directory of saslauthd's mux socket; default inside the chroot: "
        "/var/spool/postfix/var/run/saslauthd.",
    )
    threads: int = Field(default=5, ge=1, le=64)

    @field_validator("socket_dir")
    @classmethod
    def _dir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^/[A-Za-z0-9._/-]+$", v) or ".." in v:
            raise err("path", f"socket_dir {v!r} must be an absolute path")
        return v.rstrip("/")


class Sasl(Strict):
    """Which SASL server Postfix asks; AUTH is offered only on the services that enable it."""

    backend: Literal["saslauthd", "dovecot"]
    mech_list: list[Mech] = Field(
        default_factory=lambda: list(MECHS), description="Offered only over TLS (smtpd_tls_auth_only)."
    )
    saslauthd: Saslauthd | None = Field(default=None, description="Options of the saslauthd backend.")
    dovecot_socket: str = Field(
        default="private/auth",
        description="Dovecot auth socket, relative to Postfix's queue directory (inside the chroot).",
    )
    broken_clients: bool = Field(default=False, description="broken_sasl_auth_clients (very old Outlook).")

    @field_validator("mech_list")
    @classmethod
    def _mechs(cls, v: list[Mech]) -> list[Mech]:
        if not v:
            raise err("mech", "mech_list is empty — use ['plain', 'login']")
        return list(dict.fromkeys(v))

    @field_validator("dovecot_socket")
    @classmethod
    def _sock(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9._/-]+$", v) or ".." in v:
            raise err("path", f"dovecot_socket {v!r} must be a plain path such as private/auth")
        return v

    def saslauthd_options(self) -> Saslauthd:
        return self.saslauthd or Saslauthd()
