"""Local delivery for system users: mailbox format, optional MDA (procmail/maildrop), and PAM users."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import Strict, err
from pyinfra_mailserver.model.passwords import CryptHash, SecretBacked

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
