"""The model: the example and a minimal inventory validate; every kind of bad input is refused with a
message naming its field and a fix, all problems at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from mailserver_testdata import ARGON, CRYPT, EXAMPLE, write_inventory

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.inventory import load_hosts
from pyinfra_mailserver.model import MailServer, ModelError, validate_server


def test_example_inventory_validates(secrets_env: Path) -> None:
    hosts = {h.name: h for h in load_hosts(EXAMPLE)}
    assert set(hosts) == {"mx1.example.org", "mx2.example.org"}
    mx1, mx2 = hosts["mx1.example.org"].server, hosts["mx2.example.org"].server
    # myhostname defaults to the inventory host name; mydomain is derived from it
    assert mx1.identity.myhostname == "mx1.example.org" and mx1.identity.mydomain == "example.org"
    assert mx1.sasl is not None and mx1.sasl.backend == "saslauthd"
    assert mx2.sasl is not None and mx2.sasl.backend == "dovecot"
    assert mx2.virtual is not None and len(mx2.virtual.mailboxes) == 4
    assert [mb.address for mb in mx2.virtual.mailboxes if mb.probe] == ["probe@example.net"]
    assert "example_saslauthd" in hosts["mx1.example.org"].groups


def test_minimal_inventory_validates(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, {"mail": ["mx.minimal.test"]}, {"mail": {}})
    (h,) = load_hosts(inv)
    s = h.server
    assert s.identity.myhostname == "mx.minimal.test"
    # secure defaults
    assert s.tls.enabled and s.tls.auth_only and s.tls.min_protocol == "TLSv1.2"
    assert s.identity.mynetworks == ["127.0.0.0/8", "[::1]/128"]
    assert not s.services.smtp.auth
    # no SASL and no users: no client ports, no IMAP
    assert not s.services.submission.enabled and not s.services.imap.enabled


def test_host_without_fqdn_needs_myhostname() -> None:
    with pytest.raises(ModelError) as exc:
        validate_server({}, hostname="localhost")
    assert any(p.startswith("identity.myhostname:") for p in exc.value.problems)
    assert validate_server({"identity": {"myhostname": "mx.example.org"}}, hostname="localhost")


# ---------------------------------------------------------------------------------------------------------
# bad inputs: (id, data, expected field path prefix, word expected in the message)

VIRTUAL = {
    "domains": ["example.net"],
    "mailboxes": [{"address": "alice@example.net", "password": ARGON}],
    "aliases": {
        "postmaster@example.net": ["hostmaster@example.org"],
        "abuse@example.net": ["hostmaster@example.org"],
    },
}
SASL_DOVECOT = {"backend": "dovecot"}
SASLAUTHD = {
    "sasl": {"backend": "saslauthd"},
    "local": {"users": [{"name": "bob", "password": CRYPT}]},
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def virt(**changes: Any) -> dict[str, Any]:
    v = copy.deepcopy(VIRTUAL)
    v.update(changes)
    return {"virtual": v, "sasl": SASL_DOVECOT}


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "relay-secret-too-short",
        {
            "relay": {
                "relayhost": "[smtp.example.net]:587",
                "credentials": {"username": "u", "password": {"secret": "short"}},
            }
        },
        "relay.credentials.password",
        "8 characters",
    ),
    (
        "postfix-extra-overrides-managed",
        {"postfix_extra": {"smtpd_tls_auth_only": "no"}},
        "postfix_extra['smtpd_tls_auth_only']",
        "managed by the model",
    ),
    (
        "mailbox-smaller-than-message",
        {"identity": {"mailbox_size_limit": 1024000, "message_size_limit": 2048000}},
        "identity.mailbox_size_limit",
        "message_size_limit",
    ),
    (
        "hostname-unicode-lookalike",
        {"identity": {"myhostname": "mx1.exаmple.org"}},
        "identity.myhostname",
        "non-ASCII",
    ),
    ("hostname-empty", {"identity": {"myhostname": ""}}, "identity.myhostname", "empty"),
    (
        "hostname-label-too-long",
        {"identity": {"myhostname": "a" * 64 + ".example.org"}},
        "identity.myhostname",
        "at most 63",
    ),
    ("hostname-not-fqdn", {"identity": {"myhostname": "mailhost"}}, "identity.myhostname", "fully qualified"),
    ("hostname-underscore", {"identity": {"myhostname": "mx_1.example.org"}}, "identity.myhostname", "label"),
    ("domain-double-dot", {"identity": {"mydomain": "example..org"}}, "identity.mydomain", "empty label"),
    (
        "mydestination-bad",
        {"identity": {"mydestination": ["$myhostname", "exa mple.org"]}},
        "identity.mydestination",
        "label",
    ),
    (
        "cidr-host-bits",
        {"identity": {"mynetworks": ["10.0.0.1/24"]}},
        "identity.mynetworks[0]",
        "10.0.0.0/24",
    ),
    ("cidr-garbage", {"identity": {"mynetworks": ["10.0.0.0/33"]}}, "identity.mynetworks[0]", "CIDR"),
    ("open-relay", {"identity": {"mynetworks": ["0.0.0.0/0"]}}, "identity.mynetworks[0]", "open relay"),
    ("relayhost-unparsable", {"relay": {"relayhost": "[smtp.example.net:587"}}, "relay.relayhost", "parse"),
    ("relayhost-bad-port", {"relay": {"relayhost": "[smtp.example.net]:99999"}}, "relay.relayhost", "port"),
    ("relayhost-ip-no-brackets", {"relay": {"relayhost": "192.0.2.1:25"}}, "relay.relayhost", "brackets"),
    (
        "transport-unknown",
        {"relay": {"transport": {"example.com": "bogus:[10.0.0.1]"}}},
        "relay.transport",
        "unknown transport",
    ),
    (
        "duplicate-mailbox",
        virt(
            mailboxes=[
                {"address": "alice@example.net", "password": ARGON},
                {"address": "Alice@example.net", "password": ARGON},
            ]
        ),
        "virtual.mailboxes[1].address",
        "duplicates",
    ),
    (
        "mailbox-outside-domains",
        virt(mailboxes=[{"address": "alice@example.org", "password": ARGON}]),
        "virtual.mailboxes[0].address",
        "not in virtual.domains",
    ),
    (
        "virtual-alias-loop",
        virt(aliases={"a@example.net": ["b@example.net"], "b@example.net": ["a@example.net"]}),
        "virtual.aliases",
        "loop",
    ),
    (
        "virtual-alias-unknown-target",
        virt(aliases={"x@example.net": ["nobody@example.net"]}),
        "virtual.aliases['x@example.net']",
        "no mailbox",
    ),
    (
        "local-alias-loop",
        {"aliases": {"postmaster": ["root"], "a": ["b"], "b": ["a"]}},
        "aliases['a']",
        "loop",
    ),
    (
        "local-alias-unknown",
        {"aliases": {"postmaster": ["root"], "admins": ["nosuchuser"]}},
        "aliases['admins']",
        "nosuchuser",
    ),
    (
        "virtual-domain-in-mydestination",
        {
            **virt(domains=["example.org"], mailboxes=[]),
            "identity": {
                "myhostname": "mx.example.org",
                "mydestination": ["$myhostname", "localhost", "$mydomain"],
            },
            "local": {"users": [{"name": "bob", "password": CRYPT}]},
        },
        "virtual.domains[0]",
        "mydestination",
    ),
    (
        "saslauthd-socket-outside-chroot",
        with_(SASLAUTHD, sasl={"backend": "saslauthd", "saslauthd": {"socket_dir": "/run/saslauthd"}}),
        "sasl.saslauthd.socket_dir",
        "chroot",
    ),
    (
        "dovecot-socket-outside-chroot",
        {**virt(), "sasl": {"backend": "dovecot", "dovecot_socket": "/run/auth"}},
        "sasl.dovecot_socket",
        "chroot",
    ),
    ("tls-off-auth-on", {**virt(), "tls": {"enabled": False}}, "tls.enabled", "AUTH"),
    (
        "port-used-twice",
        {**virt(), "services": {"smtps": {"port": 587}}},
        "services.smtps.port",
        "already used",
    ),
    (
        "plain-password",
        virt(mailboxes=[{"address": "alice@example.net", "password": "{PLAIN}hunter2"}]),
        "virtual.mailboxes[0].password",
        "plaintext",
    ),
    (
        "bare-password",
        virt(mailboxes=[{"address": "alice@example.net", "password": "hunter2hunter2"}]),
        "virtual.mailboxes[0].password",
        "plaintext",
    ),
    (
        "weak-scheme",
        virt(mailboxes=[{"address": "alice@example.net", "password": "{MD5}abc"}]),
        "virtual.mailboxes[0].password",
        "refused",
    ),
    (
        "argon2-parallelism",
        virt(mailboxes=[{"address": "alice@example.net", "password": ARGON.replace(",p=1$", ",p=4$")}]),
        "virtual.mailboxes[0].password",
        "p=4",
    ),
    (
        "system-user-argon2",
        with_(SASLAUTHD, local={"users": [{"name": "bob", "password": ARGON}]}),
        "local.users[0].password",
        "crypt",
    ),
    (
        "relay-literal-password",
        {
            "relay": {
                "relayhost": "[smtp.example.net]:587",
                "credentials": {"username": "u", "password": "hunter2"},
            }
        },
        "relay.credentials.password",
        "literal",
    ),
    (
        "missing-secret",
        virt(mailboxes=[{"address": "alice@example.net", "password": {"secret": "nope"}}]),
        "virtual.mailboxes[0].password",
        "mailserver passwd --store nope",
    ),
    ("unknown-key", {"identity": {"myhostnme": "mx.example.org"}}, "identity.myhostnme", "unknown key"),
    ("unknown-top-key", {"virtul": {}}, "virtul", "unknown key"),
    ("submission-without-sasl", {"services": {"submission": {"enabled": True}}}, "sasl", "SMTP AUTH"),
    ("saslauthd-with-virtual", {**virt(), "sasl": {"backend": "saslauthd"}}, "sasl.backend", "dovecot"),
    ("tls-files-without-paths", {"tls": {"mode": "files"}}, "tls.cert", "certificate"),
    (
        "credentials-without-relayhost",
        {"relay": {"credentials": {"username": "u", "password": {"secret": "r"}}}},
        "relay.credentials",
        None,
    ),
    (
        "header-check-bad-regex",
        {"header_checks": [{"pattern": "/^Subject:(/", "action": "WARN"}]},
        "header_checks[0].pattern",
        "compile",
    ),
    (
        "header-check-bad-action",
        {"header_checks": [{"pattern": "/^Subject:/", "action": "EXPLODE"}]},
        "header_checks[0].action",
        "WARN",
    ),
    ("postfix-extra-bad-name", {"postfix_extra": {"Bad Name": "x"}}, "postfix_extra", "parameter name"),
    ("postfix-extra-multiline", {"postfix_extra": {"smtpd_milters": "a\nb"}}, "postfix_extra", "one line"),
    (
        "quota-bad",
        virt(mailboxes=[{"address": "alice@example.net", "password": ARGON, "quota": "lots"}]),
        "virtual.mailboxes[0].quota",
        "500M",
    ),
    (
        "address-unicode",
        virt(mailboxes=[{"address": "alicé@example.net", "password": ARGON}]),
        "virtual.mailboxes[0].address",
        "local part",
    ),
    ("no-postmaster", {"aliases": {"abuse": ["root"]}}, "aliases", "postmaster"),
    ("no-abuse", {"aliases": {"postmaster": ["root"]}}, "aliases", "RFC 2142"),
    (
        "hostname-two-trailing-dots",
        {"identity": {"myhostname": "mx.example.org.."}},
        "identity.myhostname",
        "empty label",
    ),
    (
        "interface-name",
        {"identity": {"inet_interfaces": ["eth0"]}},
        "identity.inet_interfaces",
        "interface names",
    ),
    (
        "dnsbl-site-garbage",
        {"smtpd": {"postscreen": {"dnsbl_sites": ["zen.spamhaus.org**3"]}}},
        "smtpd.postscreen.dnsbl_sites",
        "domain[=filter][*weight]",
    ),
    (
        "send-as-not-an-address",
        virt(mailboxes=[{"address": "alice@example.net", "password": ARGON, "send_as": ["the boss"]}]),
        "virtual.mailboxes[0].send_as",
        "send_as entry",
    ),
    (
        "probe-with-send-as",
        virt(
            mailboxes=[
                {
                    "address": "alice@example.net",
                    "password": ARGON,
                    "probe": True,
                    "send_as": ["x@example.net"],
                }
            ]
        ),
        "virtual.mailboxes[0].send_as",
        "probe",
    ),
    (
        "user-send-as-twice",
        {"local": {"users": [{"name": "bob", "password": CRYPT, "send_as": ["a@b.test", "A@b.test"]}]}},
        "local.users[0].send_as",
        "twice",
    ),
    (
        "virtual-domain-without-abuse",
        virt(aliases={"postmaster@example.net": ["alice@example.net"]}),
        "virtual.aliases",
        '"abuse@example.net"',
    ),
    (
        "alias-domain-without-postmaster",
        virt(alias_domains=["example.info"], aliases={"abuse@example.info": ["alice@example.net"]}),
        "virtual.aliases",
        "postmaster@example.info",
    ),
    (
        "two-probe-mailboxes",
        virt(
            mailboxes=[
                {"address": "p1@example.net", "password": ARGON, "probe": True},
                {"address": "p2@example.net", "password": ARGON, "probe": True},
            ]
        ),
        "virtual.mailboxes[1].probe",
        "only one probe mailbox",
    ),
]


@pytest.mark.parametrize(("data", "path", "word"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_the_field(
    data: dict[str, Any], path: str, word: str | None, tmp_path: Path
) -> None:
    directory = tmp_path / "secrets"
    secretstore.ensure_dir(directory)
    secretstore.write(directory, "r", "relay-password")
    secretstore.write(directory, "short", "abc")
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org", secrets_dir=directory)
    problems = exc.value.problems
    matching = [p for p in problems if p.startswith(path)]
    assert matching, f"no problem names {path!r}: {problems}"
    if word:
        assert any(word in p for p in matching), f"{word!r} not in {matching}"
    # every problem says where it is: `path: message`
    assert all(": " in p for p in problems)


def test_all_field_problems_are_listed_at_once() -> None:
    data = {
        "identity": {"myhostname": "bad_name.example.org", "mynetworks": ["10.0.0.1/8"]},
        "relay": {"relayhost": "[x"},
        "bogus": True,
    }
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org")
    paths = {p.split(":")[0] for p in exc.value.problems}
    assert {"identity.myhostname", "identity.mynetworks[0]", "relay.relayhost", "bogus"} <= paths


def test_all_cross_section_problems_are_listed_at_once() -> None:
    data = {
        **virt(
            mailboxes=[
                {"address": "a@example.org", "password": ARGON},
                {"address": "a@example.org", "password": ARGON},
            ]
        ),
        "tls": {"enabled": False},
        "services": {"smtps": {"port": 25}},
    }
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org")
    text = "\n".join(exc.value.problems)
    for path in (
        "virtual.mailboxes[0].address",
        "virtual.mailboxes[1].address",
        "tls.enabled",
        "services.smtps.port",
    ):
        assert path in text


def test_secret_file_must_not_be_readable_by_others(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    secretstore.write(directory, "alice@example.net", ARGON)
    (directory / "alice@example.net").chmod(0o644)
    data = virt(mailboxes=[{"address": "alice@example.net", "password": {"secret": "alice@example.net"}}])
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org", secrets_dir=directory)
    assert "chmod 600" in str(exc.value)


def test_secret_reference_resolves_and_is_remembered(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    secretstore.write(directory, "alice@example.net", ARGON)
    data = virt(mailboxes=[{"address": "alice@example.net", "password": {"secret": "alice@example.net"}}])
    s = validate_server(data, hostname="mx.example.org", secrets_dir=directory)
    assert isinstance(s, MailServer)
    assert s.virtual is not None
    mb = s.virtual.mailboxes[0]
    assert mb.password.get_secret_value() == ARGON
    assert mb.secret_name == "alice@example.net"


def test_bare_hashes_are_normalised() -> None:
    bare = ARGON.removeprefix("{ARGON2ID}")
    s = validate_server(
        virt(mailboxes=[{"address": "alice@example.net", "password": bare}]), hostname="mx.example.org"
    )
    assert s.virtual.mailboxes[0].password.get_secret_value() == ARGON
    s = validate_server(
        with_(SASLAUTHD, local={"users": [{"name": "bob", "password": "{SHA512-CRYPT}" + CRYPT}]}),
        hostname="mx.example.org",
    )
    assert s.local.users[0].password.get_secret_value() == CRYPT


def test_schema_has_every_section() -> None:
    schema = MailServer.model_json_schema()
    assert schema["additionalProperties"] is False
    for key in (
        "identity",
        "smtpd",
        "relay",
        "local",
        "aliases",
        "virtual",
        "sasl",
        "tls",
        "services",
        "header_checks",
        "postfix_extra",
        "distro",
    ):
        assert key in schema["properties"]


def test_field_and_cross_section_problems_are_listed_together() -> None:
    data = {
        "identity": {"mynetworks": ["10.0.0.1/8"]},  # field problem
        "tls": {"enabled": "maybe"},  # field problem: the TLS checks are skipped, not guessed
        **virt(
            mailboxes=[
                {"address": "a@example.net", "password": ARGON},
                {"address": "a@example.net", "password": ARGON},
            ]
        ),  # cross problem
        "services": {"smtps": {"port": 25}},  # cross problem
    }
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org")
    paths = [p.split(":")[0] for p in exc.value.problems]
    assert paths == [
        "identity.mynetworks[0]",
        "tls.enabled",
        "virtual.mailboxes[1].address",
        "services.smtps.port",
    ]


def test_pydantic_type_errors_say_what_to_do() -> None:
    """pydantic's own messages say what is wrong ("Input should be ..."); each line also says the fix."""
    data = {
        "identity": {"myhostname": "mx.example.org", "message_size_limit": "10M"},
        "smtpd": {"forbid_bare_newline": "yes", "forbid_unauth_pipelining": "maybe"},
        "tls": {"extra_names": "mx2.example.org"},
        "virtual": "all of them",
        "distro": "gentoo",
    }
    with pytest.raises(ModelError) as e:
        validate_server(data)
    lines = {p.split(":", 1)[0]: p for p in e.value.problems}
    assert set(lines) == {
        "identity.message_size_limit",
        "smtpd.forbid_bare_newline",
        "smtpd.forbid_unauth_pipelining",
        "tls.extra_names",
        "virtual",
        "distro",
    }, e.value.problems
    assert all(" — " in p for p in e.value.problems), e.value.problems
    assert "'normalize', 'reject' or 'no' — set one of those" in lines["smtpd.forbid_bare_newline"]
    assert "write true or false" in lines["smtpd.forbid_unauth_pipelining"]
    assert "without quotes or a suffix" in lines["identity.message_size_limit"]


def test_one_trailing_dot_is_the_dns_root() -> None:
    server = validate_server({"identity": {"myhostname": "mx.example.org."}}, hostname="mx.example.org")
    assert server.identity.myhostname == "mx.example.org"


def test_a_host_data_key_nothing_reads_is_refused(tmp_path: Path) -> None:
    """A typo such as `mailserver_secret_dir` would leave its setting silently ignored."""
    from mailserver_testdata import write_inventory

    from pyinfra_mailserver.inventory import load_hosts

    inv = write_inventory(tmp_path, {"mail": ["mx.example.org"]}, {"mail": virt()})
    group = inv.parent / "group_data" / "mail.py"
    group.write_text(group.read_text() + "mailserver_secret_dir = '/srv/secrets'\n")
    with pytest.raises(ModelError) as exc:
        load_hosts(inv)
    assert [p for p in exc.value.problems if "mailserver_secret_dir" in p and "mailserver_secrets_dir?" in p]
