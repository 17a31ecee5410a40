"""Dovecot's part of the manifest: dovecot.conf, the conf.d files it includes, the passwd-file."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated


def _includes(plan: Plan) -> list[str]:
    """conf.d files in the order Dovecot must read them (10-mail sets mail_plugins before protocol blocks)."""
    names = ["conf.d/10-auth.conf", "conf.d/10-mail.conf", "conf.d/10-master.conf", "conf.d/10-ssl.conf"]
    if "lmtp" in plan.protocols:
        names.append("conf.d/20-lmtp.conf")
    if plan.has_quota:
        names.append("conf.d/90-quota.conf")
    return names


def _first_valid_uid(plan: Plan) -> int:
    uids = [1000]
    if plan.server.virtual is not None:
        uids.append(plan.server.virtual.vmail.uid)
    return min(uids)


def files(plan: Plan) -> list[ManagedFile]:
    if not plan.uses_dovecot:
        return []
    s = plan.server
    out: list[ManagedFile] = []

    def add(rel: str, template: str, **extra: object) -> None:
        out.append(templated(plan, plan.dc(rel), template, "dovecot", context=extra))

    includes = _includes(plan)
    add("dovecot.conf", "dovecot/dovecot.conf.j2", dovecot_includes=includes)
    add("conf.d/10-auth.conf", "dovecot/conf.d/10-auth.conf.j2")
    add("conf.d/10-mail.conf", "dovecot/conf.d/10-mail.conf.j2", first_valid_uid=_first_valid_uid(plan))
    add("conf.d/10-master.conf", "dovecot/conf.d/10-master.conf.j2")
    add("conf.d/10-ssl.conf", "dovecot/conf.d/10-ssl.conf.j2")
    if "conf.d/20-lmtp.conf" in includes:
        add("conf.d/20-lmtp.conf", "dovecot/conf.d/20-lmtp.conf.j2")
    if "conf.d/90-quota.conf" in includes:
        add("conf.d/90-quota.conf", "dovecot/conf.d/90-quota.conf.j2")
    if s.virtual is not None:
        add("conf.d/auth-passwdfile.conf.ext", "dovecot/conf.d/auth-passwdfile.conf.ext.j2")
        # the auth process runs as dovecot and reads the passwd-file itself: root:dovecot 0640
        out.append(
            templated(plan, plan.distro.dovecot_passwd_file, "dovecot/users.j2", "dovecot", reload=(),
                      owner="root", group=plan.distro.dovecot_user, mode="640", secret=True)
        )
    if s.local.users:
        add("conf.d/auth-system.conf.ext", "dovecot/conf.d/auth-system.conf.ext.j2")
    return out


def expected_doveconf(plan: Plan) -> dict[str, str]:
    """Top-level settings `doveconf -n` must show, as Dovecot 2.3 prints them."""
    if not plan.uses_dovecot:
        return {}
    s = plan.server
    out = {
        "protocols": " ".join(plan.protocols),
        "disable_plaintext_auth": "yes",
        "mail_location": plan.dovecot_mail_location,
        "ssl": "required" if s.tls.enabled else "no",
    }
    if s.tls.enabled:
        out["ssl_cert"] = f"<{plan.tls.cert_path}"
        out["ssl_min_protocol"] = s.tls.min_protocol
    return out
