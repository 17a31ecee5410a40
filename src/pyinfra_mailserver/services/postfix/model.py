"""Postfix's part of the model: identity (main.cf basics), relay, header_checks, /etc/aliases, and the
checks between sections that are about Postfix."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import (
    Fqdn,
    Network,
    Problems,
    Strict,
    check_address,
    check_domain,
    err,
    parse_nexthop,
    q,
)
from pyinfra_mailserver.model.passwords import PlainSecret

if TYPE_CHECKING:
    from pyinfra_mailserver.model.server import MailServer

# main.cf parameters the templates write: postfix_extra may not override them (one source of truth; the
# model's checks would be bypassed). tests/unit keep this list in step with templates/postfix/main.cf.j2.
MANAGED_PARAMS = frozenset(
    [
        "compatibility_level",
        "myhostname",
        "mydomain",
        "myorigin",
        "mydestination",
        "inet_interfaces",
        "inet_protocols",
        "mynetworks",
        "mynetworks_style",
        "recipient_delimiter",
        "mailbox_size_limit",
        "message_size_limit",
        "smtpd_banner",
        "biff",
        "append_dot_mydomain",
        "readme_directory",
        "alias_maps",
        "alias_database",
        "home_mailbox",
        "mailbox_command",
        "relayhost",
        "transport_maps",
        "cyrus_sasl_config_path",
        "smtp_sasl_auth_enable",
        "smtp_sasl_password_maps",
        "smtp_sasl_security_options",
        "smtp_sasl_tls_security_options",
        "virtual_mailbox_domains",
        "virtual_mailbox_maps",
        "virtual_alias_domains",
        "virtual_alias_maps",
        "virtual_transport",
        "header_checks",
        "disable_vrfy_command",
        "smtpd_helo_required",
        "smtpd_forbid_bare_newline",
        "smtpd_forbid_bare_newline_exclusions",
        "smtpd_forbid_unauth_pipelining",
        "smtpd_helo_restrictions",
        "smtpd_sender_restrictions",
        "smtpd_sender_login_maps",
        "smtpd_recipient_restrictions",
        "smtpd_data_restrictions",
        "postscreen_greet_action",
        "postscreen_dnsbl_sites",
        "postscreen_dnsbl_threshold",
        "postscreen_dnsbl_action",
        "smtpd_etrn_restrictions",
        "mua_sender_restrictions",
        "anvil_rate_time_unit",
        "smtpd_client_connection_rate_limit",
        "smtpd_client_connection_count_limit",
        "smtpd_client_message_rate_limit",
        "smtpd_client_recipient_rate_limit",
        "smtpd_client_auth_rate_limit",
        "smtpd_client_event_limit_exceptions",
        "smtpd_relay_restrictions",
        "smtpd_sasl_type",
        "smtpd_sasl_path",
        "smtpd_sasl_security_options",
        "smtpd_sasl_tls_security_options",
        "broken_sasl_auth_clients",
        "smtpd_sasl_auth_enable",
        "smtpd_tls_cert_file",
        "smtpd_tls_key_file",
        "smtpd_tls_security_level",
        "smtpd_tls_auth_only",
        "smtpd_tls_protocols",
        "smtpd_tls_mandatory_protocols",
        "smtpd_tls_loglevel",
        "smtpd_tls_received_header",
        "smtpd_tls_mandatory_ciphers",
        "tls_high_cipherlist",
        "tls_preempt_cipherlist",
        "smtp_tls_security_level",
        "smtp_tls_protocols",
        "smtp_tls_mandatory_protocols",
        "smtp_tls_loglevel",
    ]
)
# the queue directory = chroot of every supported family (Postfix resolves private/... against it)


# ---- How the SMTP server reads what clients send.


_DNSBL = re.compile(
    r"^(?P<domain>[a-z0-9.-]+)(?:=(?P<filter>[0-9.;\[\]-]+))?(?:\*(?P<weight>-?[0-9]{1,3}))?$"
)


class Postscreen(Strict):
    """postscreen(8) in front of port 25: one process screens every new client before an smtpd serves
    it, so zombies that talk before the greeting (and, with DNSBL sites, listed addresses) never reach
    smtpd. A client that passed is remembered (postscreen_cache_map) and not delayed again."""

    enabled: bool = Field(default=True, description="Screen port 25 with postscreen (the login ports never).")
    greet_action: Literal["enforce", "drop", "ignore"] = Field(
        default="enforce",
        description="A client that speaks before the greeting (pregreet): 'enforce' refuses its "
        "recipients with 550 and logs them, 'drop' hangs up with 521, 'ignore' only logs.",
    )
    dnsbl_sites: list[str] = Field(
        default_factory=list,
        description="DNS blocklists as postscreen_dnsbl_sites, e.g. 'zen.spamhaus.org*3', "
        "'bl.spamcop.net*1'; empty: no DNSBL (a public resolver is refused by most lists).",
    )
    dnsbl_threshold: int = Field(default=3, ge=1, le=100, description="Weight that makes a client listed.")
    dnsbl_action: Literal["enforce", "drop", "ignore"] = Field(
        default="enforce", description="What a listed client gets (as greet_action)."
    )

    @field_validator("dnsbl_sites")
    @classmethod
    def _sites(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for site in v:
            m = _DNSBL.match(site.strip().lower())
            if not m:
                raise err(
                    "dnsbl",
                    f"dnsbl site {site!r}: use domain[=filter][*weight], e.g. zen.spamhaus.org*3 "
                    "or b.barracudacentral.org=127.0.0.2*2",
                )
            check_domain(m.group("domain"), what=f"dnsbl site {site!r}")
            out.append(site.strip().lower())
        return out


class RateLimits(Strict):
    """anvil(8)'s limits per client address and minute, for every SMTP port. Clients in mynetworks and
    in fail2ban.ignore_ip are exempt (smtpd_client_event_limit_exceptions). 0 means no limit."""

    connections: int = Field(default=100, ge=0, le=100000, description="New connections per minute.")
    concurrent: int = Field(default=20, ge=0, le=10000, description="Connections open at once.")
    messages: int = Field(default=200, ge=0, le=100000, description="Messages per minute.")
    recipients: int = Field(default=500, ge=0, le=1000000, description="Recipients per minute.")
    auth: int = Field(default=20, ge=0, le=100000, description="AUTH commands per minute.")


class Smtpd(Strict):
    """What smtpd accepts from clients. The defaults close SMTP smuggling (CVE-2023-51764): a client
    that ends DATA with a bare `<LF>.<CR><LF>` cannot slip a second message, with a sender it never
    authenticated as, past the first one."""

    forbid_bare_newline: Literal["normalize", "reject", "no"] = Field(
        default="normalize",
        description="smtpd_forbid_bare_newline: 'normalize' ends DATA only at <CR><LF>.<CR><LF> and reads "
        "a bare <LF> as a line end; 'reject' refuses a bare <LF> with 550; 'no' (Postfix's old default) "
        "leaves smuggling open. mynetworks is exempt (smtpd_forbid_bare_newline_exclusions).",
    )
    forbid_unauth_pipelining: bool = Field(
        default=True,
        description="smtpd_forbid_unauth_pipelining: drop a client that sends commands before the "
        "answer to the previous one without having been offered PIPELINING (spambots, smuggling).",
    )
    enforce_sender_login: bool = Field(
        default=True,
        description="A logged-in client may send only as its own addresses (its mailbox, a system "
        "user's address in each mydestination domain, and the mailbox's `send_as`): "
        "smtpd_sender_login_maps with reject_authenticated_sender_login_mismatch.",
    )
    reject_outside_local_senders: bool = Field(
        default=True,
        description="Refuse mail from clients that neither logged in nor are in mynetworks when its "
        "envelope sender is in a domain this host serves (spoofed local senders on port 25). "
        "Turn off only if outside hosts legitimately send with your domains' addresses.",
    )
    helo_checks: bool = Field(
        default=True,
        description="Refuse a HELO/EHLO name that is no valid FQDN nor address literal ('!!bad!!', "
        "'1.2.3.4', 'localhost') from clients outside mynetworks that did not log in.",
    )
    postscreen: Postscreen = Field(default_factory=Postscreen)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    reject_unknown_sender_domain: bool = Field(
        default=True,
        description="Refuse (or, on a DNS failure, defer) mail whose sender domain has no MX nor A "
        "record: bounces could never reach it. Needs working DNS on the host.",
    )


# ---- Who the server is and whom it serves: names, destinations, networks and size limits.

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
                name = check_domain(item, what="inet_interfaces entry")
                if "." not in name and name != "localhost":
                    raise err(
                        "interfaces",
                        f"inet_interfaces entry {item!r} is no address nor FQDN: Postfix binds to "
                        "addresses, not to interface names — give the interface's address "
                        "(e.g. 192.0.2.10), or 'all'",
                    ) from None
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


# ---- Outbound routing: the relayhost (with optional SASL client credentials) and the transport map.

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


# ---- header_checks: regexp rules on message headers (e.g. WARN to log them for legal tracking).

ACTIONS = ("WARN", "HOLD", "DISCARD", "REJECT", "IGNORE", "INFO", "PREPEND", "REDIRECT", "FILTER", "DUNNO")
_PATTERN = re.compile(r"^!?/(.+)/([imx]*)$")


class HeaderCheck(Strict):
    """One line of a regexp: table: `/pattern/flags ACTION [text]`; order matters (first match wins)."""

    pattern: str = Field(
        description="Postfix regexp, e.g. /^Subject:/ — case-insensitive by default (the i flag makes it "
        "case-sensitive in Postfix)."
    )
    action: str = Field(default="WARN", description="WARN, HOLD, DISCARD, REJECT text, PREPEND header ...")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        m = _PATTERN.match(v)
        if not m or "\n" in v:
            raise err("regexp", f"pattern {v!r} must look like /regex/flags (flags among i, m, x)")
        body = m.group(1)
        if re.search(r"(?<!\\)/", body):
            raise err("regexp", f"pattern {v!r}: escape '/' inside the expression as \\/")
        try:
            re.compile(body)
        except re.error as exc:
            raise err("regexp", f"pattern {v!r} does not compile: {exc}") from None
        return v

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        word = v.split(" ", 1)[0].upper()
        if word not in ACTIONS or "\n" in v:
            raise err("action", f"action {v!r}: start with one of {', '.join(ACTIONS)}")
        return word + v[len(word) :]


# ---- /etc/aliases: local redirects and lists (postalias), checked for loops and unknown targets.

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")


def check_alias_name(name: str) -> str:
    if not _NAME.match(name):
        raise err("alias", f"alias name {name!r}: use lower-case letters, digits and . _ + -")
    return name


def classify_target(target: str) -> tuple[str, str]:
    """(kind, value) of an alias target: local, address, command, file, include."""
    t = target.strip()
    if t.startswith("|"):
        return "command", t
    if t.startswith(":include:"):
        return "include", t
    if t.startswith("/"):
        return "file", t
    if "@" in t:
        return "address", check_address(t, what="alias target")
    name = t.removeprefix("\\")
    if not _NAME.match(name):
        raise err("alias", f"alias target {target!r} is neither a local name, an address, |command nor /file")
    return "local", name


def check_aliases(aliases: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, targets in aliases.items():
        check_alias_name(name)
        if not targets:
            raise err("alias", f"alias {name!r} has no targets")
        for t in targets:
            classify_target(t)
            if "," in t or "\n" in t:
                raise err("alias", f"alias {name!r}: one target per list item (no commas)")
        out[name] = [t.strip() for t in targets]
    return out


def find_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Cycles in a directed graph (each reported once, starting at its smallest node)."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, []):
            if nxt in path:
                cyc = path[path.index(nxt) :]
                i = cyc.index(min(cyc))
                key = tuple(cyc[i:] + cyc[:i])
                if key not in seen:
                    seen.add(key)
                    cycles.append([*key, key[0]])
            elif len(path) < 64:
                walk(nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, [start])
    return cycles


def identity_problems(server: MailServer, ok: Callable[..., bool]) -> Problems:
    """Identity: a name to serve, and networks trusted to relay that are no open relay."""
    p: Problems = []
    if ok("identity"):
        ident = server.identity
        if ident.myhostname is None:
            p.append(
                (
                    "identity.myhostname",
                    "not set and the inventory host name is not an FQDN — set identity.myhostname "
                    "(e.g. mx1.example.org) or name the host by its FQDN in the inventory",
                )
            )
        if ident.mydomain is None and ident.myhostname is not None:
            p.append(("identity.mydomain", "cannot be derived from myhostname — set identity.mydomain"))
        if ident.mynetworks is None and ident.mynetworks_style is None:
            p.append(("identity.mynetworks", "set mynetworks (CIDRs) or mynetworks_style ('host')"))
        if ident.mynetworks is not None and ident.mynetworks_style is not None:
            p.append(("identity.mynetworks_style", "ignored by Postfix when mynetworks is set — remove one"))
        for i, net in enumerate(ident.mynetworks or []):
            n = ipaddress.ip_network(net.replace("[", "").replace("]", ""))
            if (n.version == 4 and n.prefixlen < 8) or (n.version == 6 and n.prefixlen < 16):
                p.append(
                    (
                        f"identity.mynetworks[{i}]",
                        f"{net} trusts a huge part of the Internet (open relay) "
                        "— list only your own networks",
                    )
                )
        if ident.mynetworks_style == "class":
            p.append(("identity.mynetworks_style", "'class' trusts a whole class A/B/C network — use 'host'"))
    return p


def main_cf_problems(server: MailServer, ok: Callable[..., bool]) -> Problems:
    """main.cf as a whole: no managed parameter in postfix_extra, sizes Postfix accepts, a relay for
    credentials."""
    p: Problems = []
    if ok("postfix_extra"):
        for key in server.postfix_extra:
            if key in MANAGED_PARAMS:
                p.append(
                    (
                        f"postfix_extra{q(key)}",
                        f"{key} is managed by the model — set it through its "
                        "section (see `mailserver schema`), not postfix_extra",
                    )
                )
    if ok("identity"):
        ident = server.identity
        if 0 < ident.mailbox_size_limit < ident.message_size_limit:
            p.append(
                (
                    "identity.mailbox_size_limit",
                    "smaller than message_size_limit: Postfix refuses to "
                    "start — raise it or use 0 (unlimited)",
                )
            )

    if ok("relay"):
        # --- relay
        r = server.relay
        if r.credentials is not None and r.relayhost is None:
            p.append(("relay.credentials", "credentials need a relayhost — set relay.relayhost"))
    return p
