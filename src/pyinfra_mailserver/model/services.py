"""Listening services: Postfix's smtp/submission/smtps (master.cf) and Dovecot's IMAP/POP3."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from pyinfra_mailserver.model.common import Problems, Strict, check_domain, err

if TYPE_CHECKING:
    from pyinfra_mailserver.model.server import MailServer


class SmtpService(Strict):
    """Port 25: mail from other servers. AUTH off by default (clients use submission)."""

    enabled: bool = True
    port: int = Field(default=25, ge=1, le=65535)
    auth: bool = Field(default=False, description="Offer AUTH on port 25 too (needs TLS; not recommended).")


class SubmissionService(Strict):
    """Port 587: clients, STARTTLS and AUTH required."""

    enabled: bool = True
    port: int = Field(default=587, ge=1, le=65535)


class SmtpsService(Strict):
    """Port 465: clients, implicit TLS (wrapper mode) and AUTH required."""

    enabled: bool = True
    port: int = Field(default=465, ge=1, le=65535)


class Imap(Strict):
    """IMAP on 143, STARTTLS required (Dovecot ssl = required)."""

    enabled: bool = True
    port: int = Field(default=143, ge=1, le=65535)


class Imaps(Strict):
    enabled: bool = True
    port: int = Field(default=993, ge=1, le=65535)


class Pop3(Strict):
    """POP3 on 110, STARTTLS required; off by default (pop3s covers POP3 clients)."""

    enabled: bool = False
    port: int = Field(default=110, ge=1, le=65535)


class Pop3s(Strict):
    enabled: bool = True
    port: int = Field(default=995, ge=1, le=65535)


class Services(Strict):
    """Each service switchable; ports default to the IANA ones and must all differ."""

    chroot: bool = Field(
        default=True, description="Run Postfix's network services chrooted in the queue dir."
    )
    smtp: SmtpService = Field(default_factory=SmtpService)
    submission: SubmissionService = Field(default_factory=SubmissionService)
    smtps: SmtpsService = Field(default_factory=SmtpsService)
    imap: Imap = Field(default_factory=Imap)
    imaps: Imaps = Field(default_factory=Imaps)
    pop3: Pop3 = Field(default_factory=Pop3)
    pop3s: Pop3s = Field(default_factory=Pop3s)
    dovecot_listen: list[str] = Field(default_factory=lambda: ["*", "::"], description="Dovecot `listen`.")
    system_passdb: Literal["pam", "shadow"] = Field(
        default="pam", description="How Dovecot checks system users' passwords (saslauthd variant)."
    )

    @field_validator("dovecot_listen")
    @classmethod
    def _listen(cls, v: list[str]) -> list[str]:
        """Dovecot only fails at start on a bad `listen` (doveconf accepts any text), so check here."""
        if not v:
            raise err("listen", "dovecot_listen is empty — use ['*'] (all IPv4) or addresses")
        for item in v:
            if item in {"*", "::"}:
                continue
            try:
                ipaddress.ip_address(item.strip("[]"))
            except ValueError:
                try:
                    check_domain(item, what="dovecot_listen entry")
                except PydanticCustomError:
                    raise err(
                        "listen",
                        f"dovecot_listen entry {item!r} is not an address — use '*', '::' or an IP address",
                    ) from None
        return v

    def client_auth_services(self) -> list[str]:
        """Postfix services that offer AUTH."""
        out = []
        if self.smtp.enabled and self.smtp.auth:
            out.append("smtp")
        if self.submission.enabled:
            out.append("submission")
        if self.smtps.enabled:
            out.append("smtps")
        return out

    def dovecot_protocols(self) -> list[Literal["imap", "pop3"]]:
        out: list[Literal["imap", "pop3"]] = []
        if self.imap.enabled or self.imaps.enabled:
            out.append("imap")
        if self.pop3.enabled or self.pop3s.enabled:
            out.append("pop3")
        return out

    def enabled_ports(self) -> list[tuple[str, int]]:
        return [
            (name, svc.port)
            for name in ("smtp", "submission", "smtps", "imap", "imaps", "pop3", "pop3s")
            if (svc := getattr(self, name)).enabled
        ]


def port_problems(server: MailServer, ok: Callable[..., bool]) -> Problems:
    """The listener table: each service its own port."""
    p: Problems = []
    if ok("services"):
        # --- ports
        used: dict[int, str] = {}
        for name, port in server.services.enabled_ports():
            if port in used:
                p.append(
                    (
                        f"services.{name}.port",
                        f"port {port} is already used by services.{used[port]} — "
                        "give each service its own port",
                    )
                )
            else:
                used[port] = name
    return p
