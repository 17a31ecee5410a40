"""The system's part of the manifest: packages, accounts, directories, ports, MDA rc files, secrets."""

from __future__ import annotations

import posixpath

from pyinfra_mailserver.manifest import Account, Directory, Group, ManagedFile, Port, User
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import render
from pyinfra_mailserver.services.sasl import render as sasl


def files(plan: Plan) -> list[ManagedFile]:
    cmd = plan.server.local.mailbox_command
    if cmd == "procmail":
        return [
            ManagedFile(
                plan.distro.procmailrc, render("system/procmailrc.j2", plan), template="system/procmailrc.j2"
            )
        ]
    if cmd == "maildrop":
        return [
            ManagedFile(
                plan.distro.maildroprc, render("system/maildroprc.j2", plan), template="system/maildroprc.j2"
            )
        ]
    return []


def packages(plan: Plan) -> tuple[str, ...]:
    d, s = plan.distro, plan.server
    out: list[str] = [*d.postfix_packages, *d.postfix_map_type_packages.get(plan.db, ())]
    if plan.uses_dovecot:
        out += d.dovecot_core_packages
        for proto in plan.protocols:
            out += d.dovecot_protocol_packages.get(proto, ())
    if plan.uses_saslauthd:
        out += d.saslauthd_packages
    if plan.uses_fail2ban:
        out += d.fail2ban_packages
    if s.relay.credentials:
        out += d.sasl_client_packages
    if s.local.mailbox_command == "procmail":
        out.append(d.procmail_package)
    elif s.local.mailbox_command == "maildrop":
        out.append(d.maildrop_package)
    return tuple(dict.fromkeys(out))


def debconf(plan: Plan) -> tuple[tuple[str, str, str, str], ...]:
    if not plan.distro.uses_debconf:
        return ()
    return (
        ("postfix", "postfix/main_mailer_type", "select", "Internet Site"),
        ("postfix", "postfix/mailname", "string", plan.hostname),
    )


def groups(plan: Plan) -> tuple[Group, ...]:
    v = plan.server.virtual
    if v is None:
        return ()
    return (Group(v.vmail.group, gid=v.vmail.gid, system=True),)


def users(plan: Plan) -> tuple[User, ...]:
    d, s = plan.distro, plan.server
    out: list[User] = []
    if plan.uses_saslauthd:
        # `adduser postfix sasl`: so chrooted smtpd may open saslauthd's socket (dir 0710)
        out.append(User(name=d.postfix_user, groups=(d.sasl_group,), shell=d.nologin_shell, system=True))
    if s.virtual is not None:
        vm = s.virtual.vmail
        out.append(
            User(
                name=vm.user, uid=vm.uid, group=vm.group, home=vm.base_dir, shell=d.nologin_shell, system=True
            )
        )
    for u in s.local.users:
        out.append(
            User(
                name=u.name,
                uid=u.uid,
                group=None,
                home=f"/home/{u.name}",
                shell=d.nologin_shell,
                password_hash=u.password.get_secret_value(),
                create_home=True,
            )
        )
    return tuple(out)


def directories(plan: Plan) -> tuple[Directory, ...]:
    d, s = plan.distro, plan.server
    out: list[Directory] = []
    if s.virtual is not None:
        vm = s.virtual.vmail
        out.append(Directory(vm.base_dir, owner=vm.user, group=vm.group, mode="750"))
    if s.local.mailbox_command == "maildrop" and s.local.mailbox == "maildir":
        # maildrop, unlike Postfix's local and procmail, does not create a missing Maildir
        # (`maildirmake`), so the deploy makes it for each system user
        for u in s.local.users:
            base = f"/home/{u.name}/Maildir"
            out += [
                Directory(p, owner=u.name, group=u.name, mode="700")
                for p in (base, f"{base}/cur", f"{base}/new", f"{base}/tmp")
            ]
    if plan.uses_saslauthd and sasl.unit_dropin(plan):
        out.append(Directory(posixpath.dirname(sasl.unit_dropin(plan))))
    if plan.uses_saslauthd:
        sock = plan.saslauthd_socket_dir
        chroot = d.postfix_chroot_dir
        if sock.startswith(chroot + "/"):
            parts = sock[len(chroot) + 1 :].split("/")
            for i in range(1, len(parts)):
                out.append(Directory(chroot + "/" + "/".join(parts[:i]), mode="755"))
        out.append(Directory(sock, owner="root", group=d.sasl_group, mode="710"))
    return tuple(out)


def ports(plan: Plan) -> tuple[Port, ...]:
    s = plan.server
    sv = s.services
    tls = s.tls.enabled
    out: list[Port] = []
    if sv.smtp.enabled:
        out.append(
            Port(
                sv.smtp.port,
                "postfix",
                "smtp",
                "starttls" if tls else "none",
                "optional" if sv.smtp.auth else "none",
            )
        )
    if sv.submission.enabled:
        out.append(Port(sv.submission.port, "postfix", "submission", "starttls", "required"))
    if sv.smtps.enabled:
        out.append(Port(sv.smtps.port, "postfix", "smtps", "implicit", "required"))
    if "imap" in plan.protocols:
        if sv.imap.enabled:
            out.append(Port(sv.imap.port, "dovecot", "imap", "starttls", "required"))
        if sv.imaps.enabled:
            out.append(Port(sv.imaps.port, "dovecot", "imaps", "implicit", "required"))
    if "pop3" in plan.protocols:
        if sv.pop3.enabled:
            out.append(Port(sv.pop3.port, "dovecot", "pop3", "starttls", "required"))
        if sv.pop3s.enabled:
            out.append(Port(sv.pop3s.port, "dovecot", "pop3s", "implicit", "required"))
    return tuple(out)


def secrets(plan: Plan) -> tuple[str, ...]:
    """Every secret string of the host, for masking (hashes without and with their scheme prefix)."""
    s = plan.server
    out: list[str] = []
    if s.relay.credentials is not None:
        out.append(s.relay.credentials.password.get_secret_value())
    if s.virtual is not None:
        for mb in s.virtual.mailboxes:
            h = mb.password.get_secret_value()
            out += [h, h.split("}", 1)[1] if h.startswith("{") else h]
    for u in s.local.users:
        out.append(u.password.get_secret_value())
    return tuple(dict.fromkeys(x for x in out if x))


def accounts(plan: Plan) -> tuple[Account, ...]:
    s = plan.server
    auth = ("smtp-auth",) if s.services.client_auth_services() and s.sasl is not None else ()
    proto = tuple(plan.server.services.dovecot_protocols())
    out: list[Account] = []
    for u in s.local.users:
        if s.local.mailbox == "maildir":
            box = f"/home/{u.name}/Maildir/"
        else:
            box = f"{plan.distro.mail_spool_dir}/{u.name}"
        svc = (
            auth
            if (
                s.sasl is not None
                and (s.sasl.backend == "dovecot" or s.sasl.saslauthd_options().mechanism != "sasldb")
            )
            else ()
        )
        out.append(Account(u.name, "system", u.secret_name, box, svc + proto))
    if s.virtual is not None:
        base = s.virtual.vmail.base_dir
        for mb in s.virtual.mailboxes:
            svc = auth if plan.uses_dovecot_sasl else ()
            out.append(
                Account(
                    mb.address,
                    "virtual",
                    mb.secret_name,
                    f"{base}/{mb.domain}/{mb.local}/Maildir/",
                    svc + proto,
                    probe=mb.probe,
                )
            )
    return tuple(out)


def sockets(plan: Plan) -> tuple[str, ...]:
    """Unix sockets the running stack must have (host paths)."""
    out: list[str] = []
    if plan.uses_saslauthd:
        out.append(plan.saslauthd_socket_dir + "/mux")
    if plan.uses_dovecot_sasl:
        out.append(plan.auth_socket_path)
    if "lmtp" in plan.protocols:
        out.append(plan.lmtp_socket_path)
    if plan.has_quota:
        out.append(plan.quota_status_socket_path)
    return tuple(out)
