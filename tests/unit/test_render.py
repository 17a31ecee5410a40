"""Rendering: deterministic, complete (every mailbox/alias of the model in the maps), headers in every
file, the right files per variant, and a manifest that agrees with the rendered files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailserver_testdata import ARGON, CRYPT, EXAMPLE

from pyinfra_mailserver import distro
from pyinfra_mailserver.inventory import load_hosts
from pyinfra_mailserver.model import validate_server
from pyinfra_mailserver.render import build_manifest, parse_main_cf, write_tree
from pyinfra_mailserver.render.plan import HEADER

LOCAL = st.from_regex(r"[a-z][a-z0-9]{0,6}(\.[a-z0-9]{1,4})?", fullmatch=True)
DOMAINS = ["example.net", "example.com", "hosted.example.org"]


@st.composite
def virtual_servers(draw: st.DrawFn) -> dict[str, Any]:
    domains = draw(st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=3, unique=True))
    locals_ = draw(st.lists(LOCAL, min_size=1, max_size=6, unique=True))
    boxes = [f"{lp}@{draw(st.sampled_from(domains))}" for lp in locals_]
    boxes = list(dict.fromkeys(boxes))
    mailboxes = [
        {"address": b, "password": ARGON, **({"quota": "1G"} if draw(st.booleans()) else {})} for b in boxes
    ]
    alias_locals = draw(st.lists(LOCAL, max_size=5, unique=True))
    aliases = {}
    for lp in alias_locals:
        key = f"alias-{lp}@{draw(st.sampled_from(domains))}"
        aliases[key] = draw(st.lists(st.sampled_from(boxes), min_size=1, max_size=3, unique=True))
    for d in domains:  # every domain answers its role addresses
        for role in ("postmaster", "abuse"):
            if f"{role}@{d}" not in boxes:
                aliases.setdefault(f"{role}@{d}", [boxes[0]])
    local_aliases = {"postmaster": ["root"], "abuse": ["root"]}
    for lp in draw(st.lists(LOCAL, max_size=4, unique=True)):
        if lp not in local_aliases:
            local_aliases[lp] = draw(
                st.lists(st.sampled_from(["root", *boxes]), min_size=1, max_size=2, unique=True)
            )
    return {
        "identity": {"myhostname": "mx.example.org"},
        "virtual": {"domains": domains, "mailboxes": mailboxes, "aliases": aliases},
        "sasl": {"backend": "dovecot"},
        "aliases": local_aliases,
    }


def _map_keys(text: str, sep: str = " ") -> set[str]:
    return {line.split(sep, 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(virtual_servers(), st.sampled_from(list(distro.Family)))
def test_render_is_deterministic_and_complete(data: dict[str, Any], family: distro.Family) -> None:
    server = validate_server(data, hostname="mx.example.org")
    row = distro.get(family)
    first = build_manifest(server, row)
    again = build_manifest(validate_server(data, hostname="mx.example.org"), row)
    assert [(f.path, f.content) for f in first.files] == [(f.path, f.content) for f in again.files]
    assert first.postconf == again.postconf

    # the order of mailboxes and aliases in the data does not change the maps (stable, sorted output)
    shuffled = {
        **data,
        "virtual": {
            **data["virtual"],
            "mailboxes": data["virtual"]["mailboxes"][::-1],
            "aliases": dict(reversed(list(data["virtual"]["aliases"].items()))),
        },
    }
    third = build_manifest(validate_server(shuffled, hostname="mx.example.org"), row)
    assert [(f.path, f.content) for f in third.files] == [(f.path, f.content) for f in first.files]

    vmailbox = first.file("/etc/postfix/vmailbox").content
    users = first.file(row.dovecot_passwd_file).content
    for mb in data["virtual"]["mailboxes"]:
        assert mb["address"] in _map_keys(vmailbox)
        assert mb["address"] in _map_keys(users, ":")
    if data["virtual"]["aliases"]:
        virtual = first.file("/etc/postfix/virtual").content
        assert set(data["virtual"]["aliases"]) == _map_keys(virtual)
    aliases = first.file(row.aliases_file).content
    assert set(data["aliases"]) == _map_keys(aliases, ":")
    for f in first.files:
        assert HEADER in f.content.splitlines()[0]
        assert f.content.endswith("\n") and not f.content.endswith("\n\n")


def test_variants_render_only_what_they_need(secrets_env: Path) -> None:
    hosts = {h.name: h for h in load_hosts(EXAMPLE)}
    m1 = hosts["mx1.example.org"].manifest("bookworm")
    m2 = hosts["mx2.example.org"].manifest("bookworm")
    p1, p2 = {f.path for f in m1.files}, {f.path for f in m2.files}
    assert {
        "/etc/default/saslauthd",
        "/etc/postfix/sasl/smtpd.conf",
        "/etc/postfix/sasl_passwd",
        "/etc/procmailrc",
        "/etc/dovecot/conf.d/auth-system.conf.ext",
    } <= p1
    assert not p1 & {"/etc/postfix/vmailbox", "/etc/dovecot/users", "/etc/dovecot/conf.d/20-lmtp.conf"}
    assert {
        "/etc/postfix/vmailbox",
        "/etc/postfix/virtual",
        "/etc/dovecot/users",
        "/etc/dovecot/conf.d/auth-passwdfile.conf.ext",
        "/etc/dovecot/conf.d/20-lmtp.conf",
        "/etc/dovecot/conf.d/90-quota.conf",
    } <= p2
    assert not p2 & {"/etc/default/saslauthd", "/etc/postfix/sasl/smtpd.conf"}
    r1 = hosts["mx1.example.org"].manifest("rhel")
    assert {"/etc/sysconfig/saslauthd", "/etc/sasl2/smtpd.conf"} <= {f.path for f in r1.files}
    assert r1.postconf["alias_maps"] == "lmdb:/etc/aliases"


def test_manifest_of_saslauthd_host(secrets_env: Path) -> None:
    (h,) = load_hosts(EXAMPLE, ["mx1.example.org"])
    m = h.manifest("bookworm")
    pc = m.postconf
    # secure defaults and the reference's settings
    assert pc["smtpd_tls_auth_only"] == "yes"
    assert pc["smtpd_tls_protocols"] == ">=TLSv1.2" == pc["smtpd_tls_mandatory_protocols"]
    assert pc["disable_vrfy_command"] == "yes"
    assert (
        pc["smtpd_relay_restrictions"]
        == "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    )
    assert pc["smtpd_sasl_type"] == "cyrus" and "smtpd_sasl_auth_enable" not in pc
    assert pc["smtp_tls_security_level"] == "encrypt"  # credentials are sent to the relay
    assert pc["header_checks"] == "regexp:/etc/postfix/header_checks"
    assert pc["mailbox_command"] == '/usr/bin/procmail -a "$EXTENSION"'
    master = "\n".join(m.postconf_master)
    sub = "submission inet n - y - - smtpd -o syslog_name=postfix/submission"
    assert f"{sub} -o smtpd_tls_security_level=encrypt" in master
    assert "smtps inet n - y - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes" in master
    smtp = next(line for line in m.postconf_master if line.startswith("smtp inet"))
    assert "smtpd_sasl_auth_enable" not in smtp  # no AUTH on port 25
    sasl = m.file("/etc/default/saslauthd").content
    assert "START=yes" in sasl and 'MECHANISMS="pam"' in sasl
    assert 'OPTIONS="-c -m /var/spool/postfix/var/run/saslauthd"' in sasl
    assert "saslauthd_path: /var/run/saslauthd/mux" in m.file("/etc/postfix/sasl/smtpd.conf").content
    assert any(u.name == "postfix" and "sasl" in u.groups for u in m.users)
    bob = next(u for u in m.users if u.name == "bob")
    assert (
        bob.password_hash and bob.password_hash.startswith("$6$") and "bob" not in repr(bob).split("name=")[0]
    )
    assert ("postfix", "postfix/main_mailer_type", "select", "Internet Site") in m.debconf
    dirs = {d.path: d for d in m.directories}
    assert dirs["/var/spool/postfix/var/run/saslauthd"].mode == "710"
    assert dirs["/var/spool/postfix/var/run/saslauthd"].group == "sasl"
    f = m.file("/etc/postfix/sasl_passwd")
    assert f.secret and f.mode == "600"
    assert {(p.port, p.tls, p.auth) for p in m.ports} >= {
        (25, "starttls", "none"),
        (587, "starttls", "required"),
        (465, "implicit", "required"),
    }
    assert m.tls.cert_path == "/etc/ssl/certs/mx1.example.org.pem"
    assert m.tls.key_path == "/etc/ssl/private/mx1.example.org.key"
    assert m.tls.ca_path == "/etc/ssl/certs/example.org-lab-ca.pem"
    assert m.tls.names == ("mx1.example.org", "mail.example.org")
    assert {a.login for a in m.accounts} == {"bob", "alice"}
    assert "sasl2-bin" in m.packages and "procmail" in m.packages


def test_manifest_of_virtual_host(secrets_env: Path) -> None:
    (h,) = load_hosts(EXAMPLE, ["mx2.example.org"])
    m = h.manifest("bookworm")
    pc = m.postconf
    assert pc["virtual_transport"] == "lmtp:unix:private/dovecot-lmtp"
    assert pc["virtual_mailbox_maps"] == "hash:/etc/postfix/vmailbox"
    assert pc["smtpd_sasl_type"] == "dovecot" and pc["smtpd_sasl_path"] == "private/auth"
    master = m.file("/etc/dovecot/conf.d/10-master.conf").content
    assert "unix_listener /var/spool/postfix/private/auth {" in master
    assert "ssl = required" in m.file("/etc/dovecot/conf.d/10-ssl.conf").content
    assert "disable_plaintext_auth = yes" in m.file("/etc/dovecot/conf.d/10-auth.conf").content
    users = m.file("/etc/dovecot/users")
    assert users.secret and users.mode == "640" and users.group == "dovecot"
    assert any(u.name == "vmail" and u.uid == 5000 for u in m.users)
    assert any(g.name == "vmail" and g.gid == 5000 for g in m.groups)
    assert {mp.source for mp in m.maps} == {
        "/etc/aliases",
        "/etc/postfix/sender_login",
        "/etc/postfix/transport",
        "/etc/postfix/vmailbox",
        "/etc/postfix/virtual",
    }
    assert all(mp.sample_key for mp in m.maps)
    assert "dovecot-lmtpd" in m.packages
    assert m.sockets == (
        "/var/spool/postfix/private/auth",
        "/var/spool/postfix/private/dovecot-lmtp",
        "/var/spool/postfix/private/quota-status",  # the example's mailboxes have quotas
    )


def test_postconf_dict_matches_main_cf(secrets_env: Path) -> None:
    for h in load_hosts(EXAMPLE):
        m = h.manifest()
        assert parse_main_cf(m.file("/etc/postfix/main.cf").content) == m.postconf


def test_write_tree_modes_and_masking(secrets_env: Path, tmp_path: Path) -> None:
    (h,) = load_hosts(EXAMPLE, ["mx2.example.org"])
    m = h.manifest()
    write_tree(m, tmp_path / "masked")
    users = tmp_path / "masked/etc/dovecot/users"
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    assert "**masked**" in users.read_text()
    for secret in m.secrets:
        for f in (tmp_path / "masked").rglob("*"):
            if f.is_file():
                assert secret not in f.read_text()
    write_tree(m, tmp_path / "full", include_secrets=True)
    assert "{ARGON2ID}$argon2id$" in (tmp_path / "full/etc/dovecot/users").read_text()
    assert oct((tmp_path / "full/etc/postfix/main.cf").stat().st_mode & 0o777) == "0o644"


def test_maildrop_maildir_gets_its_directories() -> None:
    data = {
        "identity": {"myhostname": "mx.example.org"},
        "sasl": {"backend": "saslauthd"},
        "local": {"mailbox_command": "maildrop", "users": [{"name": "bob", "password": CRYPT}]},
    }
    m = build_manifest(validate_server(data, hostname="mx.example.org"), distro.DEBIAN)
    dirs = {d.path: d for d in m.directories}
    for sub in ("", "/cur", "/new", "/tmp"):
        assert dirs[f"/home/bob/Maildir{sub}"].owner == "bob"
    assert 'DEFAULT="$HOME/Maildir"' in m.file("/etc/maildroprc").content


def test_system_user_variant_with_mbox_and_maildrop() -> None:
    data = {
        "identity": {"myhostname": "mx.example.org"},
        "sasl": {"backend": "saslauthd", "saslauthd": {"mechanism": "shadow"}},
        "local": {
            "mailbox": "mbox",
            "mailbox_command": "maildrop",
            "users": [{"name": "bob", "password": CRYPT}],
        },
        "services": {"system_passdb": "shadow"},
    }
    m = build_manifest(validate_server(data, hostname="mx.example.org"), distro.BOOKWORM)
    assert "home_mailbox" not in m.postconf and m.postconf["mailbox_command"] == "/usr/bin/maildrop"
    assert (
        "mail_location = mbox:~/mail:INBOX=/var/mail/%u" in m.file("/etc/dovecot/conf.d/10-mail.conf").content
    )
    assert "driver = shadow" in m.file("/etc/dovecot/conf.d/auth-system.conf.ext").content
    assert 'DEFAULT="/var/mail/$LOGNAME"' in m.file("/etc/maildroprc").content
    assert 'MECHANISMS="shadow"' in m.file("/etc/default/saslauthd").content


# -- who may send as whom -----------------------------------------------------------------------------------

SENDERS: dict[str, Any] = {
    "identity": {"myhostname": "mx.example.org", "mydestination": ["$myhostname", "$mydomain"]},
    "local": {"users": [{"name": "bob", "password": CRYPT, "send_as": ["bob.leponge@example.org"]}]},
    "aliases": {"postmaster": ["root"], "abuse": ["root"], "bob.leponge": ["bob"]},
    "virtual": {
        "domains": ["example.net"],
        "mailboxes": [
            {
                "address": "alice@example.net",
                "password": ARGON,
                "send_as": ["team@example.net", "@lists.test"],
            },
            {"address": "carol@example.net", "password": ARGON, "send_as": ["team@example.net"]},
        ],
        "aliases": {f"{r}@example.net": ["alice@example.net"] for r in ("postmaster", "abuse", "team")},
    },
    "sasl": {"backend": "dovecot"},
}


def _sender_map(data: dict[str, Any]) -> dict[str, str]:
    m = build_manifest(validate_server(data, hostname="mx.example.org"), distro.DEBIAN)
    text = m.file("/etc/postfix/sender_login").content
    return dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_each_login_owns_its_addresses_and_its_send_as() -> None:
    owners = _sender_map(SENDERS)
    assert owners["alice@example.net"] == "alice@example.net"
    assert owners["team@example.net"] == "alice@example.net, carol@example.net"  # a shared address
    assert owners["@lists.test"] == "alice@example.net"  # a whole outside domain, explicitly
    assert owners["bob@mx.example.org"] == owners["bob@example.org"] == "bob"  # each mydestination domain
    assert owners["bob.leponge@example.org"] == "bob"
    assert "carol@example.org" not in owners  # an address nobody owns: refused to every login
    # without a login, a sender in any served domain is refused (port 25 runs no SASL, so smtpd would
    # ignore reject_unauthenticated_sender_login_mismatch there)
    m = build_manifest(validate_server(SENDERS, hostname="mx.example.org"), distro.DEBIAN)
    refused = [line.split(" ", 1)[0] for line in m.file("/etc/postfix/local_senders").content.splitlines()]
    assert [r for r in refused if not r.startswith("#")] == [
        r"/@mx\.example\.org$/",
        r"/@example\.org$/",
        r"/@example\.net$/",
    ]
    assert "regexp:/etc/postfix/local_senders" in m.regexp_maps


def test_sender_checks_follow_the_smtpd_section() -> None:
    def main_cf(**smtpd: bool) -> dict[str, str]:
        data = {**SENDERS, "smtpd": smtpd}
        return build_manifest(validate_server(data, hostname="mx.example.org"), distro.DEBIAN).postconf

    on = main_cf()
    assert on["smtpd_sender_login_maps"] == "hash:/etc/postfix/sender_login"
    # the login ports: a login sends as its own addresses only, from mynetworks too
    assert (
        on["mua_sender_restrictions"] == "reject_authenticated_sender_login_mismatch, reject_non_fqdn_sender"
    )
    master = "\n".join(
        build_manifest(validate_server(SENDERS, hostname="mx.example.org"), distro.DEBIAN).postconf_master
    )
    assert master.count("-o smtpd_sender_restrictions=$mua_sender_restrictions") == 2  # 587 and 465
    # port 25, which runs no SASL by default (smtpd would log a warning for the login check there)
    assert on["smtpd_sender_restrictions"].split(", ") == [
        "permit_mynetworks",
        "reject_non_fqdn_sender",
        "permit_sasl_authenticated",
        "check_sender_access regexp:/etc/postfix/local_senders",
        "reject_unknown_sender_domain",
    ]
    assert "reject_invalid_helo_hostname" in on["smtpd_helo_restrictions"]
    assert on["smtpd_data_restrictions"] == "reject_unauth_pipelining"

    off = main_cf(
        enforce_sender_login=False,
        reject_outside_local_senders=False,
        helo_checks=False,
        reject_unknown_sender_domain=False,
    )
    assert "smtpd_sender_login_maps" not in off and "smtpd_helo_restrictions" not in off
    assert (
        off["smtpd_sender_restrictions"]
        == "permit_mynetworks, reject_non_fqdn_sender, permit_sasl_authenticated"
    )
    only_outside = main_cf(enforce_sender_login=False)
    assert "reject_authenticated_sender_login_mismatch" not in only_outside["mua_sender_restrictions"]
    assert "smtpd_sender_login_maps" not in only_outside
    assert "local_senders" in only_outside["smtpd_sender_restrictions"]


def test_postscreen_screens_port_25_only_and_its_dnsbl_is_optional() -> None:
    def manifest(**postscreen: Any) -> Any:
        data = {**SENDERS, "smtpd": {"postscreen": postscreen}}
        return build_manifest(validate_server(data, hostname="mx.example.org"), distro.DEBIAN)

    m = manifest()
    assert "smtp inet n - y - 1 postscreen" in m.postconf_master
    assert "smtpd pass - - y - - smtpd" in m.postconf_master
    assert {"dnsblog unix - - y - 0 dnsblog", "tlsproxy unix - - y - 0 tlsproxy"} <= set(m.postconf_master)
    assert m.postconf["postscreen_greet_action"] == "enforce"
    assert "postscreen_dnsbl_sites" not in m.postconf  # no DNSBL unless listed
    assert not [s for s in m.postconf_master if s.startswith(("submission", "smtps")) and "postscreen" in s]
    listed = manifest(dnsbl_sites=["zen.spamhaus.org*3", "bl.spamcop.net*1"], dnsbl_threshold=3)
    assert listed.postconf["postscreen_dnsbl_sites"] == "zen.spamhaus.org*3, bl.spamcop.net*1"
    assert listed.postconf["postscreen_dnsbl_action"] == "enforce"
    off = manifest(enabled=False)
    assert "smtp inet n - y - - smtpd" in off.postconf_master
    assert not [s for s in off.postconf_master if "postscreen" in s or s.startswith("smtpd pass")]
    assert "postscreen_greet_action" not in off.postconf


def test_fail2ban_jails_read_the_journal_and_never_ban_trusted_networks() -> None:
    def manifest(release: distro.Distro, **fail2ban: Any) -> Any:
        data = {**SENDERS, "fail2ban": fail2ban}
        return build_manifest(validate_server(data, hostname="mx.example.org"), release)

    m = manifest(distro.BOOKWORM, ignore_ip=["192.0.2.7/32"], maxretry=3, bantime=60)
    jail = m.file("/etc/fail2ban/jail.d/pyinfra-mailserver.local").content
    assert "ignoreip = 127.0.0.0/8 ::1/128 192.0.2.7/32" in jail  # loopback, mynetworks, the list
    assert "maxretry = 3" in jail and "bantime = 60" in jail and "backend = systemd" in jail
    assert "[postfix-sasl]" in jail and "[dovecot]" in jail and "banaction = nftables-multiport" in jail
    assert "journalmatch = _SYSTEMD_UNIT=postfix.service + _SYSTEMD_UNIT=postfix@-.service" in jail
    assert "port = 25,143,465,587,993,995" in jail  # every port clients reach (not LMTP)
    assert "filter = pyinfra-mailserver-dovecot" in jail  # ours: it knows Dovecot 2.4's log lines
    dovecot_filter = m.file("/etc/fail2ban/filter.d/pyinfra-mailserver-dovecot.conf").content
    assert (
        "Login aborted" in dovecot_filter and "journalmatch = _SYSTEMD_UNIT=dovecot.service" in dovecot_filter
    )
    assert not next(s for s in m.services if s.name == "fail2ban").reload  # restarted (see render)
    assert {"fail2ban", "python3-systemd", "nftables"} <= set(m.packages)
    assert any(s.name == "fail2ban" for s in m.services)
    off = manifest(distro.TRIXIE, enabled=False)
    assert not off.files_for("fail2ban") and "fail2ban" not in off.packages
    assert not any(s.name == "fail2ban" for s in off.services)


def test_rate_limits_spare_the_trusted_clients() -> None:
    data = {**SENDERS, "smtpd": {"rate_limits": {"auth": 5}}, "fail2ban": {"ignore_ip": ["192.0.2.7/32"]}}
    pc = build_manifest(validate_server(data, hostname="mx.example.org"), distro.DEBIAN).postconf
    assert pc["smtpd_client_auth_rate_limit"] == "5"
    assert pc["smtpd_client_connection_rate_limit"] == "100" and pc["anvil_rate_time_unit"] == "60s"
    assert pc["smtpd_client_event_limit_exceptions"] == "$mynetworks 192.0.2.7/32"
