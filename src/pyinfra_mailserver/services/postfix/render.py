"""Postfix's part of the manifest: main.cf, master.cf, the maps and their postmap/postalias entries."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile, PostfixMap, ServiceName
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated

RELOAD: tuple[ServiceName, ...] = ("postfix",)
# the regexp table of the served domains, refused as senders to clients that did not log in (port 25 has
# no SASL, so smtpd ignores reject_unauthenticated_sender_login_mismatch there)
LOCAL_SENDERS = "local_senders"
# main.cf's own parameter for the login ports' sender checks (master.cf: -o smtpd_sender_restrictions=$...)
MUA_SENDER_RESTRICTIONS = "mua_sender_restrictions"


def served_domains(plan: Plan) -> list[str]:
    """Every domain this host is the final destination for: mydestination, virtual and alias domains."""
    s = plan.server
    out = [*s.identity.destinations(), *(s.virtual.all_domains() if s.virtual else [])]
    return list(dict.fromkeys(out))


def sender_owners(plan: Plan) -> dict[str, list[str]]:
    """smtpd_sender_login_maps: envelope sender (address or @domain) -> the logins that may use it.

    A mailbox owns its address, a system user NAME@ each mydestination domain, both their `send_as`;
    an address no login owns is refused to every logged-in client."""
    s = plan.server
    if not s.smtpd.enforce_sender_login:
        return {}
    owners: dict[str, set[str]] = {}

    def own(sender: str, login: str) -> None:
        owners.setdefault(sender.lower(), set()).add(login)

    for mb in s.virtual.mailboxes if s.virtual else []:
        own(mb.address, mb.address)
        for other in mb.send_as:
            own(other, mb.address)
    for user in s.local.users:
        for domain in s.identity.destinations():
            own(f"{user.name}@{domain}", user.name)
        for other in user.send_as:
            own(other, user.name)
    return {k: sorted(v) for k, v in sorted(owners.items())}


def restrictions(plan: Plan) -> dict[str, list[str]]:
    """The smtpd_*_restrictions lists main.cf sets, from the smtpd section (empty lists are left out):
    those of port 25, and MUA_SENDER_RESTRICTIONS, which the login ports use as their sender list.

    Order matters: a logged-in client is held to its own addresses even from mynetworks; mynetworks
    and logged-in clients skip the checks meant for unknown clients (their HELO name, a local sender).
    The login check is only where SASL runs: elsewhere smtpd ignores it with a warning in the log."""
    sm = plan.server.smtpd
    helo = ["reject_invalid_helo_hostname", "reject_non_fqdn_helo_hostname"] if sm.helo_checks else []
    login = ["reject_authenticated_sender_login_mismatch"] if sm.enforce_sender_login else []
    sender = [
        *(login if plan.server.services.smtp.auth else []),
        "permit_mynetworks",
        "reject_non_fqdn_sender",
        "permit_sasl_authenticated",
        *(
            [f"check_sender_access regexp:{plan.postfix_file(LOCAL_SENDERS)}"]
            if sm.reject_outside_local_senders
            else []
        ),
        *(["reject_unknown_sender_domain"] if sm.reject_unknown_sender_domain else []),
    ]
    out = {
        "smtpd_helo_restrictions": ["permit_mynetworks", "permit_sasl_authenticated", *helo] if helo else [],
        "smtpd_sender_restrictions": sender,
        MUA_SENDER_RESTRICTIONS: [*login, "reject_non_fqdn_sender"],
        "smtpd_recipient_restrictions": [
            "reject_non_fqdn_recipient",
            # Dovecot answers whether the message (its SIZE=, when the client says it) fits the mailbox:
            # over quota is refused now, rather than accepted and bounced to a sender that may be forged
            *([f"check_policy_service unix:{plan.quota_status_socket}"] if plan.has_quota else []),
        ],
        "smtpd_data_restrictions": ["reject_unauth_pipelining"],
        # ETRN makes the server flush its queue for a domain: only for the host's own networks
        "smtpd_etrn_restrictions": ["permit_mynetworks", "reject"],
    }
    return {k: v for k, v in out.items() if v}


def _file(
    plan: Plan, path: str, template: str, *, mode: str = "644", secret: bool = False, **extra: object
) -> ManagedFile:
    return templated(plan, path, template, "postfix", reload=RELOAD, context=extra, mode=mode, secret=secret)


def files(plan: Plan) -> list[ManagedFile]:
    s = plan.server
    owners = sender_owners(plan)
    out = [
        _file(
            plan,
            plan.postfix_file("main.cf"),
            "postfix/main.cf.j2",
            restrictions=restrictions(plan),
            sender_login_map=plan.postfix_file("sender_login") if owners else None,
        ),
        _file(plan, plan.postfix_file("master.cf"), "postfix/master.cf.j2"),
        _file(plan, plan.distro.aliases_file, "postfix/aliases.j2"),
    ]
    if owners:
        out.append(_file(plan, plan.postfix_file("sender_login"), "postfix/sender_login.j2", owners=owners))
    if s.smtpd.reject_outside_local_senders:
        out.append(
            _file(
                plan,
                plan.postfix_file(LOCAL_SENDERS),
                "postfix/local_senders.j2",
                # domains hold only [a-z0-9.-]: the dot is the one character to escape
                patterns={d: d.replace(".", "\\.") for d in served_domains(plan)},
            )
        )
    if s.relay.transport:
        out.append(_file(plan, plan.postfix_file("transport"), "postfix/transport.j2"))
    if s.relay.credentials:
        out.append(
            _file(plan, plan.postfix_file("sasl_passwd"), "postfix/sasl_passwd.j2", mode="600", secret=True)
        )
    if s.virtual:
        out.append(_file(plan, plan.postfix_file("vmailbox"), "postfix/vmailbox.j2"))
        if s.virtual.aliases:
            out.append(_file(plan, plan.postfix_file("virtual"), "postfix/virtual.j2"))
    if s.header_checks:
        out.append(_file(plan, plan.postfix_file("header_checks"), "postfix/header_checks.j2"))
    return out


def maps(plan: Plan) -> tuple[PostfixMap, ...]:
    """Indexed maps to build after their source changes, each with a key `postmap -q` must answer."""
    s = plan.server
    out = [
        PostfixMap(
            plan.distro.aliases_file, plan.db, "postalias", sorted(s.aliases)[0] if s.aliases else None
        )
    ]
    owners = sender_owners(plan)
    if owners:
        out.append(PostfixMap(plan.postfix_file("sender_login"), plan.db, "postmap", next(iter(owners))))
    if s.relay.transport:
        out.append(
            PostfixMap(plan.postfix_file("transport"), plan.db, "postmap", sorted(s.relay.transport)[0])
        )
    if s.relay.credentials and s.relay.relayhost:
        out.append(PostfixMap(plan.postfix_file("sasl_passwd"), plan.db, "postmap", s.relay.relayhost))
    if s.virtual:
        boxes = sorted(mb.address for mb in s.virtual.mailboxes)
        out.append(PostfixMap(plan.postfix_file("vmailbox"), plan.db, "postmap", boxes[0] if boxes else None))
        if s.virtual.aliases:
            out.append(
                PostfixMap(plan.postfix_file("virtual"), plan.db, "postmap", sorted(s.virtual.aliases)[0])
            )
    return tuple(out)


def regexp_maps(plan: Plan) -> tuple[str, ...]:
    out = [f"regexp:{plan.postfix_file('header_checks')}"] if plan.server.header_checks else []
    if plan.server.smtpd.reject_outside_local_senders:
        out.append(f"regexp:{plan.postfix_file(LOCAL_SENDERS)}")
    return tuple(out)


def parse_main_cf(text: str) -> dict[str, str]:
    """`name = value` pairs as `postconf -n` prints them (continuation lines joined, last one wins)."""
    params: dict[str, str] = {}
    current: str | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and current is not None:
            params[current] = (params[current] + " " + raw.strip()).strip()
            continue
        name, _, value = raw.partition("=")
        current = name.strip()
        params[current] = value.strip()
    return dict(sorted(params.items()))


def parse_master_cf(text: str) -> tuple[str, ...]:
    """master.cf entries, one line each with -o options joined and whitespace normalised, the way
    `postconf -M` prints them after `" ".join(line.split())`."""
    entries: list[str] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and entries:
            entries[-1] += " " + " ".join(raw.split())
        else:
            entries.append(" ".join(raw.split()))
    return tuple(entries)
