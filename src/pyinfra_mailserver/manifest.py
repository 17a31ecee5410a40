"""The Manifest: what one host must look like, derived once from the model, read by every consumer.

Render writes `files` to a tree; the deploy diffs every entry against one snapshot of the host (each
change says which service it reloads); drift compares the host with the same entries; audit takes its
probes from `ports` and `tls`. Nothing downstream re-derives paths, modes, maps or services from the
model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pyinfra_mailserver.distro import Distro

ServiceName = Literal["postfix", "dovecot", "saslauthd", "fail2ban"]
MapCommand = Literal["postmap", "postalias"]
TlsMode = Literal["starttls", "implicit", "none"]


@dataclass(frozen=True)
class ManagedFile:
    """One file the tool owns on the host, with its rendered content and who must notice a change."""

    path: str  # absolute path on the host
    content: str = field(repr=False)  # rendered text (ends with a newline); kept out of repr: secrets
    owner: str = "root"
    group: str = "root"
    mode: str = "644"  # full octal string, as pyinfra's files.put expects
    service: ServiceName | Literal["tls", "system"] = "system"
    template: str | None = None  # template name under templates/, None for generated content
    secret: bool = False  # content must be masked in diffs, logs and reports
    reload: tuple[ServiceName, ...] = ()  # services to reload/restart when the file changes


@dataclass(frozen=True)
class PostfixMap:
    """A Postfix lookup table built from a managed source file (postmap / postalias)."""

    source: str  # path of the source file, also a ManagedFile
    type: str  # hash | lmdb | btree | cdb ...
    command: MapCommand = "postmap"
    sample_key: str | None = None  # a key that must answer `postmap -q` (drift)

    @property
    def spec(self) -> str:
        """The `type:path` form used in main.cf and on the postmap command line."""
        return f"{self.type}:{self.source}"

    @property
    def output(self) -> str:
        """The indexed file postmap / postalias writes next to the source."""
        return self.source + MAP_SUFFIX.get(self.type, ".db")


# Suffix of the indexed file each Postfix map type writes next to its source.
MAP_SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb", "dbm": ".pag", "sdbm": ".pag"}


@dataclass(frozen=True)
class Directory:
    path: str
    owner: str = "root"
    group: str = "root"
    mode: str = "755"


@dataclass(frozen=True)
class Group:
    name: str
    gid: int | None = None
    system: bool = False


@dataclass(frozen=True)
class User:
    """A system account the mail stack needs (vmail, or a PAM mail user with a password hash)."""

    name: str
    uid: int | None = None
    group: str | None = None
    groups: tuple[str, ...] = ()  # supplementary groups (postfix -> sasl)
    home: str | None = None
    shell: str = "/usr/sbin/nologin"
    system: bool = False
    password_hash: str | None = field(default=None, repr=False)  # SHA512-CRYPT only, for PAM users
    create_home: bool = False
    append_groups: bool = True  # only ever add groups; never remove the ones a package gave it


@dataclass(frozen=True)
class Service:
    name: ServiceName
    unit: str  # the init system's name for it (from the distro table)
    enabled: bool = True
    running: bool = True
    reload: bool = True  # True: a config change reloads; False: it needs a restart
    # the deploy manages a systemd drop-in of the unit: systemd must re-read it before a (re)start
    daemon_reload: bool = False
    # units an earlier release ran this service as (distro table): stopped before it is started
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Port:
    """A listening socket the host must have, and how a client must talk to it."""

    port: int
    service: ServiceName
    protocol: Literal["smtp", "submission", "smtps", "imap", "imaps", "pop3", "pop3s", "lmtp"]
    tls: TlsMode
    auth: Literal["none", "optional", "required"] = "none"


@dataclass(frozen=True)
class TlsPlan:
    """Where the certificate and key live on the host, and whether the controller makes them."""

    mode: Literal["generate", "files"]
    cert_path: str
    key_path: str
    ca_path: str | None
    names: tuple[str, ...]  # subject alternative names for `generate`


@dataclass(frozen=True)
class Account:
    """A login the host must accept, for tests and audits. Never holds a password or hash: `secret` names
    the file in the host's secrets directory (and `secret + ".password"` the lab plaintext, when made by
    `mailserver secrets generate`)."""

    login: str  # system user name, or the full address of a virtual mailbox
    kind: Literal["system", "virtual"]
    secret: str | None  # secret name, None when the data holds a literal hash
    mailbox: str  # where its mail lands on the host (Maildir directory or mbox file)
    services: tuple[str, ...]  # "smtp-auth", "imap", "pop3" (what the login must work for)
    probe: bool = False  # the audit's own login (model: virtual.mailboxes[].probe)


@dataclass(frozen=True)
class Manifest:
    hostname: str
    distro: Distro
    packages: tuple[str, ...]
    debconf: tuple[tuple[str, str, str, str], ...]  # (package, question, type, value) preseeds
    groups: tuple[Group, ...]
    users: tuple[User, ...]
    directories: tuple[Directory, ...]
    files: tuple[ManagedFile, ...]
    maps: tuple[PostfixMap, ...]
    services: tuple[Service, ...]
    ports: tuple[Port, ...]
    tls: TlsPlan
    # effective settings the host must show: `postconf -n` (main.cf) and `postconf -M` (master.cf)
    postconf: dict[str, str]
    postconf_master: tuple[str, ...]
    # secrets that must never appear in output (hashes, relay passwords); used for masking
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # unix sockets that must exist once the stack runs (e.g. the SASL auth socket inside Postfix's chroot);
    # the deploy's final verification checks them
    sockets: tuple[str, ...] = ()
    # settings Dovecot must have in effect, checked with `doveconf -h KEY` (prints defaults too)
    doveconf: dict[str, str] = field(default_factory=dict)
    sasl_backend: Literal["saslauthd", "dovecot"] | None = None
    accounts: tuple[Account, ...] = ()
    # map sources Postfix reads without postmap (regexp:, pcre:), as type:path specs
    regexp_maps: tuple[str, ...] = ()
    # the domains the host is the final destination for; each answers postmaster@ and abuse@
    domains: tuple[str, ...] = ()

    def file(self, path: str) -> ManagedFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def unit_names(self) -> tuple[str, ...]:
        """Every unit whose state the deploy, its verification and drift read: the services' own and
        the ones they replace."""
        replaced = (u for s in self.services for u in s.replaces)
        return tuple(dict.fromkeys([*(s.unit for s in self.services), *replaced]))

    def auth_sockets(self) -> tuple[str, ...]:
        """The SASL sockets Postfix authenticates through (saslauthd's mux or Dovecot's auth socket)."""
        path = self.postconf.get("smtpd_sasl_path", "")
        if self.postconf.get("smtpd_sasl_type") == "dovecot" and path:
            return (path if path.startswith("/") else f"{self.distro.postfix_queue_dir}/{path}",)
        return tuple(s for s in self.sockets if s.endswith("/mux"))

    def files_for(self, service: str) -> tuple[ManagedFile, ...]:
        return tuple(f for f in self.files if f.service == service)

    def mask(self, text: str, placeholder: str = "**masked**") -> str:
        """`text` with every secret of this host replaced (for diffs, logs and reports)."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, placeholder)
        return text
