"""Per-distro facts (package names, paths, service names, ports): the one table the rest reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Family(StrEnum):
    DEBIAN = "debian"
    RHEL = "rhel"


@dataclass(frozen=True)
class Distro:
    """Everything that differs between distro families, so templates and deploys never hard-code it."""

    family: Family
    # packages
    postfix_packages: tuple[str, ...]
    postfix_map_packages: tuple[str, ...]
    dovecot_core_packages: tuple[str, ...]
    dovecot_protocol_packages: dict[str, tuple[str, ...]]
    saslauthd_packages: tuple[str, ...]
    sasl_client_packages: tuple[str, ...]  # SASL mechanisms for Postfix's SMTP client (relay login)
    procmail_package: str
    maildrop_package: str
    # paths
    postfix_dir: str
    postfix_queue_dir: str
    postfix_chroot_dir: str
    dovecot_dir: str
    aliases_file: str
    sasl_smtpd_conf: str
    saslauthd_defaults_file: str
    saslauthd_default_socket_dir: str
    tls_cert_dir: str
    tls_key_dir: str
    mail_log: str
    procmail_path: str
    maildrop_path: str
    # users and services
    postfix_user: str
    sasl_group: str
    dovecot_user: str
    services: dict[str, str]
    # the map type Postfix builds indexed maps with on this family (postconf default_database_type)
    default_database_type: str
    # the format of the saslauthd defaults file: "debian" (START/MECHANISMS/OPTIONS) or "rhel"
    saslauthd_defaults_style: str
    # --- added with the model/render issue ---
    # Postfix's compatibility_level for the packaged version (3.6 needs Postfix >= 3.6; EL9 ships 3.5)
    postfix_compatibility_level: str
    # how main.cf spells "TLS >= min": "range" (>=TLSv1.2, Postfix >= 3.6) or "exclude" (!SSLv2, ...)
    postfix_tls_protocol_syntax: str
    # packages that provide a Postfix map type (types not listed are built in)
    postfix_map_type_packages: dict[str, tuple[str, ...]]
    nologin_shell: str
    mail_spool_dir: str  # where mbox INBOXes live (mail_spool_directory)
    mail_group: str  # group owning the mail spool (Dovecot's mail_privileged_group)
    procmailrc: str
    maildroprc: str
    dovecot_passwd_file: str  # the passwd-file of virtual users
    # whether the family uses debconf preseeding for the postfix package
    uses_debconf: bool
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    # Debian's hook that lets maintainer scripts start daemons (exit 101: "not now"); empty where package
    # installs never start services (RHEL)
    policy_rc_d: str = ""
    # units a service unit consists of, known in advance (Debian's postfix.service runs postfix@-): read
    # with the services themselves, saving a second `systemctl show` per snapshot
    unit_parts: tuple[str, ...] = ()


# Well-known ports of the mail protocols, shared by every family.
PORTS: dict[str, int] = {
    "smtp": 25,
    "submission": 587,
    "smtps": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "lmtp": 24,
}

DEBIAN = Distro(
    family=Family.DEBIAN,
    postfix_packages=("postfix",),
    postfix_map_packages=("postfix-lmdb", "postfix-pcre"),
    dovecot_core_packages=("dovecot-core",),
    dovecot_protocol_packages={
        "imap": ("dovecot-imapd",),
        "pop3": ("dovecot-pop3d",),
        "lmtp": ("dovecot-lmtpd",),
    },
    saslauthd_packages=("sasl2-bin", "libsasl2-modules"),
    sasl_client_packages=("libsasl2-modules",),
    procmail_package="procmail",
    maildrop_package="maildrop",
    postfix_dir="/etc/postfix",
    postfix_queue_dir="/var/spool/postfix",
    postfix_chroot_dir="/var/spool/postfix",
    dovecot_dir="/etc/dovecot",
    aliases_file="/etc/aliases",
    sasl_smtpd_conf="/etc/postfix/sasl/smtpd.conf",
    saslauthd_defaults_file="/etc/default/saslauthd",
    saslauthd_default_socket_dir="/var/run/saslauthd",
    tls_cert_dir="/etc/ssl/certs",
    tls_key_dir="/etc/ssl/private",
    mail_log="/var/log/mail.log",
    procmail_path="/usr/bin/procmail",
    maildrop_path="/usr/bin/maildrop",
    postfix_user="postfix",
    sasl_group="sasl",
    dovecot_user="dovecot",
    services={"postfix": "postfix", "dovecot": "dovecot", "saslauthd": "saslauthd"},
    default_database_type="hash",
    saslauthd_defaults_style="debian",
    policy_rc_d="/usr/sbin/policy-rc.d",
    unit_parts=("postfix@-.service",),
    postfix_compatibility_level="3.6",
    postfix_tls_protocol_syntax="range",
    postfix_map_type_packages={"lmdb": ("postfix-lmdb",), "pcre": ("postfix-pcre",), "cdb": ("postfix-cdb",)},
    nologin_shell="/usr/sbin/nologin",
    mail_spool_dir="/var/mail",
    mail_group="mail",
    procmailrc="/etc/procmailrc",
    maildroprc="/etc/maildroprc",
    dovecot_passwd_file="/etc/dovecot/users",
    uses_debconf=True,
)

RHEL = Distro(
    family=Family.RHEL,
    postfix_packages=("postfix",),
    postfix_map_packages=("postfix-lmdb", "postfix-pcre"),
    dovecot_core_packages=("dovecot",),
    dovecot_protocol_packages={"imap": (), "pop3": (), "lmtp": ()},
    saslauthd_packages=("cyrus-sasl", "cyrus-sasl-plain"),
    sasl_client_packages=("cyrus-sasl-plain",),
    procmail_package="procmail",
    maildrop_package="maildrop",
    postfix_dir="/etc/postfix",
    postfix_queue_dir="/var/spool/postfix",
    postfix_chroot_dir="/var/spool/postfix",
    dovecot_dir="/etc/dovecot",
    aliases_file="/etc/aliases",
    sasl_smtpd_conf="/etc/sasl2/smtpd.conf",
    saslauthd_defaults_file="/etc/sysconfig/saslauthd",
    saslauthd_default_socket_dir="/run/saslauthd",
    tls_cert_dir="/etc/pki/tls/certs",
    tls_key_dir="/etc/pki/tls/private",
    mail_log="/var/log/maillog",
    procmail_path="/usr/bin/procmail",
    maildrop_path="/usr/bin/maildrop",
    postfix_user="postfix",
    sasl_group="saslauth",
    dovecot_user="dovecot",
    services={"postfix": "postfix", "dovecot": "dovecot", "saslauthd": "saslauthd"},
    default_database_type="lmdb",
    saslauthd_defaults_style="rhel",
    postfix_compatibility_level="2",
    postfix_tls_protocol_syntax="exclude",
    postfix_map_type_packages={"lmdb": ("postfix-lmdb",), "pcre": ("postfix-pcre",), "cdb": ("postfix-cdb",)},
    nologin_shell="/sbin/nologin",
    mail_spool_dir="/var/spool/mail",
    mail_group="mail",
    procmailrc="/etc/procmailrc",
    maildroprc="/etc/maildroprc",
    dovecot_passwd_file="/etc/dovecot/users",
    uses_debconf=False,
)

DISTROS: dict[Family, Distro] = {Family.DEBIAN: DEBIAN, Family.RHEL: RHEL}

# os-release IDs (ID and ID_LIKE) that belong to each family, for choosing a family from host facts.
FAMILY_IDS: dict[Family, frozenset[str]] = {
    Family.DEBIAN: frozenset({"debian", "ubuntu", "raspbian", "devuan"}),
    Family.RHEL: frozenset({"rhel", "centos", "fedora", "rocky", "almalinux", "ol"}),
}


def get(family: Family | str) -> Distro:
    """The table row of a family, by enum or by name."""
    return DISTROS[Family(family)]


def family_from_os_release(os_id: str, id_like: str = "") -> Family | None:
    """Pick the family of a host from its os-release ID / ID_LIKE; None when it is not supported."""
    for ident in [os_id, *id_like.split()]:
        for fam, ids in FAMILY_IDS.items():
            if ident.strip().lower() in ids:
                return fam
    return None
