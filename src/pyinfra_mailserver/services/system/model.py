"""Local delivery for system users: mailbox format, optional MDA (procmail/maildrop), and PAM users."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import ROLES, Problems, Strict, check_send_as, err, q
from pyinfra_mailserver.model.passwords import CryptHash, SecretBacked
from pyinfra_mailserver.services.postfix.model import classify_target, find_cycles

if TYPE_CHECKING:
    from pyinfra_mailserver.model.server import MailServer


_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# accounts every system has, that aliases may point at without declaring them
BUILTIN_ACCOUNTS = ("root",)
RESERVED = frozenset({"root", "postfix", "dovecot", "dovenull", "vmail", "mail", "daemon", "nobody", "sasl"})


def check_user_name(v: str, what: str = "user name") -> str:
    if not _USER.match(v):
        raise err("user", f"{what} {v!r} is not a valid system user name ([a-z_][a-z0-9_-]{{0,31}})")
    return v


class SystemUser(SecretBacked):
    """A system account that receives mail locally and logs in over SMTP AUTH (saslauthd) and IMAP/POP3.

    Its password is a SHA512-CRYPT hash because PAM and saslauthd's shadow mechanism only verify crypt(3).
    """

    name: str
    password: CryptHash = Field(description="'$6$...' or {\"secret\": NAME}; never plaintext.")
    comment: str = Field(default="", max_length=100)
    uid: int | None = Field(default=None, ge=1000, le=60000)
    send_as: list[str] = Field(
        default_factory=list,
        description="Other envelope senders this login may use besides NAME@ each mydestination domain "
        "(e.g. an alias of the user, @domain for all of a domain; smtpd.enforce_sender_login).",
    )

    @field_validator("send_as")
    @classmethod
    def _send_as(cls, v: list[str]) -> list[str]:
        return check_send_as(v, "the user")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        check_user_name(v)
        if v in RESERVED:
            raise err("user", f"user name {v!r} is reserved for the system/mail stack — choose another")
        return v

    @field_validator("comment")
    @classmethod
    def _comment(cls, v: str) -> str:
        if re.search(r"[:\n]", v):
            raise err("comment", "comment may not contain ':' or newlines (it goes into /etc/passwd)")
        return v


class LocalDelivery(Strict):
    """How the `local` transport stores mail of system users ($mydestination domains)."""

    mailbox: Literal["maildir", "mbox"] = Field(
        default="maildir", description="maildir: home_mailbox = Maildir/; mbox: the spool /var/mail/USER."
    )
    mailbox_command: Literal["procmail", "maildrop"] | None = Field(
        default=None,
        description="Hand local mail to procmail or maildrop (filters); they store in `mailbox`.",
    )
    users: list[SystemUser] = Field(default_factory=list, description="System mail users (PAM/shadow).")
    existing_accounts: list[str] = Field(
        default_factory=lambda: list(BUILTIN_ACCOUNTS),
        description="Accounts already on the host (not managed) that aliases may deliver to.",
    )

    @field_validator("existing_accounts")
    @classmethod
    def _accounts(cls, v: list[str]) -> list[str]:
        for a in v:
            check_user_name(a, "existing account")
        return v

    def account_names(self) -> set[str]:
        return {u.name for u in self.users} | set(self.existing_accounts)


def problems(server: MailServer, ok: Callable[..., bool]) -> Problems:
    """Local delivery: users and /etc/aliases resolve, no loop, a postmaster and an abuse address."""
    p: Problems = []
    if ok("local", "aliases"):
        # --- local users and /etc/aliases
        names: dict[str, int] = {}
        for i, u in enumerate(server.local.users):
            if u.name in names:
                p.append((f"local.users[{i}].name", f"{u.name} duplicates local.users[{names[u.name]}]"))
            names.setdefault(u.name, i)
            if u.name in server.aliases:
                p.append(
                    (
                        f"local.users[{i}].name",
                        f"{u.name} is also an alias name — mail would never reach "
                        "the user's mailbox; rename the alias",
                    )
                )
        known = server.local.account_names()
        alias_edges: dict[str, list[str]] = {}
        for key, targets in server.aliases.items():
            alias_edges[key] = []
            for t in targets:
                kind, val = classify_target(t)
                if kind != "local":
                    continue
                if val in server.aliases and not (val == key and val in known) and not t.startswith("\\"):
                    alias_edges[key].append(val)
                elif val not in server.aliases and val not in known:
                    p.append(
                        (
                            f"aliases{q(key)}",
                            f"target {val!r} is no alias, local user nor existing account "
                            "— add it to local.users or local.existing_accounts, or fix the target",
                        )
                    )
        for role, rfc in ROLES:
            if role not in server.aliases and role not in known:
                p.append(("aliases", f'no {role!r} — {rfc} requires one: add "{role}": ["root"]'))
        for cyc in find_cycles(alias_edges):
            p.append((f"aliases{q(cyc[0])}", "alias loop " + " -> ".join(cyc) + " — break the cycle"))
    return p
