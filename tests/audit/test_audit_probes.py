"""Outside-in probes against toy servers on 127.0.0.1: each misconfiguration is caught by the right check."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from testcert import make_ca, make_server_cert
from toyservers import Behaviour, free_port, serve

from pyinfra_mailserver.audit import tlsprobe
from pyinfra_mailserver.audit.probes import TLS_CHECKS, ProbeAccount, ProbeTarget, run_probes
from pyinfra_mailserver.manifest import Port
from pyinfra_mailserver.report import CheckResult, Status

NAME = "mx1.example.org"
_TLS1 = ssl.TLSVersion(0x0301)  # TLSv1, without touching the deprecated enum attribute


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    cert, key = make_server_cert(d, ca, [NAME])
    wrong_cert, wrong_key = make_server_cert(d, ca, ["other.example.net"], stem="wrong")
    short_cert, short_key = make_server_cert(d, ca, [NAME], days=5, stem="short")
    other_dir = d / "other"
    other_dir.mkdir()
    other_ca = make_ca(other_dir)
    return {
        "ca": str(ca[0]),
        "cert": str(cert),
        "key": str(key),
        "wrong_cert": str(wrong_cert),
        "wrong_key": str(wrong_key),
        "short_cert": str(short_cert),
        "short_key": str(short_key),
        "other_ca": str(other_ca[0]),
    }


def _target(pki: dict[str, str], account: ProbeAccount | None = None, ca: str | None = None) -> ProbeTarget:
    return ProbeTarget(
        host="toy",
        address="127.0.0.1",
        server_name=NAME,
        ca_file=ca or pki["ca"],
        local_domain="example.org",
        account=account,
        timeout=5,
    )


def _run(
    kind: str,
    b: Behaviour,
    port: Port,
    pki: dict[str, str],
    cert: str = "cert",
    key: str = "key",
    **kw: object,
) -> dict[str, CheckResult]:
    with serve(kind, b, pki[cert], pki[key]) as n:
        p = Port(n, port.service, port.protocol, port.tls, port.auth)
        results = run_probes(_target(pki, **kw), [p])  # type: ignore[arg-type]
    return {r.id.split("[")[0]: r for r in results}


SMTP25 = Port(0, "postfix", "smtp", "starttls", "none")
SUBMISSION = Port(0, "postfix", "submission", "starttls", "required")
SMTPS = Port(0, "postfix", "smtps", "implicit", "required")
IMAP = Port(0, "dovecot", "imap", "starttls", "required")
IMAPS = Port(0, "dovecot", "imaps", "implicit", "required")
POP3 = Port(0, "dovecot", "pop3", "starttls", "required")
POP3S = Port(0, "dovecot", "pop3s", "implicit", "required")


def _statuses(r: dict[str, CheckResult]) -> dict[str, str]:
    return {k: str(v.status) for k, v in r.items()}


def test_well_configured_smtp_has_no_findings(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(auth_after_tls=False), SMTP25, pki)
    assert not [x for x in r.values() if x.status in (Status.FAIL, Status.ERROR)], _statuses(r)
    for cid in (
        "smtp.open_relay",
        "smtp.vrfy_disabled",
        "smtp.starttls",
        "smtp.no_auth_before_tls",
        "smtp.auth_offered",
        "tls.v1_refused",
        "tls.v1_1_refused",
        "tls.v1_2_accepted",
        "tls.cert_chain",
        "tls.cert_name",
        "tls.cert_expiry",
    ):
        assert r[cid].status is Status.PASS, (cid, r[cid])


def test_open_relay_is_critical(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(relay_open=True, auth_after_tls=False), SMTP25, pki)
    assert r["smtp.open_relay"].status is Status.FAIL
    assert r["smtp.open_relay"].severity == "critical"


def test_deferred_relay_is_a_low_finding(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(relay_code=450, auth_after_tls=False), SMTP25, pki)
    assert r["smtp.open_relay"].status is Status.FAIL and r["smtp.open_relay"].severity == "low"


def test_auth_before_starttls_and_on_port_25(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(auth_before_tls=True), SMTP25, pki)
    assert r["smtp.no_auth_before_tls"].status is Status.FAIL
    assert r["smtp.auth_offered"].status is Status.FAIL  # model: no AUTH on 25


def test_auth_after_starttls_on_port_25_is_found(pki: dict[str, str]) -> None:
    # smtpd_tls_auth_only hides AUTH before TLS; the probe must look after STARTTLS too
    r = _run("smtp", Behaviour(auth_before_tls=False, auth_after_tls=True), SMTP25, pki)
    assert r["smtp.no_auth_before_tls"].status is Status.PASS
    assert r["smtp.auth_offered"].status is Status.FAIL


def test_vrfy_enabled(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(vrfy_code=252, auth_after_tls=False), SMTP25, pki)
    assert r["smtp.vrfy_disabled"].status is Status.FAIL


def test_submission_requires_auth_and_login(pki: dict[str, str]) -> None:
    acct = ProbeAccount("probe@example.org", "s3cret")
    r = _run("smtp", Behaviour(), SUBMISSION, pki, account=acct)
    assert r["smtp.submission_requires_auth"].status is Status.PASS
    assert r["smtp.auth_offered"].status is Status.PASS
    assert r["smtp.login"].status is Status.PASS
    r = _run(
        "smtp",
        Behaviour(require_auth_for_local=False),
        SUBMISSION,
        pki,
        account=ProbeAccount("probe@example.org", "wrong"),
    )
    assert r["smtp.submission_requires_auth"].status is Status.FAIL
    assert r["smtp.login"].status is Status.FAIL
    assert "wrong" not in repr(ProbeAccount("u", "wrong"))


def test_submission_without_starttls(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(tls="none", auth_after_tls=False), SUBMISSION, pki)
    assert r["smtp.starttls"].status is Status.FAIL
    assert r["smtp.auth_offered"].status is Status.FAIL


def test_implicit_tls_port(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(tls="implicit"), SMTPS, pki)
    assert r["smtp.implicit_tls"].status is Status.PASS
    assert r["tls.cert_chain"].status is Status.PASS
    # a plaintext server on the implicit-TLS port
    r = _run("smtp", Behaviour(tls="none"), SMTPS, pki)
    assert r["smtp.implicit_tls"].status is Status.FAIL


def test_legacy_tls_accepted_is_reported(pki: dict[str, str]) -> None:
    if tlsprobe.local_support("TLSv1"):
        pytest.skip("local OpenSSL cannot speak TLS 1.0")
    r = _run("smtp", Behaviour(min_version=_TLS1, auth_after_tls=False), SMTP25, pki)
    assert r["tls.v1_refused"].status is Status.FAIL
    assert r["tls.v1_1_refused"].status is Status.FAIL


def test_legacy_probe_is_skipped_when_local_openssl_cannot(
    pki: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tlsprobe, "local_support", lambda v: "no TLS 1.0 here" if v == "TLSv1" else None)
    r = _run("smtp", Behaviour(min_version=_TLS1, auth_after_tls=False), SMTP25, pki)
    assert r["tls.v1_refused"].status is Status.SKIP
    assert "no TLS 1.0 here" in r["tls.v1_refused"].message


def test_certificate_problems(pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(auth_after_tls=False), SMTP25, pki, cert="wrong_cert", key="wrong_key")
    assert r["tls.cert_name"].status is Status.FAIL and r["tls.cert_chain"].status is Status.PASS
    r = _run("smtp", Behaviour(auth_after_tls=False), SMTP25, pki, cert="short_cert", key="short_key")
    assert r["tls.cert_expiry"].status is Status.FAIL
    for kind, b, port in (
        ("smtp", Behaviour(auth_after_tls=False), SMTP25),
        ("smtp", Behaviour(tls="implicit"), SMTPS),
        ("imap", Behaviour(), IMAP),
        ("pop3", Behaviour(tls="implicit"), POP3S),
    ):
        r = _run(kind, b, port, pki, ca=pki["other_ca"], account=ProbeAccount("probe@example.org", "s3cret"))
        assert r["tls.cert_chain"].status is Status.FAIL, (kind, port.protocol)
        assert r["tls.cert_name"].status is Status.SKIP  # never "passed" on an untrusted chain
        assert r[f"{kind}.trusted_session"].status is Status.SKIP
        assert not [x for x in r.values() if x.status is Status.ERROR], (kind, _statuses(r))


def test_unreachable_port_is_a_finding(pki: dict[str, str]) -> None:
    results = run_probes(_target(pki), [Port(free_port(), "dovecot", "imaps", "implicit", "required")])
    r = {x.id.split("[")[0]: x for x in results}
    assert r["imap.reachable"].status is Status.FAIL
    # the TLS checks of a closed port are skipped (not errors: the host answered, the service is down)
    assert r["tls.cert_chain"].status is Status.SKIP and r["tls.v1_refused"].status is Status.SKIP
    assert not [x for x in results if x.status is Status.ERROR]


def test_sni_carries_the_mail_host_name(pki: dict[str, str]) -> None:
    acct = ProbeAccount("probe@example.org", "s3cret")
    for kind, b, port in (
        ("smtp", Behaviour(), SUBMISSION),
        ("smtp", Behaviour(tls="implicit"), SMTPS),
        ("imap", Behaviour(), IMAP),
        ("imap", Behaviour(tls="implicit"), IMAPS),
        ("pop3", Behaviour(), POP3),
        ("pop3", Behaviour(tls="implicit"), POP3S),
    ):
        _run(kind, b, port, pki, account=acct)
        assert b.sni and set(b.sni) == {NAME}, (kind, port.protocol, b.sni)


def test_imap(pki: dict[str, str]) -> None:
    acct = ProbeAccount("probe@example.org", "s3cret")
    r = _run("imap", Behaviour(), IMAP, pki, account=acct)
    assert r["imap.plaintext_auth_refused"].status is Status.PASS
    assert r["imap.starttls"].status is Status.PASS
    assert r["imap.login"].status is Status.PASS
    assert r["tls.cert_chain"].status is Status.PASS
    r = _run("imap", Behaviour(login_disabled_plain=False), IMAP, pki)
    assert r["imap.plaintext_auth_refused"].status is Status.FAIL
    r = _run("imap", Behaviour(tls="implicit"), IMAPS, pki, account=ProbeAccount("probe@example.org", "x"))
    assert r["imap.login"].status is Status.FAIL


def test_pop3(pki: dict[str, str]) -> None:
    acct = ProbeAccount("probe@example.org", "s3cret")
    r = _run("pop3", Behaviour(), POP3, pki, account=acct)
    assert r["pop3.plaintext_auth_refused"].status is Status.PASS
    assert r["pop3.starttls"].status is Status.PASS
    assert r["pop3.login"].status is Status.PASS
    r = _run("pop3", Behaviour(login_disabled_plain=False), POP3, pki)
    assert r["pop3.plaintext_auth_refused"].status is Status.FAIL
    r = _run("pop3", Behaviour(tls="implicit"), POP3S, pki, account=acct)
    assert r["pop3.login"].status is Status.PASS and r["tls.v1_2_accepted"].status is Status.PASS


def test_name_matching() -> None:
    assert tlsprobe.name_matches("mx1.example.org", ["*.example.org"])
    assert not tlsprobe.name_matches("a.mx1.example.org", ["*.example.org"])
    assert tlsprobe.name_matches("MX1.example.org.", ["mx1.example.org"])
    assert not tlsprobe.name_matches("mx1.example.org", ["mx2.example.org"])


def test_tls13_only_server_is_not_a_finding(tmp_path: Path, pki: dict[str, str]) -> None:
    r = _run("smtp", Behaviour(min_version=ssl.TLSVersion.TLSv1_3, auth_after_tls=False), SMTP25, pki)
    assert r["tls.v1_2_accepted"].status is Status.FAIL  # 1.2 is what the issue asks to be accepted
    assert r["tls.v1_3_accepted"].status is Status.PASS


def test_tls11_only_legacy_server(pki: dict[str, str]) -> None:
    """The joint TLS 1.0/1.1 handshake: the server picks 1.1, so 1.0 is asked on its own (and refused)."""
    if tlsprobe.local_support("TLSv1") or tlsprobe.local_support("TLSv1.1"):
        pytest.skip("local OpenSSL cannot speak TLS 1.0/1.1")
    r = _run("smtp", Behaviour(min_version=ssl.TLSVersion(0x0302), auth_after_tls=False), SMTP25, pki)
    assert r["tls.v1_1_refused"].status is Status.FAIL
    assert r["tls.v1_refused"].status is Status.PASS


def test_tls12_only_server_has_no_tls13(pki: dict[str, str]) -> None:
    """TLS 1.3 is judged from the session that offered 1.2 and 1.3: the server chose 1.2, so 1.3 is
    skipped (informational), never passed, and 1.2 passes without a pinned handshake."""
    b = Behaviour(max_version=ssl.TLSVersion.TLSv1_2, auth_after_tls=False)
    r = _run("smtp", b, SMTP25, pki)
    assert r["tls.v1_2_accepted"].status is Status.PASS
    assert r["tls.v1_3_accepted"].status is Status.SKIP
    assert r["tls.cert_chain"].status is Status.PASS
    assert b.connections == 2  # the SMTP session (STARTTLS) and the legacy handshake


def test_each_tls_port_costs_three_connections(pki: dict[str, str]) -> None:
    """The protocol session's TLS answers the certificate checks and TLS 1.3; TLS 1.2 and the legacy pair
    take one connection each. Every connection is a login process or smtpd TLS setup on a real host, so
    the count is what keeps an audit of many hosts cheap."""
    acct = ProbeAccount("probe@example.org", "s3cret")
    for kind, b, port in (
        ("smtp", Behaviour(auth_after_tls=False), SMTP25),
        ("smtp", Behaviour(), SUBMISSION),
        ("smtp", Behaviour(tls="implicit"), SMTPS),
        ("imap", Behaviour(), IMAP),
        ("imap", Behaviour(tls="implicit"), IMAPS),
        ("pop3", Behaviour(), POP3),
        ("pop3", Behaviour(tls="implicit"), POP3S),
    ):
        for account in (acct, None):
            b.connections = 0
            r = _run(kind, b, port, pki, account=account)
            assert not [x for x in r.values() if x.status in (Status.FAIL, Status.ERROR)], _statuses(r)
            assert r["tls.v1_3_accepted"].status is Status.PASS
            assert b.connections == 3, (kind, port.protocol, account, b.connections)


def test_pop3_plaintext_user_accepted_still_upgrades(pki: dict[str, str]) -> None:
    """A server that accepts USER before TLS (a finding) gets a fresh session for STLS and the login."""
    acct = ProbeAccount("probe@example.org", "s3cret")
    r = _run("pop3", Behaviour(login_disabled_plain=False), POP3, pki, account=acct)
    assert r["pop3.plaintext_auth_refused"].status is Status.FAIL
    assert r["pop3.login"].status is Status.PASS and r["tls.cert_chain"].status is Status.PASS


def _run_listeners(
    kind: str,
    pki: dict[str, str],
    starttls: Behaviour | None,
    implicit: Behaviour,
    account: ProbeAccount | None = None,
) -> tuple[dict[str, CheckResult], int, int]:
    """A Dovecot protocol's two listeners probed together, as run_probes groups them on a real host (two
    toy servers with the same behaviour stand in for one Dovecot); `starttls=None`: that listener is down."""
    plain, secure = {"imap": ("imap", "imaps"), "pop3": ("pop3", "pop3s")}[kind]
    with serve(kind, implicit, pki["cert"], pki["key"]) as n_tls:
        if starttls is None:
            n_plain = free_port()
            ports = [
                Port(n_plain, "dovecot", plain, "starttls", "required"),  # type: ignore[arg-type]
                Port(n_tls, "dovecot", secure, "implicit", "required"),
            ]  # type: ignore[arg-type]
            results = run_probes(_target(pki, account=account), ports)
        else:
            with serve(kind, starttls, pki["cert"], pki["key"]) as n_plain:
                ports = [
                    Port(n_plain, "dovecot", plain, "starttls", "required"),  # type: ignore[arg-type]
                    Port(n_tls, "dovecot", secure, "implicit", "required"),
                ]  # type: ignore[arg-type]
                results = run_probes(_target(pki, account=account), ports)
    return {r.id: r for r in results}, n_plain, n_tls


@pytest.mark.parametrize("kind", ["imap", "pop3"])
def test_dovecot_listeners_share_version_checks_and_login(kind: str, pki: dict[str, str]) -> None:
    """Dovecot has one TLS and auth configuration per protocol: its two listeners cost three connections
    between them (implicit session with the login, STARTTLS session pinned to TLS 1.2, one legacy
    handshake) instead of six, and every check of both ports is still reported, saying where a reused
    verdict was measured."""
    starttls, implicit = Behaviour(), Behaviour(tls="implicit")
    acct = ProbeAccount("probe@example.org", "s3cret")
    r, n_plain, n_tls = _run_listeners(kind, pki, starttls, implicit, acct)
    assert not [x for x in r.values() if x.status in (Status.FAIL, Status.ERROR)], _statuses(r)
    assert (implicit.connections, starttls.connections) == (2, 1)
    for n in (n_plain, n_tls):
        for cid in (*TLS_CHECKS, f"{kind}.login"):
            assert r[f"{cid}[{n}]"].status is Status.PASS, (cid, n, r[f"{cid}[{n}]"].message)
    assert "measured on" not in r[f"tls.v1_3_accepted[{n_tls}]"].message
    assert f"measured on {kind}/{n_plain}" in r[f"tls.v1_2_accepted[{n_tls}]"].message
    assert f"measured on {kind}s/{n_tls}" in r[f"tls.v1_3_accepted[{n_plain}]"].message
    assert f"measured on {kind}s/{n_tls}" in r[f"{kind}.login[{n_plain}]"].message
    assert f"measured on {kind}s/{n_tls}" in r[f"tls.v1_refused[{n_plain}]"].message
    # each listener's own session and certificate
    assert "measured on" not in r[f"tls.cert_chain[{n_plain}]"].message
    assert r[f"{kind}.starttls[{n_plain}]"].status is Status.PASS


def test_dovecot_listeners_tls12_refused_is_found_on_both(pki: dict[str, str]) -> None:
    """A server without TLS 1.2: the pinned STARTTLS is refused, which is the 1.2 verdict of both
    listeners, and the STARTTLS listener's certificate is still checked with a handshake of its own."""
    starttls = Behaviour(min_version=ssl.TLSVersion.TLSv1_3)
    implicit = Behaviour(tls="implicit", min_version=ssl.TLSVersion.TLSv1_3)
    acct = ProbeAccount("probe@example.org", "s3cret")
    r, n_plain, n_tls = _run_listeners("imap", pki, starttls, implicit, acct)
    for n in (n_plain, n_tls):
        assert r[f"tls.v1_2_accepted[{n}]"].status is Status.FAIL, r[f"tls.v1_2_accepted[{n}]"].message
        assert r[f"tls.v1_3_accepted[{n}]"].status is Status.PASS
        assert r[f"tls.cert_chain[{n}]"].status is Status.PASS
        assert r[f"imap.login[{n}]"].status is Status.PASS
    assert starttls.connections == 2  # the refused pinned session, then the certificate's handshake


def test_dovecot_listener_down_leaves_its_sibling_fully_checked(pki: dict[str, str]) -> None:
    """The STARTTLS listener is down: it is a finding, and the implicit listener answers the versions it
    had left to its sibling with a handshake of its own."""
    implicit = Behaviour(tls="implicit")
    acct = ProbeAccount("probe@example.org", "s3cret")
    r, n_plain, n_tls = _run_listeners("imap", pki, None, implicit, acct)
    assert r[f"imap.reachable[{n_plain}]"].status is Status.FAIL
    for cid in TLS_CHECKS:
        assert r[f"{cid}[{n_tls}]"].status is Status.PASS, (cid, r[f"{cid}[{n_tls}]"].message)
    assert "measured on" not in r[f"tls.v1_2_accepted[{n_tls}]"].message
    assert implicit.connections == 3
