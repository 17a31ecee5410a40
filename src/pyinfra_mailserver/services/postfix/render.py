"""Postfix's part of the manifest: main.cf, master.cf, the maps and their postmap/postalias entries."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile, PostfixMap, ServiceName
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated

RELOAD: tuple[ServiceName, ...] = ("postfix",)


def _file(
    plan: Plan, path: str, template: str, *, mode: str = "644", secret: bool = False, **extra: object
) -> ManagedFile:
    return templated(plan, path, template, "postfix", reload=RELOAD, context=extra, mode=mode, secret=secret)


def files(plan: Plan) -> list[ManagedFile]:
    s = plan.server
    out = [
        _file(plan, plan.postfix_file("main.cf"), "postfix/main.cf.j2"),
        _file(plan, plan.postfix_file("master.cf"), "postfix/master.cf.j2"),
        _file(plan, plan.distro.aliases_file, "postfix/aliases.j2"),
    ]
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
    return (f"regexp:{plan.postfix_file('header_checks')}",) if plan.server.header_checks else ()


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
