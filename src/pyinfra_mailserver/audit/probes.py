"""Outside-in checks: what any client on the network sees on each port the Manifest says must listen.

Pure Python clients (smtplib, imaplib, poplib, ssl) from the controller. The SMTP probes never send mail:
they stop at RCPT, then RSET and QUIT, with the null sender and a recipient in `.invalid`.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import os
import poplib
import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography import x509

from pyinfra_mailserver import pki
from pyinfra_mailserver.audit import tlsprobe
from pyinfra_mailserver.manifest import Port
from pyinfra_mailserver.report import CheckResult, CheckSet, Severity, Status, in_parallel

FOREIGN_RCPT = "relay-probe@relay-test.invalid"  # a domain no host can be the destination of
# as soon as a deploy would re-issue a generated certificate, so that the finding and its fix agree
EXPIRY_DAYS = pki.RENEW_BEFORE.days
SMTP_PROTOCOLS = ("smtp", "submission", "smtps")
IMAP_PROTOCOLS = ("imap", "imaps")
POP3_PROTOCOLS = ("pop3", "pop3s")
# the policy step that stands for "local senders need a login" (checks.smtpd_policy adds it)
LOCAL_SENDERS_REFUSED = "local-senders-refused"
BAD_HELO = "!!bad!!"  # no hostname nor address literal: what spambots greet with
SPOOF_LOCAL_PART = "audit-spoof-check"  # a sender the probe account owns by no rule
TLS_CHECKS = (
    "tls.v1_refused",
    "tls.v1_1_refused",
    "tls.v1_2_accepted",
    "tls.v1_3_accepted",
    "tls.cert_chain",
    "tls.cert_name",
    "tls.cert_expiry",
)


@dataclass(frozen=True)
class ProbeAccount:
    """A mailbox the audit may log in with (from inventory data); the password never enters a report."""

    user: str
    password: str
    services: tuple[str, ...] = ("smtp-auth", "imap", "pop3")  # what the login must work for

    def __repr__(self) -> str:
        return f"ProbeAccount(user={self.user!r}, password='***')"


@dataclass(frozen=True)
class ProbeTarget:
    """Where and how to reach one host: `address` to connect to, `server_name` its certificate must name."""

    host: str  # inventory name (report rows)
    address: str
    server_name: str
    ca_file: str | None  # CA to trust; None: the system trust store
    local_domain: str  # a domain the host is final destination for (submission probe recipient)
    account: ProbeAccount | None = None
    timeout: float = 10.0
    # the smtpd restriction steps the model sets (main.cf's smtpd_*_restrictions): what to expect of a
    # client that did not log in, and of one that did, when it uses a sender it does not own
    policy: frozenset[str] = frozenset()
    mynetworks: tuple[str, ...] = ()  # clients Postfix trusts: their sessions skip those checks


def _port_label(p: Port) -> str:
    return f"{p.protocol}/{p.port}"


class _Smtp:
    """An smtplib session that never looks up the controller's own name (no DNS) and can upgrade to TLS."""

    def __init__(self, t: ProbeTarget, port: Port, ctx: ssl.SSLContext) -> None:
        self.t, self.port, self.ctx = t, port, named(ctx, t.server_name)
        # local_hostname set explicitly: smtplib would otherwise call socket.getfqdn() (a DNS query)
        self.s: smtplib.SMTP
        if port.tls == "implicit":
            self.s = smtplib.SMTP_SSL(local_hostname="audit-probe", timeout=t.timeout, context=self.ctx)
        else:
            self.s = smtplib.SMTP(local_hostname="audit-probe", timeout=t.timeout)
        code, msg = self.s.connect(t.address, port.port)
        self.banner = (code, msg)
        assert self.s.sock is not None
        self.s.local_hostname = f"[{self.s.sock.getsockname()[0]}]"  # address literal: no DNS needed

    def ehlo(self) -> list[str]:
        self.s.ehlo()
        return [k.upper() for k in self.s.esmtp_features]

    def starttls(self) -> None:
        self.s.starttls(context=self.ctx)
        self.s.ehlo()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.s.quit()
        with contextlib.suppress(Exception):
            self.s.close()


def _rcpt_verdict(s: smtplib.SMTP, rcpt: str, sender: str = "") -> tuple[int, str]:
    """MAIL FROM:<sender> (the null sender by default) then RCPT TO:<rcpt>; the first non-2xx reply (or
    the RCPT reply), then RSET: no message is ever sent."""
    code, msg = s.mail(sender)
    if code >= 300:
        return code, msg.decode("latin-1", "replace")
    code, msg = s.rcpt(rcpt)
    with contextlib.suppress(smtplib.SMTPException, OSError):
        s.rset()
    return code, msg.decode("latin-1", "replace")


def _from_mynetworks(s: smtplib.SMTP, mynetworks: tuple[str, ...]) -> bool:
    """Whether the session's own address is in mynetworks (as Postfix sees it, without NAT)."""
    mine = ipaddress.ip_address(s.sock.getsockname()[0])
    for net in mynetworks:
        with contextlib.suppress(ValueError):
            if mine in ipaddress.ip_network(net.replace("[", "").replace("]", ""), strict=False):
                return True
    return False


def _outsider_checks(session: _Smtp, t: ProbeTarget, checks: CheckSet, label: str, n: int) -> None:
    """A client that neither logged in nor is in mynetworks may not use a local sender address nor greet
    with a name that is no FQDN; both are refused at RCPT (smtpd_delay_reject), so nothing is sent."""
    wanted = [
        ("smtp.local_sender_refused", LOCAL_SENDERS_REFUSED),
        ("smtp.helo_checked", "reject_invalid_helo_hostname"),
    ]
    wanted = [(cid, step) for cid, step in wanted if step in t.policy]
    if wanted and _from_mynetworks(session.s, t.mynetworks):
        for cid, _ in wanted:
            checks.skip(f"{cid}[{n}]", f"{label}: the audit connects from mynetworks, which Postfix trusts")
        return
    rcpt = f"postmaster@{t.local_domain}"
    for cid, _ in wanted:
        if cid == "smtp.local_sender_refused":
            code, msg = _rcpt_verdict(session.s, rcpt, sender=rcpt)
            checks.add(
                f"{cid}[{n}]",
                code >= 500,
                f"{label}: MAIL FROM <{rcpt}> without login answered {code} {msg} (local sender spoofing)",
                ok_message=f"{label}: a local sender without login refused ({code})",
                severity=Severity.HIGH,
                fix="check_sender_access with the served domains in smtpd_sender_restrictions "
                "(smtpd.reject_outside_local_senders)",
            )
        else:
            session.s.docmd("EHLO", BAD_HELO)
            code, msg = _rcpt_verdict(session.s, rcpt)
            session.ehlo()  # the probe's own name again for what follows
            checks.add(
                f"{cid}[{n}]",
                code >= 500,
                f"{label}: after EHLO {BAD_HELO} RCPT answered {code} {msg}",
                ok_message=f"{label}: an invalid HELO name refused ({code})",
                severity=Severity.MEDIUM,
                fix="smtpd_helo_restrictions with reject_invalid_helo_hostname and "
                "reject_non_fqdn_helo_hostname (smtpd.helo_checks)",
            )


def _sender_login_check(session: _Smtp, t: ProbeTarget, checks: CheckSet, label: str, n: int) -> None:
    """Logged in, the probe account may not use an address it does not own (nothing is sent)."""
    if "reject_authenticated_sender_login_mismatch" not in t.policy or t.account is None:
        return
    spoof, rcpt = f"{SPOOF_LOCAL_PART}@{t.local_domain}", f"postmaster@{t.local_domain}"
    code, msg = _rcpt_verdict(session.s, rcpt, sender=spoof)
    checks.add(
        f"smtp.sender_login_enforced[{n}]",
        code >= 500,
        f"{label}: logged in as {t.account.user}, MAIL FROM <{spoof}> answered {code} {msg} "
        "(sender spoofing)",
        ok_message=f"{label}: {t.account.user} may not send as {spoof} ({code})",
        severity=Severity.HIGH,
        fix="smtpd_sender_login_maps and reject_authenticated_sender_login_mismatch in "
        "smtpd_sender_restrictions (smtpd.enforce_sender_login)",
    )


def _relay_check(s: smtplib.SMTP, checks: CheckSet, label: str, n: int) -> None:
    """Open relay: the null sender to a foreign domain must be refused outright (5xx)."""
    code, msg = _rcpt_verdict(s, FOREIGN_RCPT)
    if code >= 500:
        checks.passed(f"smtp.open_relay[{n}]", f"{label}: relay refused ({code})", Severity.CRITICAL)
    elif code < 400:
        checks.fail(
            f"smtp.open_relay[{n}]",
            f"{label}: OPEN RELAY: unauthenticated RCPT to {FOREIGN_RCPT} accepted ({code} {msg})",
            severity=Severity.CRITICAL,
            fix="mynetworks = 127.0.0.0/8 [::1]/128 and smtpd_relay_restrictions ending in "
            "reject_unauth_destination",
        )
    else:
        checks.fail(
            f"smtp.open_relay[{n}]",
            f"{label}: foreign RCPT deferred ({code} {msg}), not refused",
            severity=Severity.LOW,
            fix="use reject_unauth_destination, not defer_unauth_destination",
        )


def probe_smtp(
    t: ProbeTarget, port: Port, checks: CheckSet, ctx: ssl.SSLContext
) -> tlsprobe.Handshake | None:
    """Relay, AUTH placement, STARTTLS, implicit TLS and VRFY on one SMTP port; returns the session's
    verified TLS handshake (None without one) for the port's TLS checks."""
    label, n = _port_label(port), port.port
    tls: tlsprobe.Handshake | None = None
    try:
        session = _Smtp(t, port, ctx)
    except ssl.SSLCertVerificationError as e:
        checks.skip(
            f"smtp.trusted_session[{n}]",
            f"{label}: certificate not trusted "
            f"({e.verify_message}); protocol checks skipped — see tls.cert_chain",
        )
        return None
    except ssl.SSLError as e:
        checks.fail(
            f"smtp.implicit_tls[{n}]",
            f"{label}: no TLS handshake on connect: {e}",
            severity=Severity.HIGH,
            fix=f"-o smtpd_tls_wrappermode=yes on {port.protocol}",
        )
        return None
    except (OSError, smtplib.SMTPException) as e:
        checks.fail(
            f"smtp.reachable[{n}]",
            f"{label}: cannot connect: {e}",
            severity=Severity.HIGH,
            fix=f"start postfix and make it listen on {n} (postfix status; ss -ltn)",
        )
        return None
    try:
        if port.tls == "implicit":
            tls = _session_tls(session.s.sock)
        code, _ = session.banner
        checks.add(
            f"smtp.reachable[{n}]",
            code == 220,
            f"{label}: greeting {code}",
            severity=Severity.HIGH,
            fix="check postfix is running and not overloaded",
        )
        if port.tls == "implicit":
            checks.passed(f"smtp.implicit_tls[{n}]", f"{label}: TLS from the first byte")
        plain = session.ehlo()
        if port.tls != "implicit":
            auth_plain = any(f.startswith("AUTH") for f in plain)
            checks.add(
                f"smtp.no_auth_before_tls[{n}]",
                not auth_plain,
                f"{label}: AUTH offered before STARTTLS (passwords in clear)",
                ok_message=f"{label}: no AUTH before STARTTLS",
                severity=Severity.HIGH,
                fix="set smtpd_tls_auth_only = yes",
            )
        has_starttls = "STARTTLS" in plain
        if port.tls == "starttls":
            checks.add(
                f"smtp.starttls[{n}]",
                has_starttls,
                f"{label}: STARTTLS not offered",
                ok_message=f"{label}: STARTTLS offered",
                severity=Severity.HIGH,
                fix="set smtpd_tls_security_level = may (25) / encrypt (587) with a cert and key",
            )
        relayed = False
        if port.protocol == "smtp":  # MX port: most relay abuse comes without TLS, so probe before it
            _relay_check(session.s, checks, label, n)
            _outsider_checks(session, t, checks, label, n)
            relayed = True
        if port.tls == "starttls" and has_starttls:
            # after TLS too: AUTH hidden before STARTTLS (smtpd_tls_auth_only) must still be absent on a
            # port the model gives none, and present where it requires AUTH
            session.starttls()
            tls = _session_tls(session.s.sock)
        features = session.ehlo()
        auth_now = any(f.startswith("AUTH") for f in features)
        if port.auth == "none":
            checks.add(
                f"smtp.auth_offered[{n}]",
                not auth_now,
                f"{label}: AUTH offered but the model says this port takes no AUTH",
                ok_message=f"{label}: no AUTH (as the model says)",
                severity=Severity.MEDIUM,
                fix=f"remove smtpd_sasl_auth_enable from the {port.protocol} service",
            )
        elif port.auth == "required":
            checks.add(
                f"smtp.auth_offered[{n}]",
                auth_now,
                f"{label}: AUTH not offered (no client can log in)",
                ok_message=f"{label}: AUTH offered",
                severity=Severity.HIGH,
                fix=f"-o smtpd_sasl_auth_enable=yes on the {port.protocol} service in master.cf",
            )
        if not relayed:  # client ports: after TLS, where a client would try
            _relay_check(session.s, checks, label, n)
        if port.auth == "required":
            rcpt = f"postmaster@{t.local_domain}"
            code, msg = _rcpt_verdict(session.s, rcpt)
            checks.add(
                f"smtp.submission_requires_auth[{n}]",
                code >= 500,
                f"{label}: unauthenticated RCPT to {rcpt} answered {code} {msg}",
                ok_message=f"{label}: mail without AUTH refused ({code})",
                severity=Severity.HIGH,
                fix="-o smtpd_relay_restrictions=permit_sasl_authenticated,reject on the service",
            )
        code, _ = session.s.verify("postmaster")
        checks.add(
            f"smtp.vrfy_disabled[{n}]",
            code >= 500,
            f"{label}: VRFY answered {code} (address harvesting)",
            ok_message=f"{label}: VRFY disabled ({code})",
            severity=Severity.LOW,
            fix="set disable_vrfy_command = yes",
        )
        if port.auth != "none" and t.account is not None and "smtp-auth" in t.account.services and auth_now:
            try:
                session.s.login(t.account.user, t.account.password)
                checks.passed(f"smtp.login[{n}]", f"{label}: AUTH as {t.account.user} works")
                _sender_login_check(session, t, checks, label, n)
            except smtplib.SMTPException as e:
                checks.fail(
                    f"smtp.login[{n}]",
                    f"{label}: AUTH as {t.account.user} failed: {_smtp_error(e)}",
                    severity=Severity.HIGH,
                    fix="check the SASL backend (saslauthd / Dovecot auth) and the probe password",
                )
    except ssl.SSLCertVerificationError as e:  # after STARTTLS: the TLS checks report the chain
        checks.skip(
            f"smtp.trusted_session[{n}]",
            f"{label}: certificate not trusted "
            f"({e.verify_message}); checks after STARTTLS skipped — see tls.cert_chain",
        )
    except (OSError, smtplib.SMTPException) as e:
        # the port answered, then the server dropped a well-formed dialogue: a fault of the host
        # (e.g. smtpd exits when its SASL backend is gone), not a check that could not run
        checks.fail(
            f"smtp.session[{n}]",
            f"{label}: session broke off: {e}",
            severity=Severity.HIGH,
            fix="read the mail log for the daemon's fatal error on this port",
        )
    finally:
        session.close()
    return tls


def _session_tls(sock: object, offered: str | None = None) -> tlsprobe.Handshake | None:
    """The verified TLS session of a protocol probe's socket, if it is one."""
    return tlsprobe.session_handshake(sock, offered) if isinstance(sock, ssl.SSLSocket) else None


# The TLS version a STARTTLS session is pinned to (and its context): a sibling listener's session answers
# the version its group still lacks, instead of a handshake of its own (see run_probes).
Pinned = tuple[str, ssl.SSLContext]


def _starttls(
    upgrade: Callable[[ssl.SSLContext], object], ctx: ssl.SSLContext, pinned: Pinned | None
) -> tlsprobe.Handshake | None:
    """Run a protocol's STARTTLS `upgrade` with the run's context, or with the `pinned` version's.

    A pinned version the server will not complete is an answer to "is it accepted?" (returned as a
    refused Handshake for the TLS checks), not a failure of the session; a certificate the run's CA does
    not verify, or any failure of an unpinned upgrade, still is. None: the session is upgraded."""
    if pinned is None:
        upgrade(ctx)
        return None
    try:
        upgrade(pinned[1])
    except ssl.SSLCertVerificationError:
        raise
    except tlsprobe.REFUSED as e:
        return tlsprobe.Handshake(False, error=str(e) or type(e).__name__, offered=pinned[0])
    return None


def _smtp_error(e: smtplib.SMTPException) -> str:
    if isinstance(e, smtplib.SMTPResponseException):
        err = e.smtp_error
        return f"{e.smtp_code} {err.decode('latin-1', 'replace') if isinstance(err, bytes) else err}"
    return str(e)


def probe_imap(
    t: ProbeTarget,
    port: Port,
    checks: CheckSet,
    ctx: ssl.SSLContext,
    pinned: Pinned | None = None,
    login: bool = True,
) -> tlsprobe.Handshake | None:
    """Plaintext login refused before TLS, STARTTLS offered, and a probe login when an account is given
    (and `login`); returns the session's TLS handshake (STARTTLS is taken whenever offered, with the
    `pinned` version only when given: the port's TLS checks reuse it instead of connecting again)."""
    label, n = _port_label(port), port.port
    tls: tlsprobe.Handshake | None = None
    try:
        if port.tls == "implicit":
            m: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                t.address, n, ssl_context=named(ctx, t.server_name), timeout=t.timeout
            )
        else:
            m = imaplib.IMAP4(t.address, n, timeout=t.timeout)
    except ssl.SSLCertVerificationError as e:
        checks.skip(
            f"imap.trusted_session[{n}]",
            f"{label}: certificate not trusted ({e.verify_message}) — see tls.cert_chain",
        )
        return None
    except (OSError, imaplib.IMAP4.error) as e:
        checks.fail(
            f"imap.reachable[{n}]",
            f"{label}: cannot connect: {e}",
            severity=Severity.HIGH,
            fix=f"start dovecot and enable {port.protocol} on {n} (doveconf protocols; ss -ltn)",
        )
        return None
    try:
        checks.passed(f"imap.reachable[{n}]", f"{label}: greeting received", Severity.HIGH)
        secured = port.tls == "implicit"
        if secured:
            tls = _session_tls(m.sock)
        if not secured:
            caps = {c.upper() for c in m.capabilities}
            ok = "LOGINDISABLED" in caps and not any(c.startswith("AUTH=PLAIN") for c in caps)
            checks.add(
                f"imap.plaintext_auth_refused[{n}]",
                ok,
                f"{label}: login offered without TLS (capabilities: {' '.join(sorted(caps))})",
                ok_message=f"{label}: LOGINDISABLED before TLS",
                severity=Severity.HIGH,
                fix="auth_allow_cleartext = no (disable_plaintext_auth = yes) and ssl = required",
            )
            has = "STARTTLS" in caps
            checks.add(
                f"imap.starttls[{n}]",
                has,
                f"{label}: STARTTLS not offered",
                ok_message=f"{label}: STARTTLS offered",
                severity=Severity.HIGH,
                fix="ssl = required with ssl_cert/ssl_key in Dovecot",
            )
            if has:
                refused_version = _starttls(
                    lambda c: m.starttls(ssl_context=named(c, t.server_name)), ctx, pinned
                )
                if refused_version is not None:  # the TLS checks say so
                    return refused_version
                tls = _session_tls(m.sock, pinned[0] if pinned else None)
                secured = True
        if login and t.account is not None and "imap" in t.account.services and secured:
            try:
                m.login(t.account.user, t.account.password)
                checks.passed(f"imap.login[{n}]", f"{label}: login as {t.account.user} works")
            except imaplib.IMAP4.error as e:
                checks.fail(
                    f"imap.login[{n}]",
                    f"{label}: login as {t.account.user} refused: {e}",
                    severity=Severity.HIGH,
                    fix="check the user's Dovecot passdb entry and mailbox",
                )
    except ssl.SSLCertVerificationError as e:  # after STARTTLS: the TLS checks report the chain
        checks.skip(
            f"imap.trusted_session[{n}]",
            f"{label}: certificate not trusted "
            f"({e.verify_message}); checks after STARTTLS skipped — see tls.cert_chain",
        )
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
        # the port answered, then the server dropped a well-formed dialogue: a fault of the host
        # (e.g. smtpd exits when its SASL backend is gone), not a check that could not run
        checks.fail(
            f"imap.session[{n}]",
            f"{label}: session broke off: {e}",
            severity=Severity.HIGH,
            fix="read the mail log for the daemon's fatal error on this port",
        )
    finally:
        with contextlib.suppress(Exception):
            m.logout()
    return tls


def probe_pop3(
    t: ProbeTarget,
    port: Port,
    checks: CheckSet,
    ctx: ssl.SSLContext,
    pinned: Pinned | None = None,
    login: bool = True,
) -> tlsprobe.Handshake | None:
    """USER refused before TLS, STLS offered, and a probe login when an account is given (and `login`);
    returns the session's TLS handshake (STLS is taken whenever offered, with the `pinned` version only
    when given, for the port's TLS checks)."""
    label, n = _port_label(port), port.port
    tls: tlsprobe.Handshake | None = None
    try:
        if port.tls == "implicit":
            p: poplib.POP3 = poplib.POP3_SSL(
                t.address, n, context=named(ctx, t.server_name), timeout=t.timeout
            )
        else:
            p = poplib.POP3(t.address, n, timeout=t.timeout)
    except ssl.SSLCertVerificationError as e:
        checks.skip(
            f"pop3.trusted_session[{n}]",
            f"{label}: certificate not trusted ({e.verify_message}) — see tls.cert_chain",
        )
        return None
    except (OSError, poplib.error_proto) as e:
        checks.fail(
            f"pop3.reachable[{n}]",
            f"{label}: cannot connect: {e}",
            severity=Severity.HIGH,
            fix=f"start dovecot and enable {port.protocol} on {n}",
        )
        return None
    try:
        checks.passed(f"pop3.reachable[{n}]", f"{label}: greeting received", Severity.HIGH)
        if port.tls == "implicit":
            tls = _session_tls(p.sock)
        else:
            caps = {k.upper() for k in p.capa()}
            try:
                reply = p.user("audit-probe-nonexistent").decode("latin-1", "replace")
                refused, why = False, reply
            except poplib.error_proto as e:
                refused, why = True, str(e)
            checks.add(
                f"pop3.plaintext_auth_refused[{n}]",
                refused,
                f"{label}: USER accepted without TLS ({why})",
                ok_message=f"{label}: USER refused before TLS",
                severity=Severity.HIGH,
                fix="auth_allow_cleartext = no (disable_plaintext_auth = yes) and ssl = required",
            )
            has = "STLS" in caps
            checks.add(
                f"pop3.starttls[{n}]",
                has,
                f"{label}: STLS not offered",
                ok_message=f"{label}: STLS offered",
                severity=Severity.HIGH,
                fix="ssl = required with ssl_cert/ssl_key in Dovecot",
            )
            if not has:
                return None

            # A refused USER (the healthy case) leaves the session as it was, so it goes on to STLS: one
            # Dovecot login process less per audit. An accepted USER leaves a half-started login, after
            # which STLS is not allowed (RFC 2595 §4), and a server may refuse it after any USER at all:
            # then a fresh session does the upgrade.
            def stls(c: ssl.SSLContext) -> None:
                nonlocal p
                if refused:
                    with contextlib.suppress(poplib.error_proto):
                        p.stls(context=named(c, t.server_name))
                        return
                with contextlib.suppress(Exception):
                    p.quit()
                p = poplib.POP3(t.address, n, timeout=t.timeout)
                p.stls(context=named(c, t.server_name))

            refused_version = _starttls(stls, ctx, pinned)
            if refused_version is not None:  # the TLS checks say so
                return refused_version
            tls = _session_tls(p.sock, pinned[0] if pinned else None)
        if login and t.account is not None and "pop3" in t.account.services:
            try:
                p.user(t.account.user)
                p.pass_(t.account.password)
                checks.passed(f"pop3.login[{n}]", f"{label}: login as {t.account.user} works")
            except poplib.error_proto as e:
                checks.fail(
                    f"pop3.login[{n}]",
                    f"{label}: login as {t.account.user} refused: {e}",
                    severity=Severity.HIGH,
                    fix="check the user's Dovecot passdb entry and mailbox",
                )
    except ssl.SSLCertVerificationError as e:  # after STARTTLS: the TLS checks report the chain
        checks.skip(
            f"pop3.trusted_session[{n}]",
            f"{label}: certificate not trusted "
            f"({e.verify_message}); checks after STARTTLS skipped — see tls.cert_chain",
        )
    except (OSError, poplib.error_proto, ssl.SSLError) as e:
        # the port answered, then the server dropped a well-formed dialogue: a fault of the host
        # (e.g. smtpd exits when its SASL backend is gone), not a check that could not run
        checks.fail(
            f"pop3.session[{n}]",
            f"{label}: session broke off: {e}",
            severity=Severity.HIGH,
            fix="read the mail log for the daemon's fatal error on this port",
        )
    finally:
        with contextlib.suppress(Exception):
            p.quit()
    return tls


class _Named:
    """A client TLS context that sends `server_name` as SNI and verifies the certificate against it.

    The probes connect to the host's address (no DNS), and smtplib, imaplib and poplib pass the address
    they connected to as `server_hostname`; they use their context only through `wrap_socket`, so this
    stand-in is all a client needs to name the mail host instead. It wraps, not subclasses,
    ssl.SSLContext, which keeps gevent's later ssl patching whole.
    """

    def __init__(self, ctx: ssl.SSLContext, server_name: str) -> None:
        self.ctx, self.server_name = ctx, server_name

    def wrap_socket(
        self, sock: socket.socket, server_hostname: str | None = None, **kw: Any
    ) -> ssl.SSLSocket:
        return self.ctx.wrap_socket(sock, server_hostname=self.server_name, **kw)


def named(ctx: ssl.SSLContext, server_name: str) -> ssl.SSLContext:
    """`ctx` for a stdlib client that connects to an address but must name `server_name` (see _Named)."""
    return cast(ssl.SSLContext, _Named(ctx, server_name))


class Contexts:
    """The verifying client contexts of one run, each built once (loading the CA for every handshake was
    controller CPU for nothing); an SSLContext serves any number of concurrent connections."""

    def __init__(self, ca_file: str | None) -> None:
        self.ca_file = ca_file
        self._made: dict[str, ssl.SSLContext] = {}

    def get(self, version: str | None = None) -> ssl.SSLContext:
        key = version or "default"
        if key not in self._made:
            self._made[key] = tlsprobe.client_context(self.ca_file, version)
        return self._made[key]

    def legacy(self) -> ssl.SSLContext:
        if "legacy" not in self._made:
            self._made["legacy"] = tlsprobe.legacy_context(self.ca_file)
        return self._made["legacy"]

    @classmethod
    def shared(cls, ca_file: str | None) -> Contexts:
        """The contexts of every host that trusts the same CA file (as it is now on disk): a fleet's
        audit loads its CA three times, not three times per host."""
        try:
            st = os.stat(ca_file) if ca_file else None
        except OSError:
            st = None
        key = (ca_file, st.st_mtime_ns if st else None, st.st_size if st else None)
        if key not in _SHARED_CONTEXTS:
            _SHARED_CONTEXTS[key] = cls(ca_file)
        return _SHARED_CONTEXTS[key]


_SHARED_CONTEXTS: dict[tuple[str | None, int | None, int | None], Contexts] = {}


def _vid(version: str, what: str, n: int) -> str:
    return f"tls.{version.lower().replace('.', '_').replace('tlsv', 'v')}_{what}[{n}]"


def _legacy_checks(t: ProbeTarget, port: Port, checks: CheckSet, ctxs: Contexts) -> None:
    """TLS 1.0 and 1.1 refused. Both versions in one handshake first (see tlsprobe.legacy_context):
    refused, both checks pass on it; accepted, the version the server chose fails and only the other one
    gets a handshake of its own. Every check keeps its own verdict, with one connection in the normal
    case instead of two."""
    label, n = _port_label(port), port.port
    todo: list[str] = []
    for version in tlsprobe.LEGACY:
        why = tlsprobe.local_support(version)
        if why is not None:
            checks.skip(_vid(version, "refused", n), f"{label}: cannot test {version}: {why}")
        else:
            todo.append(version)
    if len(todo) == len(tlsprobe.LEGACY):
        try:
            h = tlsprobe.handshake(
                t.address, n, port.protocol, port.tls, ctxs.legacy(), t.server_name, t.timeout
            )
        except tlsprobe.ProtocolError as e:
            for version in todo:
                checks.error(_vid(version, "refused", n), f"{label}: could not reach the TLS handshake: {e}")
            return
        except OSError as e:
            for version in todo:
                checks.error(_vid(version, "refused", n), f"{label}: cannot connect: {e}")
            return
        if not h.negotiated:
            for version in todo:
                _legacy_verdict(checks, label, n, version, accepted=False)
            return
        if h.version in todo:  # a version the server chose; the other one is asked on its own
            _legacy_verdict(checks, label, n, h.version, accepted=True)
            todo.remove(h.version)
        # else: accepted, but the certificate failed verification before the version was known
    for version in todo:
        vid = _vid(version, "refused", n)
        try:
            h = tlsprobe.handshake(
                t.address, n, port.protocol, port.tls, ctxs.get(version), t.server_name, t.timeout
            )
        except tlsprobe.ProtocolError as e:
            checks.error(vid, f"{label}: could not reach the TLS handshake: {e}")
            continue
        except OSError as e:
            checks.error(vid, f"{label}: cannot connect: {e}")
            continue
        _legacy_verdict(checks, label, n, version, accepted=h.negotiated)


def _legacy_verdict(checks: CheckSet, label: str, n: int, version: str, accepted: bool) -> None:
    checks.add(
        _vid(version, "refused", n),
        not accepted,
        f"{label}: server accepts {version}",
        ok_message=f"{label}: {version} refused",
        severity=Severity.MEDIUM,
        fix="smtpd_tls_protocols / smtpd_tls_mandatory_protocols >=TLSv1.2; Dovecot "
        "ssl_min_protocol = TLSv1.2",
    )


SHARED_WHY = "Dovecot applies one TLS and auth configuration to both listeners of a protocol"


@dataclass
class Siblings:
    """What one listener of a Dovecot protocol measured, for the other one (imap/143 and imaps/993,
    pop3/110 and pop3s/995).

    Dovecot (2.3) has no per-listener TLS or auth settings: the protocol floor, the certificate and the
    passdb apply per protocol and address, never per port. So the second listener's TLS version checks
    and login would repeat the first one's answers, at a login process (~10 ms of the host's CPU) each:
    most of what an audit costs a host. Each listener still gets its own session (greeting, plaintext
    refusal, STARTTLS or implicit TLS, the certificate it serves); the versions the first session did not
    answer are left (`deferred`) for the second session, pinned to that version, to answer for both.
    Reused verdicts say where they were measured.
    """

    legacy: list[CheckResult] = field(default_factory=list)
    legacy_port: Port | None = None
    versions: dict[str, tuple[tlsprobe.Handshake, Port]] = field(default_factory=dict)
    tls13_not_offered: Port | None = None  # a listener that chose 1.2 when offered 1.2 and 1.3
    deferred: list[tuple[Port, CheckSet, str]] = field(default_factory=list)
    login: list[CheckResult] = field(default_factory=list)
    login_port: Port | None = None


def _measured_on(src: Port) -> str:
    return f" (measured on {_port_label(src)}: {SHARED_WHY})"


def _mirror(checks: CheckSet, results: Sequence[CheckResult], src: Port, dst: Port) -> None:
    """`src`'s verdicts as `dst`'s, saying where they were measured."""
    for r in results:
        message = r.message.removeprefix(f"{_port_label(src)}: ")
        checks.results.append(
            CheckResult(
                r.id.replace(f"[{src.port}]", f"[{dst.port}]"),
                r.host,
                r.status,
                f"{_port_label(dst)}: {message}{_measured_on(src)}",
                r.severity,
                r.fix,
                r.detail,
                r.section,
            )
        )


def _version_check(
    t: ProbeTarget,
    port: Port,
    checks: CheckSet,
    ctxs: Contexts,
    version: str,
    own: Mapping[str, tlsprobe.Handshake],
    group: Siblings,
    defer: bool,
) -> None:
    """Is `version` accepted on `port`: from this port's own handshakes, else a sibling's, else left for
    the sibling to come (`defer`), else a handshake pinned to it."""
    label, n = _port_label(port), port.port
    vid = _vid(version, "accepted", n)
    src: Port | None = None
    if version in own:
        h = own[version]
    elif version in group.versions:
        h, src = group.versions[version]
    elif version == "TLSv1.3" and group.tls13_not_offered is not None:
        # offered 1.2 and 1.3, the server chose 1.2: it has no 1.3 (a pinned 1.3 handshake would fail)
        where = group.tls13_not_offered
        checks.skip(
            vid,
            f"{label}: TLSv1.3 not offered (TLSv1.2 chosen when 1.3 was offered) — "
            "informational" + ("" if where == port else _measured_on(where)),
        )
        return
    elif defer:
        group.deferred.append((port, checks, version))
        return
    else:
        try:
            h = tlsprobe.handshake(
                t.address, n, port.protocol, port.tls, ctxs.get(version), t.server_name, t.timeout
            )
        except (tlsprobe.ProtocolError, OSError) as e:
            checks.fail(
                vid,
                f"{label}: no TLS handshake: {e}",
                severity=Severity.HIGH,
                fix="configure a certificate and key and enable TLS on this service",
            )
            return
    if src is None:
        group.versions.setdefault(version, (h, port))
    note = "" if src is None else _measured_on(src)
    if version == "TLSv1.2":
        checks.add(
            vid,
            h.negotiated,
            f"{label}: TLSv1.2 refused ({h.error}){note}",
            ok_message=f"{label}: TLSv1.2 accepted{note}",
            severity=Severity.MEDIUM,
            fix="allow TLSv1.2 (old clients and MTAs still need it)",
        )
    elif h.negotiated:
        checks.passed(vid, f"{label}: TLSv1.3 accepted{note}", Severity.INFO)
    else:
        checks.skip(vid, f"{label}: TLSv1.3 not offered ({h.error}) — informational{note}")


def probe_tls(
    t: ProbeTarget,
    port: Port,
    checks: CheckSet,
    session: tlsprobe.Handshake | None = None,
    ctxs: Contexts | None = None,
    group: Siblings | None = None,
    defer: bool = False,
) -> None:
    """Legacy versions refused, TLS 1.2+ accepted, certificate chain, name and expiry on one port.

    `session` is the TLS handshake the port's protocol probe already made: with the default context (TLS
    1.2 and 1.3 offered, the run's CA) it answers the certificate checks and whichever of 1.2/1.3 it
    negotiated; pinned to one version (`offered`), it answers that version. Only what no session answered
    needs a handshake of its own. Each connection costs the host a login process (Dovecot) or an smtpd TLS
    setup, which is what an audit of many hosts pays for. `group` carries a Dovecot sibling listener's
    answers (see Siblings); `defer` leaves the versions still unknown to the sibling that follows.
    """
    ctxs = ctxs or Contexts(t.ca_file)
    group = group if group is not None else Siblings()
    label, n = _port_label(port), port.port
    if group.legacy_port is not None:
        _mirror(checks, group.legacy, group.legacy_port, port)
    else:
        before = len(checks.results)
        _legacy_checks(t, port, checks, ctxs)
        made = checks.results[before:]
        if made and all(r.status is not Status.ERROR for r in made):  # a sibling retries what could not run
            group.legacy, group.legacy_port = made, port
    own: dict[str, tlsprobe.Handshake] = {}
    if session is not None:
        if session.offered:
            own[session.offered] = session
        elif session.negotiated and session.version:
            own[session.version] = session
    chose_12 = bool(session and not session.offered and session.negotiated and session.version == "TLSv1.2")
    cert = session if session is not None and session.negotiated else None
    cert_error: Exception | None = None
    if cert is None:  # no session that got to a certificate: the default handshake answers it
        try:
            cert = tlsprobe.handshake(
                t.address, n, port.protocol, port.tls, ctxs.get(), t.server_name, t.timeout
            )
            if cert.negotiated and cert.version:
                own.setdefault(cert.version, cert)
                chose_12 = chose_12 or cert.version == "TLSv1.2"
        except (tlsprobe.ProtocolError, OSError) as e:
            cert_error = e
    if chose_12 and group.tls13_not_offered is None:
        group.tls13_not_offered = port
    for version in ("TLSv1.2", "TLSv1.3"):
        _version_check(t, port, checks, ctxs, version, own, group, defer)
    # certificate: chain, then name and expiry on the parsed certificate
    if cert is None:
        checks.error(f"tls.cert_chain[{n}]", f"{label}: no TLS handshake: {cert_error}")
        return
    h = cert
    ca_desc = t.ca_file or "the system trust store"
    if h.verify_error or not h.cert_der:
        checks.fail(
            f"tls.cert_chain[{n}]",
            f"{label}: chain not valid against {ca_desc}: {h.verify_error or h.error}",
            severity=Severity.HIGH,
            fix="serve the full chain (server cert then intermediates) issued by the configured CA",
        )
        for cid in ("cert_name", "cert_expiry"):
            checks.skip(f"tls.{cid}[{n}]", f"{label}: certificate not inspected: its chain is not valid")
        return
    checks.passed(f"tls.cert_chain[{n}]", f"{label}: chain valid against {ca_desc}", Severity.HIGH)
    parsed = x509.load_der_x509_certificate(h.cert_der)
    names = tlsprobe.cert_names(parsed)
    checks.add(
        f"tls.cert_name[{n}]",
        tlsprobe.name_matches(t.server_name, names),
        f"{label}: certificate names {names} do not include {t.server_name}",
        ok_message=f"{label}: certificate names {t.server_name}",
        severity=Severity.HIGH,
        fix="reissue the certificate with the host name as a subject alternative name",
    )
    left = tlsprobe.days_left(parsed)
    checks.add(
        f"tls.cert_expiry[{n}]",
        left > EXPIRY_DAYS,
        f"{label}: certificate expires in {left:.0f} days ({parsed.not_valid_after_utc:%Y-%m-%d})",
        ok_message=f"{label}: certificate valid for {left:.0f} more days",
        severity=Severity.HIGH,
        fix="renew the certificate (re-run mailserver deploy for generated certificates)",
    )


def settle(t: ProbeTarget, ctxs: Contexts, group: Siblings) -> None:
    """Answer what a listener left for its sibling and the sibling did not answer (it was down, or its
    session never got to TLS): with handshakes of the listener's own."""
    deferred, group.deferred = group.deferred, []
    for port, checks, version in deferred:
        _version_check(t, port, checks, ctxs, version, {}, group, defer=False)


def listener_groups(ports: Sequence[Port]) -> list[list[Port]]:
    """The ports probed together: each Dovecot protocol's TLS listeners (implicit TLS first, see
    Siblings), every other port on its own."""
    groups: dict[object, list[Port]] = {}
    for p in ports:
        dovecot = p.service == "dovecot" and p.protocol in IMAP_PROTOCOLS + POP3_PROTOCOLS and p.tls != "none"
        groups.setdefault(("dovecot", tlsprobe.base_protocol(p.protocol)) if dovecot else p, []).append(p)
    return [sorted(g, key=lambda p: p.tls != "implicit") for g in groups.values()]


def run_probes(t: ProbeTarget, ports: Sequence[Port], section: str = "audit") -> list[CheckResult]:
    """Every outside-in check for every port in the Manifest (LMTP is local-only and skipped), the ports
    probed concurrently (a login waits on password hashing on the host; the ports need not queue).

    Per TLS port that is three connections in the normal case: the protocol session (its TLS also
    answers the certificate checks and one of TLS 1.2/1.3), the other of 1.2/1.3 pinned, and one legacy
    handshake for TLS 1.0 and 1.1 together. A Dovecot protocol's two listeners take three between them
    (see Siblings): the implicit-TLS session with the login, the STARTTLS session pinned to TLS 1.2, and
    one legacy handshake.
    """
    ctxs = Contexts.shared(t.ca_file)
    ctx = ctxs.get()
    for version in tlsprobe.LEGACY:  # computed once, before the workers start
        tlsprobe.local_support(version)

    def one(port: Port, group: Siblings, login: bool, pinned: Pinned | None, defer: bool) -> CheckSet:
        checks = CheckSet(t.host, section)
        proto = port.protocol
        if proto in SMTP_PROTOCOLS:
            session = probe_smtp(t, port, checks, ctx)
        elif proto in IMAP_PROTOCOLS:
            session = probe_imap(t, port, checks, ctx, pinned, login)
        elif proto in POP3_PROTOCOLS:
            session = probe_pop3(t, port, checks, ctx, pinned, login)
        else:
            return checks
        if port.tls == "none":
            return checks
        blocker = _tls_blocker(checks.results)
        if blocker is None:
            probe_tls(t, port, checks, session, ctxs, group, defer)
        else:  # already a finding of the protocol probe: one verdict per cause, not seven
            for cid in TLS_CHECKS:
                checks.skip(f"{cid}[{port.port}]", f"{_port_label(port)}: TLS not tested, see {blocker}")
        return checks

    def run_group(group_ports: list[Port]) -> list[CheckResult]:
        group = Siblings()
        done: list[CheckSet] = []
        for i, port in enumerate(group_ports):
            login = group.login_port is None
            pending = [version for _, _, version in group.deferred]
            # the sibling's STARTTLS answers the version still unknown (never when it must log in: a
            # refused pinned version would leave the group without a login)
            pinned = (
                (pending[0], ctxs.get(pending[0]))
                if pending and port.tls == "starttls" and not login
                else None
            )
            checks = one(port, group, login, pinned, defer=i < len(group_ports) - 1)
            logins = [r for r in checks.results if r.id.split("[", 1)[0] in ("imap.login", "pop3.login")]
            if login and logins:
                group.login, group.login_port = logins, port
            elif not login and group.login_port is not None:
                _mirror(checks, group.login, group.login_port, port)
            done.append(checks)
        settle(t, ctxs, group)
        return [r for c in done for r in c.results]

    return in_parallel(run_group, listener_groups(ports))


def _tls_blocker(results: Sequence[CheckResult]) -> str | None:
    """The protocol check whose failure means the port never gets to TLS (down, no STARTTLS, ...)."""
    for r in results:
        kind = r.id.split("[", 1)[0].split(".", 1)[-1]
        if kind in ("reachable", "starttls", "implicit_tls", "session") and r.status is not Status.PASS:
            return r.id
    return None
