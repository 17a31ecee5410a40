"""Derived facts every renderer needs: paths on the host, map type, sockets, TLS plan.

Computed once from (MailServer, Distro) so that templates and manifest entries agree on every path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath

from pyinfra_mailserver.distro import Distro
from pyinfra_mailserver.manifest import TlsPlan
from pyinfra_mailserver.model import MailServer

HEADER = "Managed by pyinfra-mailserver — do not edit: changes are overwritten on the next deploy."
LMTP_SOCKET = "private/dovecot-lmtp"  # relative to Postfix's queue directory
QUOTA_STATUS_SOCKET = "private/quota-status"  # Dovecot's quota policy service, for Postfix's smtpd


def tls_protocols(distro: Distro, minimum: str) -> str:
    """main.cf spelling of "this TLS version or newer" for the family's Postfix version."""
    if distro.postfix_tls_protocol_syntax == "range":
        return f">={minimum}"
    older = ["!SSLv2", "!SSLv3", "!TLSv1", "!TLSv1.1"] + (["!TLSv1.2"] if minimum == "TLSv1.3" else [])
    return ", ".join(older)


@dataclass(frozen=True)
class Plan:
    server: MailServer
    distro: Distro

    # ---- names
    @property
    def hostname(self) -> str:
        assert self.server.identity.myhostname is not None
        return self.server.identity.myhostname

    @property
    def domain(self) -> str:
        assert self.server.identity.mydomain is not None
        return self.server.identity.mydomain

    # ---- postfix paths
    @property
    def db(self) -> str:
        return self.distro.default_database_type

    def postfix_file(self, name: str) -> str:
        return str(PurePosixPath(self.distro.postfix_dir) / name)

    @property
    def queue(self) -> str:
        return self.distro.postfix_queue_dir

    @property
    def lmtp_socket(self) -> str:
        return LMTP_SOCKET

    @property
    def lmtp_socket_path(self) -> str:
        return f"{self.queue}/{LMTP_SOCKET}"

    @property
    def quota_status_socket(self) -> str:
        return QUOTA_STATUS_SOCKET

    @property
    def quota_status_socket_path(self) -> str:
        return f"{self.queue}/{QUOTA_STATUS_SOCKET}"

    @property
    def auth_socket(self) -> str:
        assert self.server.sasl is not None
        return self.server.sasl.dovecot_socket

    @property
    def auth_socket_path(self) -> str:
        sock = self.auth_socket
        return sock if sock.startswith("/") else f"{self.queue}/{sock}"

    # ---- saslauthd
    @property
    def uses_saslauthd(self) -> bool:
        return self.server.sasl is not None and self.server.sasl.backend == "saslauthd"

    @property
    def uses_fail2ban(self) -> bool:
        return self.server.fail2ban.enabled

    @property
    def uses_dovecot_sasl(self) -> bool:
        return self.server.sasl is not None and self.server.sasl.backend == "dovecot"

    @cached_property
    def saslauthd_socket_dir(self) -> str:
        """saslauthd's socket directory: inside the chroot when smtpd is chrooted (so smtpd can reach it)."""
        assert self.server.sasl is not None
        given = self.server.sasl.saslauthd_options().socket_dir
        if given:
            return given
        if self.server.services.chroot:
            return self.distro.postfix_chroot_dir + "/var/run/saslauthd"
        return self.distro.saslauthd_default_socket_dir

    @property
    def sasl_config_dir(self) -> str:
        """The directory of Cyrus SASL's smtpd.conf (Postfix's cyrus_sasl_config_path)."""
        return str(PurePosixPath(self.distro.sasl_smtpd_conf).parent)

    @property
    def saslauthd_path_for_smtpd(self) -> str:
        """The mux socket as smtpd sees it (chroot prefix removed when chrooted)."""
        sock = self.saslauthd_socket_dir + "/mux"
        chroot = self.distro.postfix_chroot_dir
        if self.server.services.chroot and sock.startswith(chroot + "/"):
            return sock[len(chroot) :]
        return sock

    # ---- dovecot
    @property
    def protocols(self) -> list[str]:
        out: list[str] = list(self.server.services.dovecot_protocols())
        if self.server.virtual is not None:
            out.append("lmtp")
        return out

    @property
    def uses_dovecot(self) -> bool:
        return bool(self.protocols) or self.uses_dovecot_sasl

    @property
    def has_quota(self) -> bool:
        v = self.server.virtual
        return v is not None and any(mb.quota for mb in v.mailboxes)

    @property
    def quota_status_overquota(self) -> str:
        """The policy answer for a message that does not fit: 552 5.2.2, as LMTP itself would say."""
        return "552 5.2.2 Mailbox is full"

    @property
    def quota_status_toolarge(self) -> str:
        """The policy answer for a message larger than the whole quota."""
        return "552 5.2.2 Message is larger than the mailbox quota"

    def dovecot_file(self, name: str) -> str:
        return str(PurePosixPath(self.distro.dovecot_dir) / name)

    # ---- TLS
    @cached_property
    def tls(self) -> TlsPlan:
        from pyinfra_mailserver.services.tls.render import tls_plan

        return tls_plan(self)

    @property
    def tls_protocols(self) -> str:
        return tls_protocols(self.distro, self.server.tls.min_protocol)

    @property
    def tls_ciphers(self) -> str:
        """The OpenSSL cipher list of the login ports (services/tls/render.py: LOGIN_CIPHERS)."""
        from pyinfra_mailserver.services.tls.render import LOGIN_CIPHERS

        return ":".join(LOGIN_CIPHERS)

    @property
    def tls_cipher_profile(self) -> str:
        from pyinfra_mailserver.services.tls.render import CIPHER_PROFILE

        return CIPHER_PROFILE

    # ---- local delivery
    @property
    def mailbox_command(self) -> str | None:
        cmd = self.server.local.mailbox_command
        if cmd == "procmail":
            return f'{self.distro.procmail_path} -a "$EXTENSION"'
        if cmd == "maildrop":
            return self.distro.maildrop_path
        return None

    @property
    def dovecot24(self) -> bool:
        """The host's Dovecot speaks the 2.4 configuration language (renamed settings, %{...} variables)."""
        return self.distro.dovecot_generation == "2.4"

    @property
    def uses_mbox(self) -> bool:
        return self.server.local.mailbox == "mbox" and bool(self.server.local.users)

    @property
    def dovecot_mail_location(self) -> str:
        """Dovecot 2.3's mail_location."""
        if self.uses_mbox:
            return f"mbox:~/mail:INBOX={self.distro.mail_spool_dir}/%u"
        return "maildir:~/Maildir"

    @property
    def dovecot_mail_settings(self) -> list[tuple[str, str]]:
        """Dovecot 2.4's spelling of the same location: driver, path and (mbox) the INBOX file."""
        if self.uses_mbox:
            return [
                ("mail_driver", "mbox"),
                ("mail_path", "~/mail"),
                ("mail_inbox_path", f"{self.distro.mail_spool_dir}/%{{user}}"),
            ]
        return [("mail_driver", "maildir"), ("mail_path", "~/Maildir")]
