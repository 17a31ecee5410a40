"""fail2ban's part of the manifest: one jail file with the mail jails, read from the journal."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated
from pyinfra_mailserver.services.system.render import ports

# each jail and the filter (filter.d/) for the failures its daemon logs: fail2ban's own for Postfix, ours
# for Dovecot (templates/fail2ban/dovecot-filter.conf.j2: it knows 2.4's log lines)
DOVECOT_FILTER = "pyinfra-mailserver-dovecot"
FILTERS = {"postfix-sasl": "postfix[mode=auth]", "dovecot": DOVECOT_FILTER}
DAEMONS = {"postfix-sasl": "postfix", "dovecot": "dovecot"}


def jail_file(plan: Plan) -> str:
    return f"{plan.distro.fail2ban_dir}/jail.d/pyinfra-mailserver.local"


def jail_names(plan: Plan) -> tuple[str, ...]:
    """The jails the host runs: SMTP AUTH always, Dovecot's logins when Dovecot is there."""
    return ("postfix-sasl", *(("dovecot",) if plan.uses_dovecot else ()))


def ignored(plan: Plan) -> list[str]:
    """Never banned: loopback, mynetworks and the operator's list (fail2ban spells IPv6 unbracketed)."""
    s = plan.server
    nets = ["127.0.0.0/8", "[::1]/128", *(s.identity.mynetworks or []), *s.fail2ban.ignore_ip]
    return list(dict.fromkeys(n.replace("[", "").replace("]", "") for n in nets))


def journalmatch(plan: Plan, daemon: str) -> str:
    """The journal entries of a daemon's units (Postfix's master may run in an instance unit)."""
    d = plan.distro
    units = [f"{d.services[daemon]}.service"]
    if daemon == "postfix":
        units += [*d.unit_parts, *d.replaced_units.get("postfix", ())]
    return " + ".join(f"_SYSTEMD_UNIT={u}" for u in dict.fromkeys(units))


def files(plan: Plan) -> list[ManagedFile]:
    if not plan.uses_fail2ban:
        return []
    jails = {name: (FILTERS[name], journalmatch(plan, DAEMONS[name])) for name in jail_names(plan)}
    closed = sorted({p.port for p in ports(plan) if p.protocol != "lmtp"})  # what a ban closes
    context = {"ignored": ignored(plan), "ports": closed, "jails": jails}
    out = [templated(plan, jail_file(plan), "fail2ban/jail.local.j2", "fail2ban", context=context)]
    if "dovecot" in jails:
        path = f"{plan.distro.fail2ban_dir}/filter.d/{DOVECOT_FILTER}.conf"
        extra = {"journalmatch": jails["dovecot"][1]}
        out.append(templated(plan, path, "fail2ban/dovecot-filter.conf.j2", "fail2ban", context=extra))
    return out
