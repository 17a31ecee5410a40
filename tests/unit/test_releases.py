"""One model, every release: the distro table's release rows, how a host picks its row, and Dovecot 2.4's
spelling of every feature the 2.3 templates have (the lab tests prove that it works)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mailserver_testdata import CRYPT, EXAMPLE

from pyinfra_mailserver import distro
from pyinfra_mailserver.inventory import load_hosts
from pyinfra_mailserver.model import validate_server
from pyinfra_mailserver.render import build_manifest
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.services.dovecot.render import DOVECOT_CONFIG_VERSION, config_version, parse_settings

# Dovecot 2.3's variables, which 2.4 takes literally (a login of "%Lu", a home of "/var/mail/%d/%n")
OLD_VARIABLES = re.compile(r"%[LuUdnDh]\b|%L[udn]")
DEBIAN_12 = {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm", "PRETTY_NAME": "Debian 12"}
DEBIAN_13 = {"ID": "debian", "VERSION_ID": "13", "VERSION_CODENAME": "trixie", "PRETTY_NAME": "Debian 13"}


def test_release_rows_name_their_dovecot_generation() -> None:
    assert distro.get("debian", "bookworm").dovecot_generation == "2.3"
    assert distro.get("debian", "13").dovecot_generation == "2.4"
    assert distro.get("debian") is distro.TRIXIE  # the newest: what a new host runs
    assert {r.dovecot_generation for r in distro.RELEASES[distro.Family.RHEL]} == {"2.3"}
    assert (
        distro.EL9.postfix_compatibility_level == "2" and distro.EL9.postfix_tls_protocol_syntax == "exclude"
    )
    assert (
        distro.TRIXIE.postfix_compatibility_level == "3.6"
        and distro.TRIXIE.postfix_tls_protocol_syntax == "range"
    )
    assert distro.TRIXIE.mail_log == "" and distro.BOOKWORM.mail_log == "/var/log/mail.log"
    with pytest.raises(ValueError, match="not in the distro table"):
        distro.get("debian", "sid")


def test_every_2_4_release_runs_the_pinned_config_version() -> None:
    """The pin may not be newer than what a release ships (Dovecot refuses a config from the future)."""
    for row in distro.ALL_RELEASES:
        if row.dovecot_generation == "2.4":
            assert distro.version_tuple(row.dovecot_version) >= distro.version_tuple(DOVECOT_CONFIG_VERSION)


def test_host_picks_its_row_from_os_release_and_installed_dovecot() -> None:
    assert distro.for_host(DEBIAN_12).release == "bookworm"
    assert distro.for_host(DEBIAN_13).dovecot_generation == "2.4"
    # what is installed wins over what the release ships (a backport, a held package)
    assert distro.for_host(DEBIAN_12, "2.4.1-4 (7d8c0e5759)").dovecot_generation == "2.4"
    assert distro.for_host(DEBIAN_13, "2.3.19.1 (9b53102964)").dovecot_generation == "2.3"
    # host data overrides
    assert distro.for_host(DEBIAN_13, release="bookworm").release == "bookworm"
    assert distro.for_host(DEBIAN_12, dovecot="2.4").dovecot_generation == "2.4"
    ubuntu = {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.04", "PRETTY_NAME": "Ubuntu 24.04"}
    with pytest.raises(ValueError, match="mailserver_release") as e:
        distro.for_host(ubuntu)
    assert "mailserver_dovecot" in str(e.value)
    assert distro.for_host(ubuntu, "2.3.21").dovecot_generation == "2.3"
    with pytest.raises(ValueError, match="unsupported distribution"):
        distro.for_host({"ID": "plan9"})
    with pytest.raises(ValueError, match=r"2\.3 or newer"):
        distro.for_host(DEBIAN_13, dovecot="two")


def test_config_version_is_the_pin_or_the_older_host_version() -> None:
    server = validate_server({"identity": {"myhostname": "mx.example.org"}}, hostname="mx.example.org")
    assert config_version(Plan(server, distro.TRIXIE)) == DOVECOT_CONFIG_VERSION
    assert config_version(Plan(server, distro.TRIXIE.for_versions(dovecot="2.4.0"))) == "2.4.0"
    assert config_version(Plan(server, distro.TRIXIE.for_versions(dovecot="2.4.3"))) == DOVECOT_CONFIG_VERSION


def test_one_model_two_releases_differ_only_in_dovecot_and_the_saslauthd_unit(secrets_env: Path) -> None:
    """The operator's data does not change when the host moves from Debian 12 to 13: what the deploy
    writes differs only where Dovecot 2.4 spells things differently (and saslauthd's native unit)."""
    for h in load_hosts(EXAMPLE):
        old, new = h.manifest("bookworm"), h.manifest("trixie")
        old_files = {f.path: f.content for f in old.files}
        new_files = {f.path: f.content for f in new.files}
        differ = {p for p in old_files.keys() | new_files.keys() if old_files.get(p) != new_files.get(p)}
        assert all(
            p.startswith(("/etc/dovecot/", "/etc/systemd/system/saslauthd.service.d/")) for p in differ
        ), differ
        assert old.postconf == new.postconf and old.postconf_master == new.postconf_master
        assert old.packages == new.packages and old.users == new.users and old.ports == new.ports


def test_dovecot_2_4_spelling_of_the_virtual_host(secrets_env: Path) -> None:
    (h,) = load_hosts(EXAMPLE, ["mx2.example.org"])
    m = h.manifest("trixie")
    conf = m.file("/etc/dovecot/dovecot.conf").content
    settings = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert settings[0] == f"dovecot_config_version = {DOVECOT_CONFIG_VERSION}"  # must be the first setting
    assert settings[1] == "dovecot_storage_version = 2.4.0"
    dovecot_files = {f.path: f.content for f in m.files if f.path.startswith("/etc/dovecot/")}
    for path, text in dovecot_files.items():
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert not OLD_VARIABLES.search(body), path
        for gone in (
            "disable_plaintext_auth",
            "mail_location",
            "ssl_cert",
            "ssl_key",
            "plugin {",
            "default_fields",
            "args =",
            "$mail_plugins",
            "quota_rule",
            "ssl_prefer_server_ciphers",
        ):
            assert gone not in body, (path, gone)
    auth = m.file("/etc/dovecot/conf.d/10-auth.conf").content
    assert "auth_allow_cleartext = no" in auth and "auth_username_format = %{user | lower}" in auth
    pf = m.file("/etc/dovecot/conf.d/auth-passwdfile.conf.ext").content
    assert "passdb passwd-file {" in pf and "userdb passwd-file {" in pf
    assert "passwd_file_path = /etc/dovecot/users" in pf
    assert "home:default = /var/mail/vmail/%{user | domain}/%{user | username}" in pf
    mail = m.file("/etc/dovecot/conf.d/10-mail.conf").content
    assert "mail_driver = maildir" in mail and "mail_path = ~/Maildir" in mail
    assert "mail_plugins {\n  quota = yes\n}" in mail
    quota = m.file("/etc/dovecot/conf.d/90-quota.conf").content
    assert 'quota "User quota" {' in quota and "imap_quota = yes" in quota
    users = m.file("/etc/dovecot/users").content
    assert "::userdb_quota_storage_size=2G userdb_quota_storage_grace=214748364" in users
    assert "::userdb_quota_storage_size=500M userdb_quota_storage_grace=52428800" in users
    ssl = parse_settings(m.file("/etc/dovecot/conf.d/10-ssl.conf").content)
    assert ssl["ssl_server/cert_file"] == m.tls.cert_path and ssl["ssl_server/key_file"] == m.tls.key_path
    assert ssl["ssl"] == "required" and ssl["ssl_server/prefer_ciphers"] == "server"
    # drift and the real-program tests compare exactly what the rendered files set
    assert m.doveconf["auth_allow_cleartext"] == "no" and m.doveconf["listen"] == "* ::"
    assert "disable_plaintext_auth" not in m.doveconf and "dovecot_config_version" not in m.doveconf


def test_dovecot_2_4_spelling_of_system_users_with_mbox() -> None:
    data = {
        "identity": {"myhostname": "mx.example.org"},
        "sasl": {"backend": "saslauthd", "saslauthd": {"mechanism": "shadow"}},
        "local": {"mailbox": "mbox", "users": [{"name": "bob", "password": CRYPT}]},
        "services": {"system_passdb": "shadow"},
    }
    m = build_manifest(validate_server(data, hostname="mx.example.org"), distro.TRIXIE)
    mail = parse_settings(m.file("/etc/dovecot/conf.d/10-mail.conf").content)
    assert (mail["mail_driver"], mail["mail_path"]) == ("mbox", "~/mail")
    assert mail["mail_inbox_path"] == "/var/mail/%{user}"
    assert "passdb shadow {" in m.file("/etc/dovecot/conf.d/auth-system.conf.ext").content
    data["services"] = {"system_passdb": "pam"}
    m = build_manifest(validate_server(data, hostname="mx.example.org"), distro.TRIXIE)
    assert (
        "passdb pam {\n  service_name = dovecot\n}"
        in m.file("/etc/dovecot/conf.d/auth-system.conf.ext").content
    )


def test_saslauthd_native_unit_waits_for_the_pid_file_next_to_its_socket(secrets_env: Path) -> None:
    (h,) = load_hosts(EXAMPLE, ["mx1.example.org"])
    dropin = "/etc/systemd/system/saslauthd.service.d/pyinfra-mailserver.conf"
    m = h.manifest("trixie")
    assert "PIDFile=/var/spool/postfix/var/run/saslauthd/saslauthd.pid" in m.file(dropin).content
    assert "/etc/systemd/system/saslauthd.service.d" in {d.path for d in m.directories}
    sasl = next(s for s in m.services if s.name == "saslauthd")
    assert sasl.daemon_reload and not sasl.reload
    old = h.manifest("bookworm")  # a SysV-generated unit: no PIDFile to wait for
    assert "PIDFile" not in old.file(dropin).content


def test_saslauthd_socket_is_linked_where_testsaslauthd_looks(secrets_env: Path) -> None:
    (h,) = load_hosts(EXAMPLE, ["mx1.example.org"])
    dropin = "/etc/systemd/system/saslauthd.service.d/pyinfra-mailserver.conf"
    for release in ("bookworm", "trixie"):
        m = h.manifest(release)
        link = "ExecStartPost=/bin/ln -sfn /var/spool/postfix/var/run/saslauthd/mux /var/run/saslauthd/mux"
        assert link in m.file(dropin).content, release
        assert next(s for s in m.services if s.name == "saslauthd").daemon_reload


def test_a_quoted_dovecot_value_reads_as_doveconf_prints_it() -> None:
    from pyinfra_mailserver.services.dovecot.render import parse_settings

    text = 'quota_status_overquota = "552 5.2.2 Mailbox is full"\nssl = required\n'
    assert parse_settings(text) == {"quota_status_overquota": "552 5.2.2 Mailbox is full", "ssl": "required"}
