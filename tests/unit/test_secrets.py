"""Secrets: never in reprs, errors, logs or render output (unless asked); files 0600 in a 0700 dir."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from mailserver_testdata import ARGON, CRYPT, EXAMPLE, write_inventory

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.inventory import load_hosts
from pyinfra_mailserver.model import ModelError, validate_server


def _all_secret_values(directory: Path) -> list[str]:
    return [p.read_text().strip() for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]


def test_hashes_verify() -> None:
    assert secretstore.verify_password("correct horse", ARGON)
    assert secretstore.verify_password("correct horse", CRYPT)
    assert not secretstore.verify_password("wrong", ARGON)
    assert ARGON.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")
    assert CRYPT.startswith("$6$rounds=")


def test_secrets_never_in_repr_or_str(secrets_env: Path) -> None:
    values = _all_secret_values(secrets_env)
    for h in load_hosts(EXAMPLE):
        m = h.manifest()
        texts = [
            repr(h),
            str(h.server),
            repr(h.server),
            h.server.model_dump_json(),
            repr(m),
            str(m.users),
            repr(m.accounts),
        ]
        for text in texts:
            for v in values:
                assert v not in text


def test_secrets_never_in_errors(tmp_path: Path) -> None:
    plaintext = "MyVerySecretPassw0rd"
    data = {
        "virtual": {
            "domains": ["example.net"],
            "mailboxes": [
                {"address": "a@example.net", "password": "{PLAIN}" + plaintext},
                {"address": "b@example.net", "password": plaintext},
            ],
        },
        "sasl": {"backend": "dovecot"},
        "relay": {
            "relayhost": "[r.example.net]:587",
            "credentials": {"username": "u", "password": plaintext},
        },
    }
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org")
    assert plaintext not in str(exc.value) and plaintext not in repr(exc.value)
    # a bad hash is not echoed either
    with pytest.raises(ModelError) as exc:
        validate_server(
            {
                **data,
                "relay": {},
                "virtual": {
                    **data["virtual"],
                    "mailboxes": [{"address": "a@example.net", "password": ARGON.replace("p=1", "p=2")}],
                },
            },
            hostname="mx.example.org",
        )
    assert ARGON.split("$")[-1] not in str(exc.value)


def test_model_error_for_cross_section_problem_hides_values(tmp_path: Path) -> None:
    data = {
        "virtual": {
            "domains": ["example.net"],
            "mailboxes": [{"address": "a@example.org", "password": ARGON}],
        },
        "sasl": {"backend": "dovecot"},
    }
    with pytest.raises(ModelError) as exc:
        validate_server(data, hostname="mx.example.org")
    assert ARGON not in str(exc.value)


def test_secrets_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(secretstore.ENV_DIR, raising=False)
    inv = tmp_path / "repo" / "inventories" / "x.py"
    assert secretstore.resolve_dir(None, inv) == (tmp_path / "repo" / "secrets").resolve()
    monkeypatch.setenv(secretstore.ENV_DIR, str(tmp_path / "env"))
    assert secretstore.resolve_dir(None, inv) == tmp_path / "env"
    assert secretstore.resolve_dir(str(tmp_path / "host"), inv) == tmp_path / "host"


def test_host_data_secrets_dir_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secretstore.ENV_DIR, str(tmp_path / "elsewhere"))
    sdir = tmp_path / "host-secrets"
    secretstore.write(sdir, "a@example.net", ARGON)
    inv = write_inventory(
        tmp_path,
        {"mail": ["mx.example.org"]},
        {
            "mail": {
                "virtual": {
                    "domains": ["example.net"],
                    "mailboxes": [{"address": "a@example.net", "password": {"secret": "a@example.net"}}],
                    "aliases": {f"{r}@example.net": ["a@example.net"] for r in ("postmaster", "abuse")},
                },
                "sasl": {"backend": "dovecot"},
            }
        },
    )
    (inv.parent / "group_data" / "mail.py").write_text(
        (inv.parent / "group_data" / "mail.py").read_text() + f"mailserver_secrets_dir = {str(sdir)!r}\n"
    )
    (h,) = load_hosts(inv)
    assert h.secrets_dir == sdir


def test_write_and_generate_modes(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    refs = [
        secretstore.SecretRef("virtual.mailboxes[0].password", "a@example.net", "argon2id"),
        secretstore.SecretRef("local.users[0].password", "bob", "sha512-crypt"),
        secretstore.SecretRef("relay.credentials.password", "relay", "plain"),
        secretstore.SecretRef("virtual.mailboxes[1].password", "a@example.net", "argon2id"),
    ]
    results = secretstore.generate_missing(directory, refs)
    assert [new for _r, new in results] == [True, True, True]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for p in directory.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    pw = (directory / "a@example.net.password").read_text().strip()
    assert secretstore.verify_password(pw, secretstore.read(directory, "a@example.net"))
    assert secretstore.read(directory, "bob").startswith("$6$")
    assert not (directory / "relay.password").exists()
    # a second run keeps what exists
    assert [new for _r, new in secretstore.generate_missing(directory, refs)] == [False, False, False]


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", ".hidden", "x.password", ""])
def test_bad_secret_names_refused(name: str) -> None:
    with pytest.raises(secretstore.SecretError):
        secretstore.check_name(name)


def test_kind_follows_the_field() -> None:
    data = {
        "relay": {"credentials": {"password": {"secret": "r"}}},
        "local": {"users": [{"password": {"secret": "u"}}]},
        "virtual": {"mailboxes": [{"password": {"secret": "m"}}]},
    }
    kinds = {r.name: r.kind for r in secretstore.find_refs(data)}
    assert kinds == {"r": "plain", "u": "sha512-crypt", "m": "argon2id"}


def test_probe_mailbox_gets_a_cheap_hash_of_a_long_token(tmp_path: Path) -> None:
    """A probe mailbox's generated secret: a 32-character token, SHA512-CRYPT with 5000 rounds (the
    audit logs in with it several times per run); every other mailbox keeps ARGON2ID."""
    data = {
        "virtual": {
            "mailboxes": [
                {"address": "a@x.test", "password": {"secret": "a"}},
                {"address": "p@x.test", "password": {"secret": "p"}, "probe": True},
            ]
        }
    }
    refs = list(secretstore.find_refs(data))
    assert [(r.name, r.kind) for r in refs] == [("a", "argon2id"), ("p", "token")]
    secretstore.generate_missing(tmp_path / "s", refs)
    token = (tmp_path / "s" / "p.password").read_text().strip()
    hashed = (tmp_path / "s" / "p").read_text().strip()
    assert len(token) == 32
    assert hashed.startswith("{SHA512-CRYPT}$6$") and "rounds=" not in hashed  # 5000: crypt's default
    assert secretstore.verify_password(token, hashed)
    assert (tmp_path / "s" / "a").read_text().startswith("{ARGON2ID}")


def test_token_hash_refuses_a_short_password() -> None:
    with pytest.raises(secretstore.SecretError, match="generated tokens only"):
        secretstore.hash_password("short", "token")
