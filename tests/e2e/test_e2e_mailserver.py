"""The deploy on fresh lab hosts, both SASL variants, proven with real clients from the controller side."""

from __future__ import annotations

import contextlib
import imaplib
import json
import poplib
import smtplib
import subprocess
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from e2e_support import QUOTA_BOX, Deployment, resolving

from pyinfra_mailserver.lab.pytest_plugin import TEST_RELEASES

pytestmark = pytest.mark.lab

VARIANTS = ["virtual", "saslauthd"]
# Per variant: an alias and a list of the example data, and the logins their members read mail with.
ALIASES = {
    "virtual": {
        "alias": ("abuse@example.net", ["alice@example.net"]),
        "list": ("team@example.net", ["alice@example.net", "bob@example.net", "bob@example.com"]),
    },
    "saslauthd": {"alias": ("bob.leponge@{fqdn}", ["bob"]), "list": ("admins@{fqdn}", ["bob", "alice"])},
}


@pytest.fixture(
    scope="module",
    params=[(v, r) for r in TEST_RELEASES for v in VARIANTS],
    ids=[f"{v}-{r}" for r in TEST_RELEASES for v in VARIANTS],
)
def dep(request: pytest.FixtureRequest, deployments: Any) -> Deployment:
    d = deployments(*request.param)
    if not d.first["success"]:
        pytest.fail(
            f"first deploy failed: {d.first.get('error')}\n{d.first['_report']['errors']}\n"
            f"{d.first['_stderr'][-4000:]}"
        )
    return d


@pytest.fixture
def net(dep: Deployment) -> Iterator[Deployment]:
    """The deployment, with its FQDN resolving to the lab IP (clients verify the certificate's name)."""
    with resolving(dep.fqdn, dep.host.ip):
        yield dep


def token() -> str:
    return f"e2e-{uuid.uuid4().hex[:16]}"


def account(dep: Deployment, login: str | None = None) -> Any:
    accounts = dep.manifest.accounts
    return next(a for a in accounts if a.login == login) if login else accounts[0]


def address(dep: Deployment, login: str) -> str:
    return login if "@" in login else f"{login}@{dep.fqdn}"


def message(to: str, tok: str, subject: str | None = None) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "e2e@sender.test"
    m["To"] = to
    m["Subject"] = subject or f"test {tok}"
    m.set_content(f"body {tok}\n")
    return m


def send_25(dep: Deployment, to: str, tok: str, subject: str | None = None) -> None:
    with smtplib.SMTP(dep.fqdn, 25, timeout=30, local_hostname="client.test") as s:
        s.starttls(context=dep.tls())
        s.send_message(message(to, tok, subject), to_addrs=[to])


def submit(dep: Deployment, to: str, tok: str, port: int = 587) -> None:
    a = account(dep)
    with smtplib.SMTP(dep.fqdn, port, timeout=30, local_hostname="client.test") as s:
        s.starttls(context=dep.tls())
        s.login(a.login, dep.password(a.secret))
        # a login sends as its own address (smtpd.enforce_sender_login): the envelope says so
        s.send_message(message(to, tok), from_addr=address(dep, a.login), to_addrs=[to])


# -- the deploy itself ---------------------------------------------------------------------------------


def test_first_deploy_succeeds_and_verifies(dep: Deployment) -> None:
    names = [o["name"] for o in dep.first["operations"]]
    assert dep.first["success"], dep.first["_report"]["errors"]
    assert any("Verify the mail host" in n for n in names)
    assert dep.first["changed"] > 0
    print(
        f"\n{dep.variant}: first deploy {dep.first_seconds:.1f} s, {dep.first['changed']} ops changed, "
        f"{dep.first['round_trips']} round trips"
    )


def test_host_matches_with_testinfra(dep: Deployment) -> None:
    """An independent look (testinfra over paramiko) at what the deploy's own verification checked."""
    t = dep.host.testinfra()
    try:
        _testinfra_checks(dep, t)
    finally:  # no paramiko transport thread left running for the rest of the session
        with contextlib.suppress(Exception):
            t.backend.client.close()
        dep.host._testinfra = None


def _testinfra_checks(dep: Deployment, t: Any) -> None:
    for p in dep.manifest.packages:
        assert t.package(p).is_installed, p
    for s in dep.manifest.services:
        assert t.service(s.unit).is_running, s.unit
        assert t.service(s.unit).is_enabled, s.unit
    for p in dep.manifest.ports:
        assert t.socket(f"tcp://0.0.0.0:{p.port}").is_listening or t.socket(f"tcp://:::{p.port}").is_listening
    for f in dep.manifest.files:
        if f.secret:
            assert t.file(f.path).mode == int(f.mode, 8), f.path
            assert (t.file(f.path).user, t.file(f.path).group) == (f.owner, f.group), f.path
    key = t.file(dep.manifest.tls.key_path)
    assert key.mode == 0o600 and key.user == "root"
    for sock in dep.manifest.sockets:
        assert t.file(sock).is_socket, sock


# -- SMTP ------------------------------------------------------------------------------------------------


def test_port_25_starttls_and_no_auth(net: Deployment) -> None:
    with smtplib.SMTP(net.fqdn, 25, timeout=30, local_hostname="client.test") as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        assert not s.has_extn("auth")
        s.starttls(context=net.tls())
        s.ehlo("client.test")
        assert not s.has_extn("auth"), "AUTH must not be offered on port 25"


def test_submission_no_auth_before_starttls(net: Deployment) -> None:
    with smtplib.SMTP(net.fqdn, 587, timeout=30, local_hostname="client.test") as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), "AUTH offered before STARTTLS"
        code, _ = s.docmd("AUTH", "PLAIN AGZvbwBiYXI=")
        assert 500 <= code < 600


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_auth_after_starttls(net: Deployment, mechanism: str) -> None:
    a = account(net)
    for password, ok in ((net.password(a.secret), True), ("wrong-password", False)):
        with smtplib.SMTP(net.fqdn, 587, timeout=30, local_hostname="client.test") as s:
            s.starttls(context=net.tls())
            s.ehlo("client.test")
            assert mechanism in s.esmtp_features.get("auth", "").upper().split()
            s.user, s.password = a.login, password
            auth = s.auth_plain if mechanism == "PLAIN" else s.auth_login
            if ok:
                code, _ = s.auth(mechanism, auth, initial_response_ok=True)
                assert code == 235
            else:
                with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                    s.auth(mechanism, auth, initial_response_ok=True)
                assert 500 <= e.value.smtp_code < 600


def test_smtps_465_implicit_tls(net: Deployment) -> None:
    a = account(net)
    with smtplib.SMTP_SSL(net.fqdn, 465, context=net.tls(), timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("auth")
        s.login(a.login, net.password(a.secret))


def test_swaks_submission_verified_tls(net: Deployment) -> None:
    a = account(net)
    tok = token()
    r = subprocess.run(
        [
            "swaks",
            "--server",
            net.host.ip,
            "--port",
            "587",
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            str(net.ca_file),
            "--tls-sni",
            net.fqdn,
            "--auth",
            "LOGIN",
            "--auth-user",
            a.login,
            "--auth-password",
            net.password(a.secret),
            "--from",
            address(net, a.login),
            "--to",
            address(net, a.login),
            "--header",
            f"Subject: swaks {tok}",
            "--body",
            tok,
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    net.mailbox_has(a.mailbox, tok)


# -- delivery --------------------------------------------------------------------------------------------


def test_delivery_to_mailbox(net: Deployment) -> None:
    a = account(net)
    tok = token()
    send_25(net, address(net, a.login), tok)
    net.mailbox_has(a.mailbox, tok)


@pytest.mark.parametrize("kind", ["alias", "list"])
def test_alias_and_list_delivery(net: Deployment, kind: str) -> None:
    rcpt, members = ALIASES[net.variant][kind]
    tok = token()
    send_25(net, rcpt.format(fqdn=net.fqdn), tok)
    for login in members:
        net.mailbox_has(account(net, login).mailbox, tok)


def test_quota_enforced(net: Deployment) -> None:
    """A message larger than the mailbox's quota is refused by Dovecot's LMTP (Postfix logs the 552) and
    never reaches the Maildir, while a small one to the same mailbox still arrives. The client does not
    announce the size (no SIZE= in MAIL FROM), so the RCPT-time quota check cannot refuse it earlier
    (that one: tests/e2e/test_hardening.py)."""
    if net.variant != "virtual":
        pytest.skip("quotas are per virtual mailbox")
    a = account(net, QUOTA_BOX)
    since = int(net.host.check("date +%s"))
    big = token()
    m = message(QUOTA_BOX, big)
    m.set_content(f"body {big}\n" + ("y" * 76 + "\n") * 20000)  # ~1.5 MB, over the 1M quota
    with smtplib.SMTP(net.fqdn, 25, timeout=60, local_hostname="client.test") as s:
        s.starttls(context=net.tls())
        s.ehlo()
        assert s.mail(m["From"])[0] == 250  # no SIZE= option
        assert s.rcpt(QUOTA_BOX)[0] == 250
        assert s.data(m.as_bytes())[0] == 250
    line = net.wait_on_host(
        f"journalctl -q --no-pager --since @{since} | grep -F 'to=<{QUOTA_BOX}>' | grep -F 'Quota exceeded'"
    )
    assert "Quota exceeded" in line, line
    assert net.host.run(f"grep -rlF {big} {a.mailbox}").returncode != 0
    small = token()
    send_25(net, QUOTA_BOX, small)
    net.mailbox_has(a.mailbox, small)


def test_open_relay_refused(net: Deployment) -> None:
    with smtplib.SMTP(net.fqdn, 25, timeout=30, local_hostname="client.test") as s:
        s.starttls(context=net.tls())
        s.ehlo("client.test")
        s.mail("e2e@sender.test")
        for rcpt in ("someone@sink.test", "someone@foreign.example"):
            code, msg = s.rcpt(rcpt)
            assert 500 <= code < 600, (rcpt, code, msg)


def test_authenticated_relay_follows_transport(net: Deployment, sink_factory: Any) -> None:
    sink = sink_factory()
    tok = token()
    submit(net, "someone@sink.test", tok)
    try:
        got = sink.wait_for(tok, timeout=90)
    except AssertionError as e:  # say what Postfix made of it: the queue and the log of the relay
        seen = net.host.run("postqueue -j; journalctl -q --no-pager -n 40 | grep -E 'sink.test|2525'")
        raise AssertionError(f"{e}\n{seen.stdout[-3000:]}") from None
    assert "someone@sink.test" in got.rcpt_to


def test_authenticated_relay_is_queued_for_relayhost(net: Deployment) -> None:
    if net.variant != "saslauthd":
        pytest.skip("only the saslauthd example has a relayhost")
    tok = token()
    rcpt = f"{tok}@foreign.example"
    submit(net, rcpt, tok)
    out = net.wait_on_host(f"postqueue -j | grep -F {rcpt}", timeout=60)
    assert rcpt in out


def test_header_checks_warn_is_logged(net: Deployment) -> None:
    a = account(net)
    tok = token()
    send_25(net, address(net, a.login), tok, subject=f"e2e-legal {tok}")
    net.wait_on_host(f"journalctl -q --no-pager | grep -F 'warning: header Subject: e2e-legal {tok}'")


def test_testsaslauthd(dep: Deployment) -> None:
    if dep.variant != "saslauthd":
        pytest.skip("saslauthd variant only")
    a = account(dep)
    [sock] = [s for s in dep.manifest.sockets if "saslauthd" in s]
    good = dep.host.run(f"testsaslauthd -f {sock} -u {a.login} -p '{dep.password(a.secret)}'")
    bad = dep.host.run(f"testsaslauthd -f {sock} -u {a.login} -p wrong")
    assert 'OK "Success."' in good.stdout, good
    assert "NO" in bad.stdout, bad
    # reference 001's own check, without -f: the default socket path links to the chroot's socket
    plain = dep.host.run(f"testsaslauthd -u {a.login} -p '{dep.password(a.secret)}'")
    assert 'OK "Success."' in plain.stdout, plain


# -- IMAP and POP3 ---------------------------------------------------------------------------------------


def _delivered(net: Deployment) -> tuple[Any, str]:
    a = account(net)
    tok = token()
    send_25(net, address(net, a.login), tok)
    net.mailbox_has(a.mailbox, tok)
    return a, tok


def _imap_fetch(imap: imaplib.IMAP4, tok: str) -> None:
    imap.select("INBOX", readonly=True)
    typ, data = imap.search(None, "BODY", tok)
    assert typ == "OK" and data[0].split(), f"{tok} not found over IMAP"
    typ, msg = imap.fetch(data[0].split()[-1], "(RFC822)")
    assert typ == "OK" and tok.encode() in msg[0][1]


def test_imap_143_starttls_and_993(net: Deployment) -> None:
    a, tok = _delivered(net)
    password = net.password(a.secret)
    imap = imaplib.IMAP4(net.fqdn, 143, timeout=30)
    try:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(a.login, password)
        imap.starttls(ssl_context=net.tls())
        imap.login(a.login, password)
        _imap_fetch(imap, tok)
    finally:
        imap.logout()
    with imaplib.IMAP4_SSL(net.fqdn, 993, ssl_context=net.tls(), timeout=30) as imap_s:
        imap_s.login(a.login, password)
        _imap_fetch(imap_s, tok)


def _pop_fetch(pop: poplib.POP3, tok: str) -> None:
    count, _ = pop.stat()
    assert count > 0
    found = any(tok.encode() in b"\n".join(pop.retr(i)[1]) for i in range(count, 0, -1))
    assert found, f"{tok} not found over POP3"


def test_pop3_110_stls_and_995(net: Deployment) -> None:
    a, tok = _delivered(net)
    password = net.password(a.secret)
    pop = poplib.POP3(net.fqdn, 110, timeout=30)
    try:
        with pytest.raises(poplib.error_proto):
            pop.user(a.login)
            pop.pass_(password)
    finally:
        pop.close()
    pop = poplib.POP3(net.fqdn, 110, timeout=30)
    try:
        pop.stls(context=net.tls())
        pop.user(a.login)
        pop.pass_(password)
        _pop_fetch(pop, tok)
    finally:
        pop.quit()
    pop_s = poplib.POP3_SSL(net.fqdn, 995, context=net.tls(), timeout=30)
    try:
        pop_s.user(a.login)
        pop_s.pass_(password)
        _pop_fetch(pop_s, tok)
    finally:
        pop_s.quit()


# -- idempotency, then one small change ------------------------------------------------------------------


def test_rerun_changes_nothing_then_one_alias_changes_only_aliases(dep: Deployment) -> None:
    main_job = dep.pyinfra_main_job()
    assert main_job.returncode == 0, main_job.stdout[-3000:] + main_job.stderr[-3000:]
    again = dep.deploy()
    changed = [o["name"] for o in again["operations"] if o["changed"]]
    assert again["success"], again["_report"]["errors"]
    assert changed == [], changed
    assert again["services_reloaded"] == []
    print(
        f"\n{dep.variant}: no-change re-run {again['seconds']['total']} s, "
        f"{again['round_trips']} round trips, {again['commands_executed']} op commands"
    )

    with_testinfra = dep.deploy("--data", "mailserver_verify=testinfra")
    assert with_testinfra["success"], with_testinfra["_report"]["errors"]
    assert [o["name"] for o in with_testinfra["operations"] if o["changed"]] == []

    dep.set_data(extra_aliases={"e2e-new": ["root"]})
    plan = dep.deploy("--dry")
    planned = [o["name"] for o in plan["operations"] if o["changed"]]
    assert plan["success"] and len(planned) == 2, planned
    assert dep.host.run(f"postalias -q e2e-new hash:{dep.manifest.distro.aliases_file}").returncode != 0
    table = f"{dep.manifest.distro.aliases_file}.db"
    inode = dep.host.check(f"stat -c %i {table}")
    after = dep.deploy()
    changed = [o["name"] for o in after["operations"] if o["changed"]]
    aliases = dep.manifest.distro.aliases_file
    assert after["success"], after["_report"]["errors"]
    assert len(changed) == 2, changed
    assert after["files_changed"] == [aliases], after["files_changed"]
    assert any(n.endswith("Postfix files") for n in changed), changed
    assert any(f"postalias hash:{aliases}" in n for n in changed), changed
    assert after["services_reloaded"] == []
    dep.wait_on_host(f"postalias -q e2e-new hash:{aliases}", timeout=10)
    # built aside and renamed over the live table (issue 6), not rewritten in place
    assert dep.host.check(f"stat -c %i {table}") != inode
    assert dep.host.check(f"stat -c '%U %a' {table}") == dep.host.check(f"stat -c '%U %a' {aliases}")


def test_no_secret_in_output_with_diff_and_verbose(dep: Deployment) -> None:
    """A run that changes secret files, with --diff and -v, prints no hash, password or key."""
    change = {
        "virtual": "mailserver['virtual']['mailboxes'][0]['quota'] = '3G'",
        "saslauthd": "mailserver['relay']['credentials']['username'] = 'e2e-relay@example.org'",
    }[dep.variant]
    dep.set_data(extra_aliases={"e2e-new": ["root"]}, extra=(change,))
    secret_files = {f.path for f in dep.manifest.files if f.secret}
    changed = dep.deploy("--diff", "-v")
    assert changed["success"], changed["_report"]["errors"]
    assert set(changed["files_changed"]) & secret_files, changed["files_changed"]
    report = {k: v for k, v in changed.items() if not k.startswith("_")}
    output = json.dumps(report) + json.dumps(changed["_report"]["errors"]) + changed["_stderr"]
    assert "secret content: diff masked" in output
    leaked = [v[:6] + "..." for v in dep.secret_values() if v in output]
    assert leaked == [], f"secrets in output: {leaked}"
    dep.set_data(extra_aliases={"e2e-new": ["root"]})
    assert dep.deploy()["success"]


def test_config_failing_postfix_checks_never_goes_live(dep: Deployment) -> None:
    """Data the model accepts but Postfix warns about stops the deploy before anything is live."""
    if dep.variant != "virtual":
        pytest.skip("one variant is enough for the staging mechanism")
    main_cf = f"{dep.manifest.distro.postfix_dir}/main.cf"
    before = dep.host.check(f"sha256sum {main_cf}")
    dep.set_data(extra_aliases={"e2e-new": ["root"]}, postfix_extra={"e2e_no_such_parameter": "1"})
    failed = dep.deploy()
    assert not failed["success"]
    assert failed["_exit"] != 0
    log = "\n".join(failed["_report"]["errors"]) + failed["_stderr"]
    assert "postconf" in log and "e2e_no_such_parameter" in log, log[-3000:]
    assert dep.host.check(f"sha256sum {main_cf}") == before, "live main.cf changed"
    assert dep.host.check("find /var/lib/pyinfra-mailserver/stage -type f") == "", "staging files left"
    with (
        resolving(dep.fqdn, dep.host.ip),
        smtplib.SMTP(dep.fqdn, 25, timeout=30, local_hostname="client.test") as s,
    ):
        assert s.ehlo("client.test")[0] == 250
    assert not any("Reload Postfix" in o["name"] and o["changed"] for o in failed["operations"])

    dep.set_data(extra_aliases={"e2e-new": ["root"]})
    back = dep.deploy()
    assert back["success"], back["_report"]["errors"]
    assert [o["name"] for o in back["operations"] if o["changed"]] == []
