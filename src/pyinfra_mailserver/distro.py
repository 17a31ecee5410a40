"""Per-distro facts (package names, paths, service names, ports, program versions): the one table the rest
reads.

Two dimensions: the family (Debian, RHEL) fixes names and paths; the release (Debian 12, Debian 13, EL9,
EL10) fixes the versions of the mail programs it ships, which decide how their configuration is spelled
(Dovecot 2.3 or 2.4, Postfix's TLS protocol syntax). A row of the table is one release of one family.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Family(StrEnum):
    DEBIAN = "debian"
    RHEL = "rhel"


def version_tuple(version: str) -> tuple[int, ...]:
    """`2.4.1-4 (7d8c0e5759)` or `1:2.3.19.1+dfsg1-2.1` -> (2, 4, 1): the numeric upstream part only."""
    v = version.split(":", 1)[-1].strip()
    nums: list[int] = []
    for part in v.replace("-", ".").replace("+", ".").replace(" ", ".").split("."):
        if not part.isdigit():
            break
        nums.append(int(part))
    return tuple(nums)


@dataclass(frozen=True)
class Distro:
    """Everything that differs between distro families and releases, so templates and deploys never
    hard-code it."""

    family: Family
    # packages
    postfix_packages: tuple[str, ...]
    dovecot_core_packages: tuple[str, ...]
    dovecot_protocol_packages: dict[str, tuple[str, ...]]
    saslauthd_packages: tuple[str, ...]
    # fail2ban with its journal backend and the nftables it bans with
    fail2ban_packages: tuple[str, ...]
    fail2ban_dir: str
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
    # where systemd drop-ins of a unit live (`<dir>/<unit>.d/`)
    systemd_unit_dir: str = "/etc/systemd/system"
    # ---- the release
    release: str = ""  # Debian codename or "el<N>"
    version_id: str = ""  # os-release VERSION_ID (major)
    dovecot_version: str = "2.3"  # what the release ships (or the host has: see `for_versions`)
    postfix_version: str = "3.6"
    # the syslog file mail goes to; "" where mail is only in the journal (Debian 13)
    mail_log: str = ""
    # saslauthd runs from a native systemd unit that waits for a PID file in its default socket
    # directory; moving the socket (into Postfix's chroot) needs a drop-in naming the new PID file
    saslauthd_native_unit: bool = False
    # units an earlier release ran a service as, which keep running across a dist-upgrade and block the
    # new unit (Debian 12's postfix@-.service conflicts with Debian 13's postfix.service): stopped
    # before the service is (re)started
    replaced_units: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """`debian 13 (trixie)`: how messages name the row."""
        return (
            f"{self.family.value} {self.version_id} ({self.release})" if self.release else self.family.value
        )

    @property
    def dovecot_generation(self) -> str:
        """ "2.3" or "2.4": the configuration language Dovecot speaks (2.4 renamed and restructured it)."""
        major_minor = version_tuple(self.dovecot_version)[:2]
        return "2.4" if major_minor >= (2, 4) else "2.3"

    @property
    def postfix_compatibility_level(self) -> str:
        """main.cf's compatibility_level: 3.6 where Postfix knows it (>= 3.6), else 2 (EL9 ships 3.5)."""
        return "3.6" if version_tuple(self.postfix_version)[:2] >= (3, 6) else "2"

    @property
    def postfix_tls_protocol_syntax(self) -> str:
        """How main.cf spells "TLS >= min": "range" (>=TLSv1.2, Postfix >= 3.6) or "exclude" (!SSLv2...)."""
        return "range" if version_tuple(self.postfix_version)[:2] >= (3, 6) else "exclude"

    def for_versions(self, dovecot: str | None = None, postfix: str | None = None) -> Distro:
        """This row with the program versions a host actually has (a backport, a held package)."""
        if dovecot and version_tuple(dovecot)[:2] < (2, 3):
            raise ValueError(f"Dovecot version {dovecot!r}: 2.3 or newer is supported (e.g. 2.3, 2.4.1)")
        if postfix and version_tuple(postfix)[:2] < (3, 0):
            raise ValueError(f"Postfix version {postfix!r}: 3.0 or newer is supported")
        return replace(
            self,
            dovecot_version=dovecot or self.dovecot_version,
            postfix_version=postfix or self.postfix_version,
        )


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

_DEBIAN = Distro(
    family=Family.DEBIAN,
    postfix_packages=("postfix",),
    dovecot_core_packages=("dovecot-core",),
    dovecot_protocol_packages={
        "imap": ("dovecot-imapd",),
        "pop3": ("dovecot-pop3d",),
        "lmtp": ("dovecot-lmtpd",),
    },
    saslauthd_packages=("sasl2-bin", "libsasl2-modules"),
    fail2ban_packages=("fail2ban", "python3-systemd", "nftables"),
    fail2ban_dir="/etc/fail2ban",
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
    procmail_path="/usr/bin/procmail",
    maildrop_path="/usr/bin/maildrop",
    postfix_user="postfix",
    sasl_group="sasl",
    dovecot_user="dovecot",
    services={"postfix": "postfix", "dovecot": "dovecot", "saslauthd": "saslauthd", "fail2ban": "fail2ban"},
    default_database_type="hash",
    saslauthd_defaults_style="debian",
    policy_rc_d="/usr/sbin/policy-rc.d",
    postfix_map_type_packages={"lmdb": ("postfix-lmdb",), "pcre": ("postfix-pcre",), "cdb": ("postfix-cdb",)},
    nologin_shell="/usr/sbin/nologin",
    mail_spool_dir="/var/mail",
    mail_group="mail",
    procmailrc="/etc/procmailrc",
    maildroprc="/etc/maildroprc",
    dovecot_passwd_file="/etc/dovecot/users",
    uses_debconf=True,
)

_RHEL = Distro(
    family=Family.RHEL,
    postfix_packages=("postfix",),
    dovecot_core_packages=("dovecot",),
    dovecot_protocol_packages={"imap": (), "pop3": (), "lmtp": ()},
    saslauthd_packages=("cyrus-sasl", "cyrus-sasl-plain"),
    fail2ban_packages=("fail2ban-server", "fail2ban-systemd", "nftables"),
    fail2ban_dir="/etc/fail2ban",
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
    procmail_path="/usr/bin/procmail",
    maildrop_path="/usr/bin/maildrop",
    postfix_user="postfix",
    sasl_group="saslauth",
    dovecot_user="dovecot",
    services={"postfix": "postfix", "dovecot": "dovecot", "saslauthd": "saslauthd", "fail2ban": "fail2ban"},
    default_database_type="lmdb",
    saslauthd_defaults_style="rhel",
    postfix_map_type_packages={"lmdb": ("postfix-lmdb",), "pcre": ("postfix-pcre",), "cdb": ("postfix-cdb",)},
    nologin_shell="/sbin/nologin",
    mail_spool_dir="/var/spool/mail",
    mail_group="mail",
    procmailrc="/etc/procmailrc",
    maildroprc="/etc/maildroprc",
    dovecot_passwd_file="/etc/dovecot/users",
    uses_debconf=False,
    mail_log="/var/log/maillog",
)

# The releases, oldest first per family. Versions are those of the release's own packages; the Debian
# rows are deployed and tested in the lab, the RHEL rows are rendered and checked only.
BOOKWORM = replace(
    _DEBIAN,
    release="bookworm",
    version_id="12",
    dovecot_version="2.3.19",
    postfix_version="3.7.11",
    mail_log="/var/log/mail.log",
    unit_parts=("postfix@-.service",),
)
TRIXIE = replace(
    _DEBIAN,
    release="trixie",
    version_id="13",
    dovecot_version="2.4.1",
    postfix_version="3.10.13",
    saslauthd_native_unit=True,
    replaced_units={"postfix": ("postfix@-.service",)},
)
EL9 = replace(_RHEL, release="el9", version_id="9", dovecot_version="2.3.16", postfix_version="3.5.25")
EL10 = replace(_RHEL, release="el10", version_id="10", dovecot_version="2.3.21", postfix_version="3.8.5")

RELEASES: dict[Family, tuple[Distro, ...]] = {
    Family.DEBIAN: (BOOKWORM, TRIXIE),
    Family.RHEL: (EL9, EL10),
}

# Each family's newest release: what a new host runs, and what `render` assumes without a host.
DEBIAN = TRIXIE
RHEL = EL10
DISTROS: dict[Family, Distro] = {Family.DEBIAN: DEBIAN, Family.RHEL: RHEL}
ALL_RELEASES: tuple[Distro, ...] = tuple(r for rows in RELEASES.values() for r in rows)

# os-release IDs (ID and ID_LIKE) that belong to each family, for choosing a family from host facts.
FAMILY_IDS: dict[Family, frozenset[str]] = {
    Family.DEBIAN: frozenset({"debian", "ubuntu", "raspbian", "devuan"}),
    Family.RHEL: frozenset({"rhel", "centos", "fedora", "rocky", "almalinux", "ol"}),
}


def get(family: Family | str, release: str | None = None) -> Distro:
    """The table row of a family (its newest release), or of one release by name or version
    (`bookworm`, `12`, `el9`, `9`)."""
    fam = Family(family)
    if not release:
        return DISTROS[fam]
    for row in RELEASES[fam]:
        if release in (row.release, row.version_id):
            return row
    known = ", ".join(f"{r.release} ({r.version_id})" for r in RELEASES[fam])
    raise ValueError(f"{fam.value} release {release!r} is not in the distro table (known: {known})")


def find_release(name: str) -> Distro:
    """A row by release name alone (`trixie`, `el9`), for command-line flags."""
    for row in ALL_RELEASES:
        if name == row.release:
            return row
    raise ValueError(f"unknown release {name!r} (known: {', '.join(r.release for r in ALL_RELEASES)})")


def family_from_os_release(os_id: str, id_like: str = "") -> Family | None:
    """Pick the family of a host from its os-release ID / ID_LIKE; None when it is not supported."""
    for ident in [os_id, *id_like.split()]:
        for fam, ids in FAMILY_IDS.items():
            if ident.strip().lower() in ids:
                return fam
    return None


def for_host(
    os_release: dict[str, str],
    dovecot_version: str = "",
    postfix_version: str = "",
    *,
    family: Family | str | None = None,
    release: str | None = None,
    dovecot: str | None = None,
) -> Distro:
    """The row for a host, from what it says of itself, with the operator's overrides winning.

    `os_release` is the host's /etc/os-release; `dovecot_version` / `postfix_version` what the installed
    programs print (empty when not installed yet: then the release's own versions apply). The overrides
    come from host data: `family` (`mailserver_distro`), `release` (`mailserver_release`), `dovecot`
    (`mailserver_dovecot`, e.g. "2.4"). A release the table does not know is refused, naming the
    override, unless the installed Dovecot tells which configuration language to speak.
    """
    fam = (
        Family(family)
        if family
        else family_from_os_release(os_release.get("ID", ""), os_release.get("ID_LIKE", ""))
    )
    if fam is None:
        name = os_release.get("PRETTY_NAME") or os_release.get("ID") or "unknown"
        raise ValueError(f"unsupported distribution {name!r}")
    wanted = (
        release or os_release.get("VERSION_ID", "").split(".")[0] or os_release.get("VERSION_CODENAME", "")
    )
    try:
        row = get(fam, wanted) if wanted else get(fam)
    except ValueError:
        if not (dovecot or dovecot_version):
            name = os_release.get("PRETTY_NAME") or fam.value
            raise ValueError(
                f"{name}: release {wanted!r} is not in the distro table "
                f"(known: {', '.join(r.release for r in RELEASES[fam])}); set host data mailserver_release "
                "to the nearest one, or mailserver_dovecot to the Dovecot version it ships"
            ) from None
        row = get(fam)
    return row.for_versions(dovecot or dovecot_version or None, postfix_version or None)
