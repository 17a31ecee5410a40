"""Issue 6 (6): bad input is refused before any host is contacted, naming the field; connection-level
failures (unreachable host, wrong SSH key, unsupported distro) fail only their host, with a clear error.

Every inventory here points its host at 127.0.0.1 (a counting relay to a bare lab host, or a closed
port), so even a bug could only reach loopback and the lab. The relay's connection count proves that
invalid data is refused before connecting.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from safety_support import (
    MAILSERVER,
    CountingRelay,
    closed_loopback_port,
    deploy_json,
    pyinfra_exe,
    run_tool,
)

from pyinfra_mailserver import secretstore

pytestmark = pytest.mark.lab

PLAINTEXT = "hunter2-plaintext-safety"  # must never be echoed back
RELAY_LITERAL = "relay-literal-safety-pw"
ARGON = secretstore.hash_password("safety horse", "argon2id")

# A valid host: virtual mailbox hosting with one mailbox (literal hash, so no secrets directory needed).
BASE: dict[str, Any] = {
    "distro": "debian",
    "identity": {"myhostname": "mx1.safety.test", "inet_protocols": "ipv4"},
    "virtual": {
        "domains": ["mail.safety.test"],
        "mailboxes": [{"address": "alice@mail.safety.test", "password": ARGON}],
        "aliases": {f"{r}@mail.safety.test": ["alice@mail.safety.test"] for r in ("postmaster", "abuse")},
    },
    "sasl": {"backend": "dovecot"},
}
MISSING = object()  # the group data file defines no `mailserver` at all


def at(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """BASE with the value at `path` replaced (dicts on the way are created)."""
    data = copy.deepcopy(BASE)
    cur: Any = data
    for key in path[:-1]:
        cur = cur.setdefault(key, {}) if isinstance(key, str) else cur[key]
    cur[path[-1]] = value
    return data


CYRILLIC_A = "\u0430"  # looks like Latin "a"
# (id, mailserver data, field path the error must name, a word of the message)
CASES: list[tuple[str, Any, str, str]] = [
    # data of the wrong type as a whole
    ("data-is-string", "mx1.safety.test", "mailserver", "must be a dict"),
    ("data-is-none", None, "mailserver", "must be a dict"),
    ("data-is-list", [BASE], "mailserver", "must be a dict"),
    ("data-missing", MISSING, "mailserver", "no `mailserver` data"),
    ("unknown-section-typo", {**BASE, "identiti": {}}, "identiti", "unknown key"),
    ("section-wrong-type", at(("identity",), "mx1.safety.test"), "identity", "dictionary"),
    # distro
    ("distro-unknown", at(("distro",), "gentoo"), "distro", "debian"),
    # identity
    ("hostname-empty", at(("identity", "myhostname"), ""), "identity.myhostname", "empty"),
    (
        "hostname-cyrillic-lookalike",
        at(("identity", "myhostname"), f"mx1.s{CYRILLIC_A}fety.test"),
        "identity.myhostname",
        "non-ASCII",
    ),
    (
        "hostname-oversized",
        at(("identity", "myhostname"), ("a" * 60 + ".") * 5 + "test"),
        "identity.myhostname",
        "at most 253",
    ),
    ("inet-protocols-unknown", at(("identity", "inet_protocols"), "ipv5"), "identity.inet_protocols", "ipv4"),
    (
        "mynetworks-open-relay",
        at(("identity", "mynetworks"), ["0.0.0.0/0"]),
        "identity.mynetworks[0]",
        "open relay",
    ),
    (
        "message-size-not-a-number",
        at(("identity", "message_size_limit"), "10M"),
        "identity.message_size_limit",
        "integer",
    ),
    (
        "message-size-oversized",
        at(("identity", "message_size_limit"), 10**30),
        "identity.message_size_limit",
        "less than",
    ),
    (
        "banner-oversized",
        at(("identity", "smtpd_banner"), "$myhostname " + "x" * 500),
        "identity.smtpd_banner",
        "200 characters",
    ),
    (
        "mydestination-empty-string",
        at(("identity", "mydestination"), [""]),
        "identity.mydestination",
        "empty",
    ),
    # relay
    (
        "relayhost-unparsable",
        at(("relay",), {"relayhost": "[relay.safety.test:587"}),
        "relay.relayhost",
        "parse",
    ),
    (
        "relay-literal-password",
        at(
            ("relay",),
            {
                "relayhost": "[relay.safety.test]:587",
                "credentials": {"username": "u", "password": RELAY_LITERAL},
            },
        ),
        "relay.credentials.password",
        "literal credential",
    ),
    (
        "relay-username-oversized",
        at(
            ("relay",),
            {
                "relayhost": "[relay.safety.test]:587",
                "credentials": {"username": "u" * 1000, "password": {"secret": "relay"}},
            },
        ),
        "relay.credentials.username",
        "at most 256",
    ),
    ("transport-empty-key", at(("relay", "transport"), {"": "smtp:[10.0.0.1]"}), "relay.transport", "empty"),
    # aliases
    ("alias-targets-not-a-list", at(("aliases",), {"postmaster": "root"}), "aliases.postmaster", "list"),
    ("alias-target-empty", at(("aliases",), {"postmaster": [""]}), "aliases", "neither"),
    # virtual
    (
        "virtual-domain-fullwidth-dot",
        at(("virtual", "domains"), ["mail\uff0esafety.test"]),
        "virtual.domains[0]",
        "non-ASCII",
    ),
    (
        "virtual-domain-zero-width-space",
        at(("virtual", "domains"), ["mail\u200b.safety.test"]),
        "virtual.domains[0]",
        "non-ASCII",
    ),
    ("virtual-domain-yaml-no", at(("virtual", "domains"), [False]), "virtual.domains[0]", "string"),
    (
        "mailbox-address-cyrillic",
        at(("virtual", "mailboxes", 0, "address"), f"alice@mail.s{CYRILLIC_A}fety.test"),
        "virtual.mailboxes[0].address",
        "non-ASCII",
    ),
    (
        "mailbox-plaintext-password",
        at(("virtual", "mailboxes", 0, "password"), "{PLAIN}" + PLAINTEXT),
        "virtual.mailboxes[0].password",
        "plaintext",
    ),
    (
        "mailbox-quota-oversized",
        at(("virtual", "mailboxes", 0, "quota"), "99999999999G"),
        "virtual.mailboxes[0].quota",
        "size",
    ),
    ("vmail-uid-oversized", at(("virtual", "vmail"), {"uid": 10**12}), "virtual.vmail.uid", "65000"),
    (
        "vmail-base-dir-shared",
        at(("virtual", "vmail"), {"base_dir": "/var/mail"}),
        "virtual.vmail.base_dir",
        "dedicated",
    ),
    # local users
    (
        "local-user-reserved",
        at(("local",), {"users": [{"name": "root", "password": ARGON}]}),
        "local.users[0].name",
        "reserved",
    ),
    ("local-mailbox-format", at(("local", "mailbox"), "mbx"), "local.mailbox", "maildir"),
    # sasl, tls, services
    ("sasl-backend-unknown", at(("sasl", "backend"), "ldap"), "sasl.backend", "saslauthd"),
    (
        "tls-cert-relative-path",
        at(("tls",), {"mode": "files", "cert": "cert.pem", "key": "/etc/k.pem"}),
        "tls.cert",
        "absolute",
    ),
    ("tls-min-protocol-old", at(("tls", "min_protocol"), "TLSv1.0"), "tls.min_protocol", "TLSv1.2"),
    ("port-not-a-number", at(("services", "smtp"), {"port": "twenty-five"}), "services.smtp.port", "integer"),
    (
        "port-out-of-range",
        at(("services", "submission"), {"port": 70000}),
        "services.submission.port",
        "65535",
    ),
    (
        "enabled-not-a-bool",
        at(("services", "imap"), {"enabled": "maybe"}),
        "services.imap.enabled",
        "boolean",
    ),
    (
        "dovecot-listen-garbage",
        at(("services", "dovecot_listen"), ["not an address!"]),
        "services.dovecot_listen",
        "address",
    ),
    # header_checks, postfix_extra
    (
        "header-pattern-empty",
        at(("header_checks",), [{"pattern": "", "action": "WARN"}]),
        "header_checks[0].pattern",
        "/regex/",
    ),
    (
        "header-action-unknown",
        at(("header_checks",), [{"pattern": "/x/", "action": "EXPLODE"}]),
        "header_checks[0].action",
        "WARN",
    ),
    (
        "postfix-extra-managed",
        at(("postfix_extra",), {"smtpd_tls_auth_only": "no"}),
        "postfix_extra['smtpd_tls_auth_only']",
        "managed",
    ),
    ("postfix-extra-multiline", at(("postfix_extra",), {"foo_bar": "a\nb"}), "postfix_extra", "one line"),
]
NEVER_ECHOED = (PLAINTEXT, RELAY_LITERAL, ARGON)


def write_inventory(root: Path, hosts: dict[str, tuple[dict[str, Any], Any]]) -> Path:
    """One group per host (`g_<n>`), its host data, and group_data/g_<n>.py holding its mailserver data."""
    (root / "group_data").mkdir(parents=True, exist_ok=True)
    lines = ['"""safety: generated inventory."""']
    for i, (name, (host_data, data)) in enumerate(hosts.items()):
        lines.append(f"g_{i} = [({name!r}, {host_data!r})]")
        src = "other = 1\n" if data is MISSING else f"mailserver = {data!r}\n"
        (root / "group_data" / f"g_{i}.py").write_text(src)
    inv = root / "inventory.py"
    inv.write_text("\n".join(lines) + "\n")
    return inv


def ssh_data(lab: Any, port: int, key: str | None = None, **more: Any) -> dict[str, Any]:
    """SSH settings that reach 127.0.0.1:port only, with the lab key (or `key`)."""
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": port,
        "ssh_user": "root",
        "ssh_key": key or str(lab.key_path),
        "ssh_strict_host_key_checking": "no",
        "ssh_known_hosts_file": "/dev/null",
        "ssh_look_for_keys": False,
        "ssh_allow_agent": False,
        "ssh_connect_timeout": 10,
        **more,
    }


@pytest.fixture(scope="module")
def relay(bare_host: Any) -> Iterator[CountingRelay]:
    r = CountingRelay(bare_host.ip)
    yield r
    r.close()


@pytest.fixture(scope="module")
def bad_runs(lab: Any, relay: CountingRelay, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each case deployed on its own (`mailserver deploy --json`), with the relay's connection count."""
    results: dict[str, Any] = {}
    for case_id, data, _, _ in CASES:
        root = tmp_path_factory.mktemp(f"bad-{case_id}")
        secrets = root / "secrets"
        inv = write_inventory(
            root, {"mx1.safety.test": (ssh_data(lab, relay.port, mailserver_secrets_dir=str(secrets)), data)}
        )
        before = relay.count
        code, report, stderr = deploy_json(inv, lab.env)
        results[case_id] = {
            "exit": code,
            "report": report,
            "stderr": stderr,
            "connections": relay.count - before,
        }
    return results


@pytest.mark.parametrize(
    ("case_id", "field", "word"), [(c[0], c[2], c[3]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_naming_the_field(
    bad_runs: dict[str, Any], case_id: str, field: str, word: str
) -> None:
    run = bad_runs[case_id]
    report = run["report"]
    assert report, f"no JSON report (exit {run['exit']}):\n{run['stderr'][-3000:]}"
    [host] = report["hosts"]
    assert run["exit"] == 2 and report["success"] is False and host["success"] is False
    error = host["error"] or ""
    assert f"{field}" in error, error
    assert word in error, error
    assert host["operations"] == [] and host["changed"] == 0, host["operations"]
    everything = json.dumps(report) + run["stderr"]
    assert not [s for s in NEVER_ECHOED if s in everything], "a secret was echoed"


def test_bad_input_is_refused_before_connecting(bad_runs: dict[str, Any]) -> None:
    """No case made even a TCP connection to the host: data is checked before pyinfra connects."""
    assert len(CASES) >= 30
    connected = {k: v["connections"] for k, v in bad_runs.items() if v["connections"]}
    assert connected == {}, f"cases that connected before refusing: {sorted(connected)}"


def test_pyinfra_main_job_refuses_bad_input(lab: Any, relay: CountingRelay, tmp_path: Path) -> None:
    """The `pyinfra INVENTORY deploys/deploy_mailserver.py` path refuses too, naming the field, before
    connecting (the repository's config.py checks the data as pyinfra is about to connect)."""
    data = at(("virtual", "domains"), [f"m{CYRILLIC_A}il.safety.test"])
    inv = write_inventory(tmp_path, {"mx1.safety.test": (ssh_data(lab, relay.port), data)})
    before = relay.count
    r = run_tool([pyinfra_exe(), "-y", str(inv), "deploys/deploy_mailserver.py"], lab.env)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "virtual.domains[0]" in out and "non-ASCII" in out, out[-3000:]
    assert "not connecting, the data is invalid" in out, out[-3000:]
    assert relay.count == before, "pyinfra connected to a host whose data is invalid"
    assert "Starting operation" not in out and "[mx1.safety.test] Success" not in out, out[-3000:]


# -- connection-level failures in one run, next to a good host ------------------------------------------


def test_connection_failures_fail_only_their_host(
    lab: Any, bare_host: Any, relay: CountingRelay, safe_host: Any, tmp_path: Path
) -> None:
    """One `mailserver deploy` over: the deployed safety host (must succeed, unaffected), a host on a
    closed loopback port, a host with a wrong SSH key, a host whose os-release is not supported, and a
    host with invalid data. Each failure names its cause; the good host's deploy succeeds."""
    wrong_key = tmp_path / "wrong_key"
    r = run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], lab.env)
    assert r.returncode == 0, r.stderr
    bare_host.check(
        'rm -f /etc/os-release && printf \'ID=plan9\\nNAME="Plan 9"\\n'
        'PRETTY_NAME="Plan 9 from Bell Labs"\\n\' > /etc/os-release'
    )
    good_data = safe_host.dep.fqdn
    valid = copy.deepcopy(BASE)
    del valid["distro"]  # the family comes from the host's os-release
    dep_inv = safe_host.dep.inventory
    good_host_data = _inventory_host_data(dep_inv, good_data)
    hosts = {
        good_data: (good_host_data, _group_mailserver(safe_host)),
        "unreachable.safety.test": (ssh_data(lab, closed_loopback_port()), valid),
        "wrongkey.safety.test": (ssh_data(lab, relay.port, key=str(wrong_key)), valid),
        "plan9.safety.test": (ssh_data(lab, relay.port), valid),
        "baddata.safety.test": (ssh_data(lab, relay.port), at(("services", "smtp"), {"port": 0})),
    }
    inv = write_inventory(tmp_path / "inv", hosts)
    code, report, stderr = deploy_json(inv, lab.env)
    assert report, f"no JSON report (exit {code}):\n{stderr[-4000:]}"
    by = {h["host"]: h for h in report["hosts"]}
    log = [*report.get("errors", []), *stderr.splitlines()]
    # a host's cause: its JSON error, or pyinfra's log lines about it ("[name] Could not connect ...")
    text = {n: "\n".join([h.get("error") or "", *(x for x in log if f"[{n}]" in x)]) for n, h in by.items()}
    assert code == 2 and not report["success"]  # invalid data and unreachable hosts: exit 2
    assert by[good_data]["success"], f"good host affected: {by[good_data]}\n{stderr[-4000:]}"
    assert by[good_data]["changed"] == 0, [o for o in by[good_data]["operations"] if o["changed"]]
    for name in (
        "unreachable.safety.test",
        "wrongkey.safety.test",
        "plan9.safety.test",
        "baddata.safety.test",
    ):
        assert name in by and not by[name]["success"], (name, by.get(name))
        assert by[name]["changed"] == 0
    assert "connect" in text["unreachable.safety.test"].lower(), text
    assert "authentication" in text["wrongkey.safety.test"].lower(), text
    assert "unsupported distribution" in text["plan9.safety.test"] and "Plan 9" in text["plan9.safety.test"]
    assert "services.smtp.port" in text["baddata.safety.test"], text


def _inventory_host_data(inventory: Path, name: str) -> dict[str, Any]:
    """The host data of `name` in an e2e inventory file (`group = [(name, data)]`)."""
    namespace: dict[str, Any] = {}
    exec(compile(inventory.read_text(), str(inventory), "exec"), namespace)
    for value in namespace.values():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, tuple) and item[0] == name:
                    return dict(item[1])
    raise AssertionError(f"{name} not in {inventory}")


def _group_mailserver(safe_host: Any) -> dict[str, Any]:
    import runpy

    return dict(runpy.run_path(str(safe_host.dep.group_file))["mailserver"])


def test_deploy_of_only_unreachable_hosts_is_a_clean_error(lab: Any, tmp_path: Path) -> None:
    """Every host unreachable: a per-host error and a non-zero exit, not a traceback."""
    valid = copy.deepcopy(BASE)
    port = closed_loopback_port()
    inv = write_inventory(tmp_path, {"unreachable.safety.test": (ssh_data(lab, port), valid)})
    r = run_tool([MAILSERVER, "deploy", str(inv), "--json"], lab.env)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    report = json.loads(r.stdout)
    [host] = report["hosts"]
    assert not host["success"] and "connect" in (host["error"] or "").lower(), host
