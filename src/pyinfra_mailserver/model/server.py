"""The root model: one MailServer per host, validated once from `host.data.mailserver`.

Field checks live with their sections; checks that need several sections at once (a virtual domain also in
mydestination, alias loops, ports used twice, AUTH without TLS, ...) live here and are all reported
together, each as `path: problem — fix`.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pyinfra_mailserver.distro import DISTROS, Family
from pyinfra_mailserver.model.aliases import check_aliases, classify_target, find_cycles
from pyinfra_mailserver.model.common import Strict, check_domain, check_param_name, err
from pyinfra_mailserver.model.delivery import LocalDelivery
from pyinfra_mailserver.model.header_checks import HeaderCheck
from pyinfra_mailserver.model.identity import Identity
from pyinfra_mailserver.model.relay import Relay
from pyinfra_mailserver.model.sasl import Sasl
from pyinfra_mailserver.model.services import Services
from pyinfra_mailserver.model.tls import Tls
from pyinfra_mailserver.model.virtual import Virtual

CROSS_ERROR = "cross_field"
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
        "smtp_tls_security_level",
        "smtp_tls_protocols",
        "smtp_tls_mandatory_protocols",
        "smtp_tls_loglevel",
    ]
)
# the queue directory = chroot of every supported family (Postfix resolves private/... against it)
CHROOT_DIRS = sorted({d.postfix_chroot_dir for d in DISTROS.values()})


def _q(key: str) -> str:
    return f"[{key!r}]"


class MailServer(Strict):
    """Everything about one mail host. Only `identity` (or an FQDN inventory name) is needed; the rest
    has secure defaults: TLS on, AUTH only on submission/smtps after TLS, loopback-only mynetworks."""

    distro: Family | None = Field(default=None, description="debian | rhel; default: from host facts.")
    identity: Identity = Field(default_factory=Identity)
    relay: Relay = Field(default_factory=Relay)
    local: LocalDelivery = Field(default_factory=LocalDelivery)
    aliases: dict[str, list[str]] = Field(
        default_factory=lambda: {"postmaster": ["root"]},
        description="/etc/aliases: name -> targets (local names, addresses, |command, /file).",
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

    def cross_problems(self, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """Problems between sections. `skip` names sections that failed their own validation (their
        defaults stand in for them): checks reading them are skipped, so every check that can run does,
        and no problem is reported from a stand-in value."""
        p: list[tuple[str, str]] = []

        def ok(*sections: str) -> bool:
            return not (skip & set(sections))

        if ok("identity"):
            ident = self.identity
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
                p.append(
                    ("identity.mynetworks_style", "ignored by Postfix when mynetworks is set — remove one")
                )
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
                p.append(
                    ("identity.mynetworks_style", "'class' trusts a whole class A/B/C network — use 'host'")
                )

        if ok("virtual"):
            # --- virtual hosting
            ident = self.identity
            dests = (
                set(ident.destinations()) if ok("identity") and ident.myhostname and ident.mydomain else set()
            )
            v = self.virtual
            if v is not None:
                for i, d in enumerate(v.domains):
                    if d in dests:
                        p.append(
                            (
                                f"virtual.domains[{i}]",
                                f"{d} is also in mydestination — a domain is either "
                                "local or virtual: remove it from identity.mydestination",
                            )
                        )
                    if d in v.alias_domains:
                        p.append(
                            (f"virtual.domains[{i}]", f"{d} is also in virtual.alias_domains — keep one")
                        )
                for i, d in enumerate(v.alias_domains):
                    if d in dests:
                        p.append(
                            (f"virtual.alias_domains[{i}]", f"{d} is also in mydestination — remove it there")
                        )
                seen: dict[str, int] = {}
                for i, mb in enumerate(v.mailboxes):
                    if mb.domain not in v.domains:
                        p.append(
                            (
                                f"virtual.mailboxes[{i}].address",
                                f"{mb.address}: domain {mb.domain} is not in "
                                "virtual.domains — add it there or fix the address",
                            )
                        )
                    if mb.address in seen:
                        p.append(
                            (
                                f"virtual.mailboxes[{i}].address",
                                f"{mb.address} duplicates virtual.mailboxes[{seen[mb.address]}] — remove one",
                            )
                        )
                    else:
                        seen[mb.address] = i
                probes = [i for i, mb in enumerate(v.mailboxes) if mb.probe]
                for i in probes[1:]:
                    p.append(
                        (
                            f"virtual.mailboxes[{i}].probe",
                            f"only one probe mailbox: virtual.mailboxes[{probes[0]}] is one already",
                        )
                    )
                boxes = set(seen)
                keys = set(v.aliases)
                domains = set(v.all_domains())
                catchall = {k[1:] for k in keys if k.startswith("@")}
                for key, targets in v.aliases.items():
                    kd = key.rsplit("@", 1)[1]
                    if kd not in domains:
                        p.append(
                            (
                                f"virtual.aliases{_q(key)}",
                                f"domain {kd} is not in virtual.domains nor "
                                "virtual.alias_domains — add it or fix the alias",
                            )
                        )
                    for t in targets:
                        td = t.rsplit("@", 1)[1]
                        if td in v.domains and t not in boxes and t not in keys and td not in catchall:
                            p.append(
                                (
                                    f"virtual.aliases{_q(key)}",
                                    f"target {t} is in a virtual domain but is no "
                                    "mailbox nor alias — add the mailbox or fix the target",
                                )
                            )
                        if td in v.alias_domains and t not in keys:
                            p.append(
                                (
                                    f"virtual.aliases{_q(key)}",
                                    f"target {t} is in an alias-only domain without an alias for it",
                                )
                            )
                edges = {
                    k: [t for t in ts if t in keys and not (t == k and t in boxes)]
                    for k, ts in v.aliases.items()
                }
                for cyc in find_cycles(edges):
                    p.append(
                        (
                            f"virtual.aliases{_q(cyc[0])}",
                            "alias loop "
                            + " -> ".join(cyc)
                            + " — break the cycle (an alias may include itself only when it is a mailbox)",
                        )
                    )
                if ok("local") and v.vmail.user in self.local.account_names():
                    p.append(
                        ("virtual.vmail.user", f"{v.vmail.user} is also a local mail user — choose another")
                    )

        if ok("local", "aliases"):
            # --- local users and /etc/aliases
            names: dict[str, int] = {}
            for i, u in enumerate(self.local.users):
                if u.name in names:
                    p.append((f"local.users[{i}].name", f"{u.name} duplicates local.users[{names[u.name]}]"))
                names.setdefault(u.name, i)
                if u.name in self.aliases:
                    p.append(
                        (
                            f"local.users[{i}].name",
                            f"{u.name} is also an alias name — mail would never reach "
                            "the user's mailbox; rename the alias",
                        )
                    )
            known = self.local.account_names()
            alias_edges: dict[str, list[str]] = {}
            for key, targets in self.aliases.items():
                alias_edges[key] = []
                for t in targets:
                    kind, val = classify_target(t)
                    if kind != "local":
                        continue
                    if val in self.aliases and not (val == key and val in known) and not t.startswith("\\"):
                        alias_edges[key].append(val)
                    elif val not in self.aliases and val not in known:
                        p.append(
                            (
                                f"aliases{_q(key)}",
                                f"target {val!r} is no alias, local user nor existing account "
                                "— add it to local.users or local.existing_accounts, or fix the target",
                            )
                        )
            if "postmaster" not in self.aliases and "postmaster" not in known:
                p.append(("aliases", 'no \'postmaster\' — RFC 5321 requires one: add "postmaster": ["root"]'))
            for cyc in find_cycles(alias_edges):
                p.append((f"aliases{_q(cyc[0])}", "alias loop " + " -> ".join(cyc) + " — break the cycle"))

        if ok("sasl", "services", "virtual", "local"):
            # --- SASL
            v = self.virtual
            auth_services = self.services.client_auth_services()
            s = self.sasl
            if s is None and auth_services:
                p.append(
                    (
                        "sasl",
                        f"{', '.join(auth_services)} require SMTP AUTH — configure sasl "
                        "(backend saslauthd or dovecot) or disable those services",
                    )
                )
            if s is not None:
                if s.backend == "saslauthd":
                    if v is not None:
                        p.append(
                            (
                                "sasl.backend",
                                "virtual mailboxes are known to Dovecot only — use backend dovecot",
                            )
                        )
                    sock = s.saslauthd_options().socket_dir
                    if (
                        sock is not None
                        and self.services.chroot
                        and not any(sock == c or sock.startswith(c + "/") for c in CHROOT_DIRS)
                    ):
                        p.append(
                            (
                                "sasl.saslauthd.socket_dir",
                                f"{sock} is outside Postfix's chroot "
                                f"({CHROOT_DIRS[0]}): chrooted smtpd cannot reach it — use "
                                f"{CHROOT_DIRS[0]}/var/run/saslauthd or set services.chroot: false",
                            )
                        )
                    if s.saslauthd_options().mechanism in {"pam", "shadow"} and not self.local.users:
                        p.append(
                            (
                                "local.users",
                                "saslauthd with pam/shadow authenticates system users — declare "
                                "at least one in local.users",
                            )
                        )
                else:
                    if s.saslauthd is not None:
                        p.append(("sasl.saslauthd", "only used with backend saslauthd — remove it"))
                    sock = s.dovecot_socket
                    if sock.startswith("/") and not any(sock.startswith(c + "/") for c in CHROOT_DIRS):
                        p.append(
                            (
                                "sasl.dovecot_socket",
                                f"{sock} is outside Postfix's queue directory/chroot — use private/auth",
                            )
                        )
                    if v is None and not self.local.users:
                        p.append(
                            (
                                "sasl.backend",
                                "Dovecot has no users to authenticate — add virtual mailboxes or local.users",
                            )
                        )

        if ok("tls", "services"):
            # --- TLS
            auth_services = self.services.client_auth_services()
            tls = self.tls
            if not tls.enabled and auth_services:
                p.append(
                    (
                        "tls.enabled",
                        f"TLS is off while AUTH is on ({', '.join(auth_services)}) — passwords "
                        "would cross the network in clear; enable TLS",
                    )
                )
            if not tls.enabled and self.services.smtps.enabled:
                p.append(("services.smtps.enabled", "smtps is implicit TLS — disable it or enable TLS"))
            if not tls.enabled and (
                self.services.imaps.enabled
                or self.services.pop3s.enabled
                or self.services.dovecot_protocols()
            ):
                p.append(("tls.enabled", "Dovecot logins need TLS — enable TLS or disable imap/pop3"))
            if tls.mode == "files":
                if not tls.cert:
                    p.append(("tls.cert", "mode 'files' needs the certificate path"))
                if not tls.key:
                    p.append(("tls.key", "mode 'files' needs the private key path"))
            elif tls.cert or tls.key or tls.ca:
                p.append(
                    (
                        "tls.mode",
                        "cert/key/ca are only used with mode 'files' — set mode: files or remove them",
                    )
                )

        if ok("services"):
            # --- ports
            used: dict[int, str] = {}
            for name, port in self.services.enabled_ports():
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

        if ok("postfix_extra"):
            for key in self.postfix_extra:
                if key in MANAGED_PARAMS:
                    p.append(
                        (
                            f"postfix_extra{_q(key)}",
                            f"{key} is managed by the model — set it through its "
                            "section (see `mailserver schema`), not postfix_extra",
                        )
                    )
        if ok("identity"):
            ident = self.identity
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
            r = self.relay
            if r.credentials is not None and r.relayhost is None:
                p.append(("relay.credentials", "credentials need a relayhost — set relay.relayhost"))
        return p
