"""The root model: one MailServer per host, validated once from `host.data.mailserver`.

Field checks live with their sections; checks that need several sections at once (a virtual domain also in
mydestination, alias loops, ports used twice, AUTH without TLS, ...) live with the service they are about
(services/<name>/model.py) and are all reported together, each as `path: problem — fix`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pyinfra_mailserver.distro import Family
from pyinfra_mailserver.model.common import Problems, Strict, check_domain, check_param_name, err
from pyinfra_mailserver.model.services import Services
from pyinfra_mailserver.services.dovecot.model import Virtual
from pyinfra_mailserver.services.fail2ban.model import Fail2ban
from pyinfra_mailserver.services.postfix.model import HeaderCheck, Identity, Relay, Smtpd, check_aliases
from pyinfra_mailserver.services.sasl.model import Sasl
from pyinfra_mailserver.services.system.model import LocalDelivery
from pyinfra_mailserver.services.tls.model import Tls

CROSS_ERROR = "cross_field"


class MailServer(Strict):
    """Everything about one mail host. Only `identity` (or an FQDN inventory name) is needed; the rest
    has secure defaults: TLS on, AUTH only on submission/smtps after TLS, loopback-only mynetworks."""

    distro: Family | None = Field(default=None, description="debian | rhel; default: from host facts.")
    identity: Identity = Field(default_factory=Identity)
    smtpd: Smtpd = Field(default_factory=Smtpd)
    fail2ban: Fail2ban = Field(default_factory=Fail2ban)
    relay: Relay = Field(default_factory=Relay)
    local: LocalDelivery = Field(default_factory=LocalDelivery)
    aliases: dict[str, list[str]] = Field(
        default_factory=lambda: {"postmaster": ["root"], "abuse": ["root"]},
        description="/etc/aliases: name -> targets (local names, addresses, |command, /file). "
        "postmaster (RFC 5321) and abuse (RFC 2142) must exist.",
    )
    virtual: Virtual | None = Field(
        default=None, description="Virtual mailbox hosting (needs sasl.backend dovecot)."
    )
    sasl: Sasl | None = Field(
        default=None, description="SMTP AUTH for clients; needed by submission and smtps."
    )
    tls: Tls = Field(default_factory=Tls)
    services: Services = Field(default_factory=Services)
    header_checks: list[HeaderCheck] = Field(default_factory=list)
    postfix_extra: dict[str, str] = Field(
        default_factory=dict,
        description="Expert escape hatch: raw main.cf parameters the model does not manage (syntax only).",
    )

    # ---- defaults that need context -------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """myhostname from the inventory host name (when an FQDN), mydomain from myhostname."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        ident = data.get("identity", {})
        if not isinstance(ident, dict):
            return data
        ident = dict(ident)
        host = (info.context or {}).get("inventory_hostname")
        if ident.get("myhostname") is None and isinstance(host, str) and host.count(".") >= 1:
            with contextlib.suppress(PydanticCustomError):
                ident["myhostname"] = check_domain(host, fqdn=True)
        name = ident.get("myhostname")
        if ident.get("mydomain") is None and isinstance(name, str) and name.count(".") >= 2:
            ident["mydomain"] = name.split(".", 1)[1]
        data["identity"] = ident
        # services default to what the data can serve: client ports when SASL is configured, IMAP/POP3
        # when there are mail users; an explicit `enabled` always wins
        services = data.get("services", {})
        if isinstance(services, dict):
            services = dict(services)
            # decided on the whole data even when a re-validation left invalid sections out
            src = (info.context or {}).get("auto_source", data)
            local = src.get("local") if isinstance(src.get("local"), dict) else {}
            has_users = bool(src.get("virtual")) or bool((local or {}).get("users"))
            auto = {
                "submission": src.get("sasl") is not None,
                "smtps": src.get("sasl") is not None,
                "imap": has_users,
                "imaps": has_users,
                "pop3s": has_users,
            }
            for name, on in auto.items():
                svc = services.get(name, {})
                if isinstance(svc, dict) and "enabled" not in svc:
                    services[name] = {**svc, "enabled": on}
            data["services"] = services
        return data

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return check_aliases(v)

    @field_validator("postfix_extra")
    @classmethod
    def _extra(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            check_param_name(key)
            if not isinstance(value, str) or "\n" in value or "\x00" in value:
                raise err("param", f"postfix_extra[{key!r}]: the value must be one line of text")
        return v

    # ---- cross-section checks ---------------------------------------------------------------------------
    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> MailServer:
        problems = self.cross_problems(frozenset((info.context or {}).get("skip_sections", ())))
        if problems:
            raise PydanticCustomError(CROSS_ERROR, "\n".join(f"{p}: {m}" for p, m in problems))
        return self

    def cross_problems(self, skip: frozenset[str] = frozenset()) -> Problems:
        """Problems between sections, each service's checks in turn (services/<name>/model.py). `skip`
        names sections that failed their own validation (their defaults stand in for them): checks
        reading them are skipped, so every check that can run does, and no problem is reported from a
        stand-in value."""
        from pyinfra_mailserver.model.services import port_problems
        from pyinfra_mailserver.services.dovecot import model as dovecot
        from pyinfra_mailserver.services.postfix import model as postfix
        from pyinfra_mailserver.services.sasl import model as sasl
        from pyinfra_mailserver.services.system import model as system
        from pyinfra_mailserver.services.tls import model as tls

        def ok(*sections: str) -> bool:
            return not (skip & set(sections))

        checks = (
            postfix.identity_problems,
            dovecot.problems,
            system.problems,
            sasl.problems,
            tls.problems,
            port_problems,
            postfix.main_cf_problems,
        )
        return [problem for check in checks for problem in check(self, ok)]
