"""SMTP AUTH for clients: Cyrus SASL with saslauthd (system users, PAM) or Dovecot SASL (mailboxes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from pyinfra_mailserver.distro import DISTROS
from pyinfra_mailserver.model.common import Problems, Strict, err

if TYPE_CHECKING:
    from pyinfra_mailserver.model.server import MailServer

# the queue directory = chroot of every supported family (Postfix resolves private/... against it)
CHROOT_DIRS = sorted({d.postfix_chroot_dir for d in DISTROS.values()})


Mech = Literal["plain", "login"]
MECHS: tuple[Mech, ...] = ("plain", "login")


class Saslauthd(Strict):
    """saslauthd checks passwords for Postfix; its socket must be reachable from Postfix's chroot."""

    mechanism: Literal["pam", "shadow", "sasldb"] = Field(
        default="pam",
        description="pam/shadow: system users (local.users); sasldb: saslpasswd2 users (unmanaged).",
    )
    socket_dir: str | None = Field(
        default=None,
        description="Directory of saslauthd's mux socket; default inside the chroot: "
        "/var/spool/postfix/var/run/saslauthd.",
    )
    threads: int = Field(default=5, ge=1, le=64)

    @field_validator("socket_dir")
    @classmethod
    def _dir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^/[A-Za-z0-9._/-]+$", v) or ".." in v:
            raise err("path", f"socket_dir {v!r} must be an absolute path")
        return v.rstrip("/")


class Sasl(Strict):
    """Which SASL server Postfix asks; AUTH is offered only on the services that enable it."""

    backend: Literal["saslauthd", "dovecot"]
    mech_list: list[Mech] = Field(
        default_factory=lambda: list(MECHS), description="Offered only over TLS (smtpd_tls_auth_only)."
    )
    saslauthd: Saslauthd | None = Field(default=None, description="Options of the saslauthd backend.")
    dovecot_socket: str = Field(
        default="private/auth",
        description="Dovecot auth socket, relative to Postfix's queue directory (inside the chroot).",
    )
    broken_clients: bool = Field(default=False, description="broken_sasl_auth_clients (very old Outlook).")

    @field_validator("mech_list")
    @classmethod
    def _mechs(cls, v: list[Mech]) -> list[Mech]:
        if not v:
            raise err("mech", "mech_list is empty — use ['plain', 'login']")
        return list(dict.fromkeys(v))

    @field_validator("dovecot_socket")
    @classmethod
    def _sock(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9._/-]+$", v) or ".." in v:
            raise err("path", f"dovecot_socket {v!r} must be a plain path such as private/auth")
        return v

    def saslauthd_options(self) -> Saslauthd:
        return self.saslauthd or Saslauthd()


def problems(server: MailServer, ok: Callable[..., bool]) -> Problems:
    """SMTP AUTH: configured where a service needs it, with a backend that knows the users."""
    p: Problems = []
    if ok("sasl", "services", "virtual", "local"):
        # --- SASL
        v = server.virtual
        auth_services = server.services.client_auth_services()
        s = server.sasl
        if s is None and auth_services:
            p.append(
                (
                    "sasl",
                    f"{', '.join(auth_services)} require SMTP AUTH — configure sasl "
                    "(backend saslauthd or dovecot) or disable those services",
                )
            )
        if s is not None:
            if s.backend == "saslauthd":
                if v is not None:
                    p.append(
                        (
                            "sasl.backend",
                            "virtual mailboxes are known to Dovecot only — use backend dovecot",
                        )
                    )
                sock = s.saslauthd_options().socket_dir
                if (
                    sock is not None
                    and server.services.chroot
                    and not any(sock == c or sock.startswith(c + "/") for c in CHROOT_DIRS)
                ):
                    p.append(
                        (
                            "sasl.saslauthd.socket_dir",
                            f"{sock} is outside Postfix's chroot "
                            f"({CHROOT_DIRS[0]}): chrooted smtpd cannot reach it — use "
                            f"{CHROOT_DIRS[0]}/var/run/saslauthd or set services.chroot: false",
                        )
                    )
                if s.saslauthd_options().mechanism in {"pam", "shadow"} and not server.local.users:
                    p.append(
                        (
                            "local.users",
                            "saslauthd with pam/shadow authenticates system users — declare "
                            "at least one in local.users",
                        )
                    )
            else:
                if s.saslauthd is not None:
                    p.append(("sasl.saslauthd", "only used with backend saslauthd — remove it"))
                sock = s.dovecot_socket
                if sock.startswith("/") and not any(sock.startswith(c + "/") for c in CHROOT_DIRS):
                    p.append(
                        (
                            "sasl.dovecot_socket",
                            f"{sock} is outside Postfix's queue directory/chroot — use private/auth",
                        )
                    )
                if v is None and not server.local.users:
                    p.append(
                        (
                            "sasl.backend",
                            "Dovecot has no users to authenticate — add virtual mailboxes or local.users",
                        )
                    )
    return p
