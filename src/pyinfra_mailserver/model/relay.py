"""Outbound routing: the relayhost (with optional SASL client credentials) and the transport map."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import Strict, check_domain, err, parse_nexthop
from pyinfra_mailserver.model.passwords import PlainSecret

# transports a route may name (master.cf services we render)
TRANSPORTS = ("smtp", "relay", "lmtp", "local", "virtual", "error", "discard", "retry")


class RelayCredentials(Strict):
    """SASL client login at the relay; the password is a secret (sasl_passwd is rendered 0600)."""

    username: str = Field(min_length=1, max_length=256)
    password: PlainSecret = Field(
        description='{"secret": "NAME"} only: a relay password is never written in data.'
    )

    @field_validator("username")
    @classmethod
    def _user(cls, v: str) -> str:
        if re.search(r"[\s:]", v) or not v.isascii():
            raise err("username", "relay username must be ASCII without spaces or ':'")
        return v


class Relay(Strict):
    """Where non-local mail goes: direct (MX), a relayhost, or per-domain routes (transport map)."""

    relayhost: str | None = Field(
        default=None,
        description="'[host]:port' (no MX lookup) or 'host' (MX lookup); null sends directly.",
    )
    credentials: RelayCredentials | None = None
    transport: dict[str, str] = Field(
        default_factory=dict,
        description="Routes: domain (or .domain for its subdomains) -> 'smtp:[ip]:port', 'error:text', ...",
    )
    require_tls: bool = Field(
        default=True,
        description="With credentials, refuse to talk to the relay without TLS (the password goes in clear).",
    )

    @field_validator("relayhost")
    @classmethod
    def _relayhost(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parse_nexthop(v, what="relayhost")
        return v.strip()

    @field_validator("transport")
    @classmethod
    def _transport(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, route in v.items():
            dom = key[1:] if key.startswith(".") else key
            name = ("." if key.startswith(".") else "") + check_domain(dom, what=f"transport key {key!r}")
            out[name] = check_route(route, key)
        return out


def check_route(route: str, key: str) -> str:
    """A transport map value: transport:nexthop, e.g. smtp:[10.0.0.1]:25, error:5.1.1 no such domain."""
    if ":" not in route:
        raise err("route", f"route of {key!r} is {route!r} — use transport:nexthop, e.g. smtp:[10.0.0.1]:25")
    transport, nexthop = route.split(":", 1)
    if transport not in TRANSPORTS:
        raise err(
            "route", f"route of {key!r}: unknown transport {transport!r} — one of {', '.join(TRANSPORTS)}"
        )
    if transport in {"smtp", "relay"} and nexthop:
        parse_nexthop(nexthop, what=f"route of {key!r}")
    if transport in {"error", "retry"} and not nexthop:
        raise err(
            "route", f"route of {key!r}: {transport}: needs a message, e.g. {transport}:5.1.1 mailbox unknown"
        )
    if "\n" in route or ("  " in route):
        raise err("route", f"route of {key!r} must be one line")
    return route
