"""Virtual hosting: domains whose mailboxes are not system accounts, all owned by one vmail user."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import (
    ROLES,
    Address,
    Domain,
    Problems,
    Strict,
    check_address,
    check_domain,
    check_send_as,
    err,
    q,
)
from pyinfra_mailserver.model.passwords import DovecotHash, SecretBacked
from pyinfra_mailserver.services.postfix.model import find_cycles
from pyinfra_mailserver.services.system.model import check_user_name

if TYPE_CHECKING:
    from pyinfra_mailserver.model.server import MailServer


_QUOTA = re.compile(r"^([1-9][0-9]{0,8})([KMGT]?)$")


class Mailbox(SecretBacked):
    """One virtual mailbox: its address, a Dovecot password hash and an optional storage quota."""

    address: Address
    password: DovecotHash = Field(description='{ARGON2ID}/{SHA512-CRYPT} hash or {"secret": NAME}.')
    quota: str | None = Field(default=None, description="Storage quota such as 500M or 2G (Dovecot quota).")
    send_as: list[str] = Field(
        default_factory=list,
        description="Other envelope senders this login may use (a shared address, @domain for all of a "
        "domain); it may always send as its own address (smtpd.enforce_sender_login).",
    )
    probe: bool = Field(
        default=False,
        description="The audit's own login (a monitoring mailbox, at most one). `mailserver secrets "
        "generate` gives it a 32-character random token hashed SHA512-CRYPT with 5000 rounds: stretching "
        "adds nothing to a random token, and each of the audit's logins stays cheap for the host.",
    )

    @field_validator("send_as")
    @classmethod
    def _send_as(cls, v: list[str]) -> list[str]:
        return check_send_as(v, "the mailbox")

    @field_validator("quota")
    @classmethod
    def _quota(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _QUOTA.match(v.upper()):
            raise err("quota", f"quota {v!r}: give a size such as 500M, 2G or 1048576 (bytes)")
        return v.upper()

    @property
    def quota_bytes(self) -> int | None:
        """The quota in bytes (K, M, G, T are powers of 1024, as Dovecot reads them)."""
        if self.quota is None:
            return None
        m = _QUOTA.match(self.quota)
        assert m is not None
        return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " ")

    @property
    def quota_grace_bytes(self) -> int | None:
        """How far the message that crosses the quota may take the mailbox over it: a tenth of the quota,
        Dovecot 2.3's default (`quota_grace = 10%`), which 2.4 can only say per mailbox, as a size
        (its own default, 10M, would let a 1M mailbox take an 11M message)."""
        q = self.quota_bytes
        return None if q is None else q // 10

    @property
    def local(self) -> str:
        return self.address.split("@")[0]

    @property
    def domain(self) -> str:
        return self.address.split("@")[1]


class Vmail(Strict):
    """The single system account that owns every virtual mailbox (vmail 5000:5000 by default)."""

    user: str = "vmail"
    group: str = "vmail"
    uid: int = Field(default=5000, ge=100, le=65000)
    gid: int = Field(default=5000, ge=100, le=65000)
    base_dir: str = Field(default="/var/mail/vmail", description="Mailboxes live in base_dir/DOMAIN/USER.")

    @field_validator("user", "group")
    @classmethod
    def _names(cls, v: str) -> str:
        return check_user_name(v)

    @field_validator("base_dir")
    @classmethod
    def _base(cls, v: str) -> str:
        if (
            not re.match(r"^/[A-Za-z0-9._/-]+$", v)
            or ".." in v
            or v.rstrip("/") in {"", "/var", "/var/mail", "/home"}
        ):
            raise err("path", f"base_dir {v!r}: give a dedicated absolute directory such as /var/mail/vmail")
        return v.rstrip("/")


class Virtual(Strict):
    """Virtual mailbox domains, their mailboxes and aliases; delivered by Dovecot LMTP.

    Why LMTP rather than Postfix's own `virtual` transport: Dovecot then is the only
    writer of the mailboxes, so its indexes stay consistent and the optional per-mailbox `quota` is
    enforced at delivery (Postfix's virtual agent knows nothing of Dovecot quotas, so a quota would only
    be cosmetic). Postfix still checks recipients against virtual_mailbox_maps (vmailbox), so unknown
    addresses are refused during the SMTP session; the socket is private/dovecot-lmtp in Postfix's queue
    directory, reachable from the chroot. The cost is one more Dovecot service (the lmtp package).
    """

    domains: list[Domain] = Field(
        min_length=1, description="virtual_mailbox_domains (never in mydestination)."
    )
    alias_domains: list[Domain] = Field(
        default_factory=list, description="virtual_alias_domains: domains that only forward (aliases)."
    )
    mailboxes: list[Mailbox] = Field(default_factory=list)
    aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="virtual_alias_maps: 'user@domain' or '@domain' (catch-all) -> list of addresses.",
    )
    vmail: Vmail = Field(default_factory=Vmail)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, targets in v.items():
            if key.startswith("@"):
                k = "@" + check_domain(key[1:], what=f"catch-all {key!r}")
            else:
                k = check_address(key, what="virtual alias")
            if not targets:
                raise err("alias", f"virtual alias {key!r} has no targets")
            out[k] = [check_address(t, what=f"target of {key!r}") for t in targets]
        return out

    def all_domains(self) -> list[str]:
        return [*self.domains, *self.alias_domains]


def problems(server: MailServer, ok: Callable[..., bool]) -> Problems:
    """Virtual hosting: a domain is local or virtual, every address and alias resolves, no loop."""
    p: Problems = []
    if ok("virtual"):
        # --- virtual hosting
        ident = server.identity
        dests = set(ident.destinations()) if ok("identity") and ident.myhostname and ident.mydomain else set()
        v = server.virtual
        if v is not None:
            for i, d in enumerate(v.domains):
                if d in dests:
                    p.append(
                        (
                            f"virtual.domains[{i}]",
                            f"{d} is also in mydestination — a domain is either "
                            "local or virtual: remove it from identity.mydestination",
                        )
                    )
                if d in v.alias_domains:
                    p.append((f"virtual.domains[{i}]", f"{d} is also in virtual.alias_domains — keep one"))
            for i, d in enumerate(v.alias_domains):
                if d in dests:
                    p.append(
                        (f"virtual.alias_domains[{i}]", f"{d} is also in mydestination — remove it there")
                    )
            seen: dict[str, int] = {}
            for i, mb in enumerate(v.mailboxes):
                if mb.domain not in v.domains:
                    p.append(
                        (
                            f"virtual.mailboxes[{i}].address",
                            f"{mb.address}: domain {mb.domain} is not in "
                            "virtual.domains — add it there or fix the address",
                        )
                    )
                if mb.address in seen:
                    p.append(
                        (
                            f"virtual.mailboxes[{i}].address",
                            f"{mb.address} duplicates virtual.mailboxes[{seen[mb.address]}] — remove one",
                        )
                    )
                else:
                    seen[mb.address] = i
            probes = [i for i, mb in enumerate(v.mailboxes) if mb.probe]
            for i in probes:
                if v.mailboxes[i].send_as:
                    p.append(
                        (
                            f"virtual.mailboxes[{i}].send_as",
                            "the probe mailbox may send only as itself (the audit checks that it "
                            "cannot use another address) — remove send_as",
                        )
                    )
            for i in probes[1:]:
                p.append(
                    (
                        f"virtual.mailboxes[{i}].probe",
                        f"only one probe mailbox: virtual.mailboxes[{probes[0]}] is one already",
                    )
                )
            boxes = set(seen)
            keys = set(v.aliases)
            domains = set(v.all_domains())
            catchall = {k[1:] for k in keys if k.startswith("@")}
            for key, targets in v.aliases.items():
                kd = key.rsplit("@", 1)[1]
                if kd not in domains:
                    p.append(
                        (
                            f"virtual.aliases{q(key)}",
                            f"domain {kd} is not in virtual.domains nor "
                            "virtual.alias_domains — add it or fix the alias",
                        )
                    )
                for t in targets:
                    td = t.rsplit("@", 1)[1]
                    if td in v.domains and t not in boxes and t not in keys and td not in catchall:
                        p.append(
                            (
                                f"virtual.aliases{q(key)}",
                                f"target {t} is in a virtual domain but is no "
                                "mailbox nor alias — add the mailbox or fix the target",
                            )
                        )
                    if td in v.alias_domains and t not in keys:
                        p.append(
                            (
                                f"virtual.aliases{q(key)}",
                                f"target {t} is in an alias-only domain without an alias for it",
                            )
                        )
            for d in v.all_domains():
                for role, rfc in ROLES:
                    addr = f"{role}@{d}"
                    if addr not in boxes and addr not in keys and d not in catchall:
                        p.append(
                            (
                                "virtual.aliases",
                                f"no {addr} — {rfc} requires one per domain: add "
                                f'"{addr}": ["someone@..."] to virtual.aliases (or a mailbox)',
                            )
                        )
            edges = {
                k: [t for t in ts if t in keys and not (t == k and t in boxes)] for k, ts in v.aliases.items()
            }
            for cyc in find_cycles(edges):
                p.append(
                    (
                        f"virtual.aliases{q(cyc[0])}",
                        "alias loop "
                        + " -> ".join(cyc)
                        + " — break the cycle (an alias may include itself only when it is a mailbox)",
                    )
                )
            if ok("local") and v.vmail.user in server.local.account_names():
                p.append(("virtual.vmail.user", f"{v.vmail.user} is also a local mail user — choose another"))
    return p
