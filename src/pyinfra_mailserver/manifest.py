"""The Manifest: what one host must look like, derived once from the model, read by every consumer.

Render writes `files` to a tree; the deploy turns each entry into pyinfra operations (handlers keyed by
`reload`); drift reads the host and compares it with the same entries; audit takes its probes from
`ports` and `tls`. Nothing downstream re-derives paths, modes, maps or services from the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pyinfra_mailserver.distro import Distro

ServiceName = Literal["postfix", "dovecot", "saslauthd"]
MapCommand = Literal["postmap", "postalias"]
TlsMode = Literal["starttls", "implicit", "none"]


@dataclass(frozen=True)
class ManagedFile:
    """One file the tool owns on the host, with its rendered content and who must notice a change."""

    path: str  # absolute path on the host
    content: str  # rendered text (always ends with a newline)
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
    min_protocol: str = "TLSv1.2"


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

    def file(self, path: str) -> ManagedFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def files_for(self, service: str) -> tuple[ManagedFile, ...]:
        return tuple(f for f in self.files if f.service == service)
