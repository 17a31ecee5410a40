"""Who the server is and whom it serves: names, destinations, networks and size limits (main.cf basics)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import Fqdn, Network, Strict, check_domain, err

# Postfix keeps sizes in a signed 64-bit long; a larger value makes postconf/postfix fail at run time.
SIZE_MAX = 2**63 - 1
_DEST_VAR = re.compile(r"^(?:[a-z0-9.-]*\$(myhostname|mydomain)|\$(myhostname|mydomain))$")


class Identity(Strict):
    """Names and networks. Defaults follow the references (mydestination as Postfix's default plus
    $mydomain, mynetworks limited to loopback: never an open relay)."""

    myhostname: Fqdn | None = Field(
        default=None,
        description="FQDN of the server; defaults to the pyinfra inventory host name when that is an FQDN.",
    )
    mydomain: Fqdn | None = Field(
        default=None, description="Mail domain; defaults to myhostname minus its first label."
    )
    myorigin: str = Field(default="$mydomain", description="Domain appended to locally posted mail.")
    mydestination: list[str] = Field(
        default_factory=lambda: ["$myhostname", "localhost.$mydomain", "localhost"],
        description="Domains delivered locally ($myhostname/$mydomain allowed). Never list a virtual domain.",
    )
    inet_interfaces: list[str] = Field(
        default_factory=lambda: ["all"], description="Addresses Postfix listens on."
    )
    inet_protocols: Literal["all", "ipv4", "ipv6"] = "all"
    mynetworks: list[Network] | None = Field(
        default_factory=lambda: ["127.0.0.0/8", "[::1]/128"],
        description="Networks trusted to relay without AUTH (CIDR). null to use mynetworks_style instead.",
    )
    mynetworks_style: Literal["host", "subnet", "class"] | None = Field(
        default=None, description="Used only when mynetworks is null; 'host' is the safe choice."
    )
    recipient_delimiter: str = Field(default="+", max_length=4)
    mailbox_size_limit: int = Field(
        default=0, ge=0, le=SIZE_MAX, description="Bytes; 0 = unlimited (Maildir)."
    )
    message_size_limit: int = Field(default=25 * 1024 * 1024, ge=1024, le=SIZE_MAX)
    smtpd_banner: str = Field(default="$myhostname ESMTP", description="Greeting; keep versions out of it.")

    @field_validator("myorigin")
    @classmethod
    def _origin(cls, v: str) -> str:
        if v in {"$myhostname", "$mydomain", "/etc/mailname"}:
            return v
        return check_domain(v, what="myorigin")

    @field_validator("mydestination")
    @classmethod
    def _dest(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for item in v:
            if _DEST_VAR.match(item):
                out.append(item)
            else:
                out.append(check_domain(item, what="mydestination entry"))
        if len(set(out)) != len(out):
            raise err("duplicate", "mydestination lists a domain twice")
        return out

    @field_validator("inet_interfaces")
    @classmethod
    def _ifaces(cls, v: list[str]) -> list[str]:
        import ipaddress

        if not v:
            raise err(
                "interfaces", "inet_interfaces is empty — use ['all'] or ['loopback-only'] or addresses"
            )
        for item in v:
            if item in {"all", "loopback-only"}:
                if len(v) > 1:
                    raise err("interfaces", f"{item!r} cannot be combined with other interfaces")
                continue
            try:
                ipaddress.ip_address(item.strip("[]"))
            except ValueError:
                check_domain(item, what="inet_interfaces entry")
        return v

    @field_validator("recipient_delimiter")
    @classmethod
    def _delim(cls, v: str) -> str:
        if v and not re.match(r"^[+\-_.=]+$", v):
            raise err("delimiter", f"recipient_delimiter {v!r}: use characters among + - _ . =")
        return v

    @field_validator("smtpd_banner")
    @classmethod
    def _banner(cls, v: str) -> str:
        if not v.startswith("$myhostname"):
            raise err("banner", "smtpd_banner must start with $myhostname (RFC 5321 greeting)")
        if "\n" in v or len(v) > 200:
            raise err("banner", "smtpd_banner must be one line of at most 200 characters")
        return v

    def expand(self, value: str) -> str:
        """Expand $myhostname/$mydomain in a mydestination-like entry (after defaults are filled)."""
        return value.replace("$myhostname", self.myhostname or "").replace("$mydomain", self.mydomain or "")

    def destinations(self) -> list[str]:
        return [self.expand(d) for d in self.mydestination]
