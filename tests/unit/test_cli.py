"""The CLI: render, schema, passwd, secrets generate/set (through main(), as the console script does)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mailserver_testdata import EXAMPLE, REPO, write_inventory

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.cli import main


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_example_tree(secrets_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", str(EXAMPLE), "--out", str(out)]) == 0
    files = _files(out)
    for host in ("mx1.example.org", "mx2.example.org"):
        assert f"{host}/etc/postfix/main.cf" in files
        assert f"{host}/etc/dovecot/dovecot.conf" in files
    assert "mx2.example.org/etc/dovecot/users" in files
    # deterministic: a second render is byte-identical
    assert main(["render", str(EXAMPLE), "--out", str(tmp_path / "again")]) == 0
    assert _files(tmp_path / "again") == files
    # no secret value anywhere, secret files 0600
    out_text = "\n".join(files.values()) + capsys.readouterr().out
    for p in secrets_env.iterdir():
        if not p.name.startswith("."):  # .lock
            assert p.read_text().strip() not in out_text
    assert stat.S_IMODE((out / "mx2.example.org/etc/dovecot/users").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "mx1.example.org/etc/postfix/sasl_passwd").stat().st_mode) == 0o600


def test_render_single_host_with_secrets_and_rhel(secrets_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    assert (
        main(
            [
                "render",
                str(EXAMPLE),
                "--host",
                "mx1.example.org",
                "--distro",
                "rhel",
                "--out",
                str(out),
                "--include-secrets",
            ]
        )
        == 0
    )
    assert (out / "etc/sysconfig/saslauthd").is_file()
    relay = (secrets_env / "relay-example.org").read_text().strip()
    assert relay in (out / "etc/postfix/sasl_passwd").read_text()


def test_render_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_inventory(
        tmp_path,
        {"mail": ["mx.example.org"]},
        {"mail": {"identity": {"mynetworks": ["10.0.0.1/24"]}, "bogus": 1}},
    )
    assert main(["render", str(inv), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "identity.mynetworks[0]" in err and "bogus: unknown key" in err
    assert not (tmp_path / "o").exists()


def test_render_unknown_host(secrets_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLE), "--host", "nope.example.org", "--out", str(tmp_path)]) == 2
    assert "no such host" in capsys.readouterr().err


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object" and "identity" in schema["properties"]


def test_passwd_stdin_both_schemes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for scheme, prefix in (("argon2id", "{ARGON2ID}$argon2id$"), ("sha512-crypt", "$6$")):
        monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret word\n"))
        assert main(["passwd", "--scheme", scheme]) == 0
        hashed = capsys.readouterr().out.strip()
        assert hashed.startswith(prefix)
        assert secretstore.verify_password("s3cret word", hashed)


def test_passwd_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw-for-alice\n"))
    sdir = tmp_path / "secrets"
    assert main(["passwd", "--store", "alice@example.net", "--secrets-dir", str(sdir)]) == 0
    captured = capsys.readouterr()
    assert "pw-for-alice" not in captured.out + captured.err
    assert secretstore.verify_password("pw-for-alice", secretstore.read(sdir, "alice@example.net"))
    assert stat.S_IMODE((sdir / "alice@example.net").stat().st_mode) == 0o600


def test_passwd_refuses_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["passwd"]) == 2


def test_secrets_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("relay-pass\n"))
    assert main(["secrets", "set", "relay", "--secrets-dir", str(tmp_path / "s")]) == 0
    assert secretstore.read(tmp_path / "s", "relay") == "relay-pass"


def test_secrets_generate_then_render_on_clean_tree(tmp_path: Path) -> None:
    """A clean checkout: the console script generates the secrets, then renders (what scripts/demo does)."""
    env = {**os.environ, secretstore.ENV_DIR: str(tmp_path / "secrets")}
    exe = [sys.executable, "-m", "pyinfra_mailserver.cli"]
    r = subprocess.run(
        [*exe, "secrets", "generate", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "7 created" in r.stderr
    r = subprocess.run(
        [*exe, "render", str(EXAMPLE), "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/mx1.example.org/etc/postfix/main.cf").is_file()
    r = subprocess.run(
        [*exe, "secrets", "generate", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert "0 created, 7 already present" in r.stderr
