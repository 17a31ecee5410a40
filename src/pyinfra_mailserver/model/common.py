"""Shared building blocks of the model: the strict base class and the name/address validators.

Every section forbids unknown keys (a typo in inventory data must fail, not be silently ignored) and hides
input values in errors, because some inputs are password hashes or relay passwords.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

# One DNS label: letters, digits, hyphens; no hyphen at either end; 1..63 characters (RFC 1035/1123).
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# A local part we accept in addresses: the dot-atom of RFC 5322, ASCII only.
_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


class Strict(BaseModel):
    """Base of every model section: unknown keys refused, inputs never echoed in errors, immutable."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


def err(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message already says what is wrong and how to fix it."""
    return PydanticCustomError(kind, message)


def check_domain(value: str, *, fqdn: bool = False, what: str = "domain") -> str:
    """Validate a DNS name (ASCII only; IDNs must be given in punycode), return it lower-cased.

    Non-ASCII names are refused rather than converted: a Cyrillic 'а' in 'exаmple.org' looks like Latin
    but is another domain, and silently punycoding it would route mail somewhere unexpected.
    """
    if not isinstance(value, str) or not value:
        raise err("domain", f"empty {what} — give a name such as mail.example.org")
    if not value.isascii():
        bad = "".join(sorted({c for c in value if not c.isascii()}))
        raise err(
            "domain",
            f"{what} {value.encode('ascii', 'backslashreplace').decode()!s} contains non-ASCII "
            f"characters ({bad.encode('ascii', 'backslashreplace').decode()}) — look-alike letters are "
            "refused; write internationalised names in punycode (xn--...)",
        )
    # one trailing dot is the DNS root (mx.example.org. is mx.example.org); two are a typo, refused below
    name = value[:-1].lower() if value.endswith(".") and len(value) > 1 else value.lower()
    if len(name) > 253:
        raise err("domain", f"{what} is {len(name)} characters long — a DNS name has at most 253")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise err("domain", f"{what} {name!r} has an empty label (two dots or a leading dot)")
        if len(label) > 63:
            raise err("domain", f"{what} {name!r} has a label of {len(label)} characters — at most 63")
        if not _LABEL.match(label):
            raise err(
                "domain",
                f"{what} {name!r}: label {label!r} may only hold letters, digits and inner hyphens",
            )
    if labels[-1].isdigit():
        raise err("domain", f"{what} {name!r} ends in a numeric label — give a name, not an address")
    if fqdn and len(labels) < 2:
        raise err("domain", f"{what} {name!r} is not fully qualified — give host.domain, e.g. mx1.{name}.org")
    return name


def _domain(value: str) -> str:
    return check_domain(value)


def _fqdn(value: str) -> str:
    return check_domain(value, fqdn=True, what="hostname")


Domain = Annotated[str, AfterValidator(_domain)]
Fqdn = Annotated[str, AfterValidator(_fqdn)]


def check_address(value: str, *, what: str = "address") -> str:
    """Validate local@domain (ASCII, dot-atom local part), return it with the domain lower-cased."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise err("address", f"{what} {value!r} is not of the form user@domain")
    local, domain = value.split("@")
    if not local.isascii() or not _LOCAL_PART.match(local.lower()) or len(local) > 64:
        raise err("address", f"{what} {value!r}: invalid local part {local!r} (ASCII dot-atom, ≤ 64)")
    return f"{local.lower()}@{check_domain(domain, what=f'domain of {what}')}"


def _address(value: str) -> str:
    return check_address(value)


Address = Annotated[str, AfterValidator(_address)]


def check_network(value: str) -> str:
    """A CIDR network in Postfix's notation (IPv6 in brackets), host bits must be zero."""
    raw = value.strip()
    text = raw
    if text.startswith("["):
        m = re.match(r"^\[([0-9a-fA-F:.]+)\](/\d+)?$", text)
        if not m:
            raise err("cidr", f"network {raw!r} is not a CIDR such as 10.0.0.0/24 or [::1]/128")
        text = m.group(1) + (m.group(2) or "")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        hint = ""
        try:
            hint = f" — did you mean {ipaddress.ip_network(text, strict=False)}?"
        except ValueError:
            hint = " — give a CIDR such as 10.0.0.0/24 or [::1]/128"
        raise err("cidr", f"network {raw!r} is not a valid CIDR ({exc}){hint}") from None
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


Network = Annotated[str, AfterValidator(check_network)]


def parse_nexthop(value: str, *, what: str = "relayhost") -> tuple[str, int | None, bool]:
    """Parse Postfix's `[host]:port` / `host:port` / `host` into (host, port, mx_lookup).

    Brackets turn off the MX lookup (the reference's `[host]:port` form); IP addresses must be bracketed.
    """
    text = value.strip()
    m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", text)
    if m:
        host, port, mx = m.group(1), m.group(2), False
    else:
        m = re.match(r"^([^\[\]:]+)(?::(\d+))?$", text)
        if not m:
            raise err("nexthop", f"{what} {value!r} does not parse — use [host]:port, host:port or host")
        host, port, mx = m.group(1), m.group(2), True
    try:
        ip = ipaddress.ip_address(host.removeprefix("ipv6:"))
    except ValueError:
        ip = None
    if ip is None:
        check_domain(host, what=f"host of {what}")
    elif mx:
        raise err("nexthop", f"{what} {value!r}: an IP address must be in brackets, e.g. [{host}]:25")
    port_num = None
    if port is not None:
        port_num = int(port)
        if not 1 <= port_num <= 65535:
            raise err("nexthop", f"{what} {value!r}: port {port_num} is out of range 1-65535")
    return host, port_num, mx


def check_param_name(name: str) -> str:
    if not re.match(r"^[a-z][a-z0-9_]*$", name):
        raise err("param", f"{name!r} is not a Postfix parameter name (lower-case letters, digits, _)")
    return name


# problems between sections: (path, "what is wrong — the fix"), all reported at once
Problems = list[tuple[str, str]]


def q(key: str) -> str:
    """A dict key as a problem's path shows it: `aliases['postmaster']`."""
    return f"[{key!r}]"


# the role addresses every mail domain answers (RFC 5321 section 4.5.1, RFC 2142 section 2), with the
# RFC a refusal names
ROLES = (("postmaster", "RFC 5321"), ("abuse", "RFC 2142"))


def check_send_as(values: list[str], owner: str) -> list[str]:
    """`send_as` entries: addresses, or @domain for every address of a domain, each once."""
    out: list[str] = []
    for v in values:
        if v.startswith("@"):
            out.append("@" + check_domain(v[1:], what=f"send_as entry {v!r} of {owner}"))
        else:
            out.append(check_address(v, what=f"send_as entry of {owner}"))
    if len(set(out)) != len(out):
        raise err("duplicate", f"send_as of {owner} lists an address twice")
    return out
