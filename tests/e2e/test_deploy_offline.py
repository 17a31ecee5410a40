"""Deploy pieces that need no host: snapshot parsing, the controller-side CA, verification wording, CLI."""

from __future__ import annotations

import datetime as dt
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from pyinfra_mailserver import distro, pki
from pyinfra_mailserver.engine import shell
from pyinfra_mailserver.engine.changes import diff, sha256_text
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.facts import (
    FileState,
    MailHostSnapshot,
    Snapshot,
    SnapshotSpec,
    parse_accounts,
    parse_packages,
    parse_paths,
    parse_units,
)
from pyinfra_mailserver.manifest import (
    ManagedFile,
    Manifest,
    Port,
    PostfixMap,
    Service,
    TlsPlan,
)

SHA = "a" * 64


def test_managed_paths_parses_stat_and_hashes_in_one_output() -> None:
    out = [
        "S|regular file|root|dovecot|640|1700000000|/etc/dovecot/users",
        "S|directory|vmail|vmail|2750|1700000001|/var/mail/vmail",
        f"{SHA}  /etc/dovecot/users",
    ]
    got = parse_paths(out)
    assert got["/etc/dovecot/users"].sha256 == SHA
    assert got["/etc/dovecot/users"].mode_matches("640")
    assert got["/var/mail/vmail"].kind == "directory" and got["/var/mail/vmail"].sha256 is None
    assert not got["/var/mail/vmail"].mode_matches("750")  # setgid bit counts
    spec = SnapshotSpec("debian", paths=("/etc/dovecot/users", "/var/mail/vmail"))
    command = MailHostSnapshot().command(spec)
    script = shell.script("snapshot")
    assert script.count("stat -c") == 1 and "sha256sum" in script  # one command for every path
    assert "/etc/dovecot/users" in command and "/var/mail/vmail" in command


def test_accounts_fact_keeps_only_hash_digests() -> None:
    out = [
        "bob:x:1000:1000:Bob:/home/bob:/bin/bash",
        "postfix:x:102:104::/var/spool/postfix:/usr/sbin/nologin",
        "sasl:x:45:postfix",
        "bob:x:1000:",
        f"H:bob:{SHA}  -",
    ]
    got = parse_accounts(out)
    assert got.users["postfix"]["groups"] == ["sasl"]
    assert got.users["bob"]["password_sha256"] == SHA
    assert got.groups["sasl"]["gid"] == 45


def test_accounts_command_on_this_machine() -> None:
    """The real command (getent, sha256sum) as the host runs it: passwd and group lines told apart,
    the shadow hash only as its digest."""
    import hashlib
    import subprocess

    spec = SnapshotSpec("debian", users=("root", "nosuchuser"), groups=("root", "nosuchgroup"))
    out = subprocess.run(
        ["sh", "-c", MailHostSnapshot().command(spec)], capture_output=True, text=True, check=True
    ).stdout
    got = MailHostSnapshot().process(out.splitlines()).accounts
    assert set(got.users) == {"root"} and set(got.groups) == {"root"}
    assert got.users["root"]["uid"] == 0 and got.groups["root"]["gid"] == 0
    shadow = subprocess.run(["getent", "shadow", "root"], capture_output=True, text=True).stdout
    if shadow:  # readable only by root
        raw = shadow.split(":")[1]
        assert got.users["root"]["password_sha256"] == hashlib.sha256(raw.encode()).hexdigest()
        if len(raw) > 2:  # a real hash, not a lock marker such as "*" or "!"
            assert raw not in out


def test_package_and_unit_facts() -> None:
    assert parse_packages(["ii |postfix|3.7.11", "un |dovecot-core|"]) == {"postfix": "3.7.11"}
    assert parse_units(["postfix|failed|enabled"]) == {"postfix": ("failed", "enabled")}


def test_stage_paths_and_map_outputs() -> None:
    assert PostfixMap("/etc/aliases", "hash", "postalias").output == "/etc/aliases.db"
    assert PostfixMap("/etc/postfix/transport", "lmdb").output == "/etc/postfix/transport.lmdb"
    stage = Stage("/var/lib/x/stage")
    assert stage.pending("postfix") == "/var/lib/x/stage/pending-postfix"
    assert stage.directory.mode == "700" and stage.directory.owner == "root"


def test_ca_and_server_cert_are_made_once_private_and_valid(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    first = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test", "mail.lab.test"))
    again = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test", "mail.lab.test"))
    assert first.key_pem == again.key_pem and first.cert_pem == again.cert_pem  # reused, no new key
    for p in secrets.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    ca = x509.load_pem_x509_certificate(first.ca_pem.encode())
    leaf = x509.load_pem_x509_certificate(first.cert_pem.encode())
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mx1.lab.test", "mail.lab.test"}
    renamed = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test",))
    assert renamed.key_pem != first.key_pem and renamed.ca_pem == first.ca_pem  # same CA, new cert


def test_server_cert_lives_at_most_397_days_and_is_reissued_30_days_before_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apple's clients refuse server certificates valid for more than 398 days (825 before 2020)."""
    secrets = tmp_path / "secrets"
    first = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test",))
    leaf = x509.load_pem_x509_certificate(first.cert_pem.encode())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(days=397)
    real = pki._now()
    monkeypatch.setattr(pki, "_now", lambda: real + dt.timedelta(days=366))  # 31 days left: kept
    assert pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test",)).cert_pem == first.cert_pem
    monkeypatch.setattr(pki, "_now", lambda: real + dt.timedelta(days=368))  # 29 days left: re-issued
    again = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test",))
    assert again.cert_pem != first.cert_pem
    renewed = x509.load_pem_x509_certificate(again.cert_pem.encode())
    assert renewed.not_valid_after_utc > leaf.not_valid_after_utc


def test_a_server_cert_made_to_live_longer_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate from before the 397-day limit (825 days) is replaced at the next deploy."""
    secrets = tmp_path / "secrets"
    monkeypatch.setattr(pki, "CERT_LIFETIME", dt.timedelta(days=825))
    old = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test",))
    monkeypatch.setattr(pki, "CERT_LIFETIME", dt.timedelta(days=397))
    new = pki.ensure_server_cert(secrets, "mx1.lab.test", ("mx1.lab.test",))
    assert new.cert_pem != old.cert_pem
    leaf = x509.load_pem_x509_certificate(new.cert_pem.encode())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(days=397)


def _manifest() -> Manifest:
    d = distro.DEBIAN
    return Manifest(
        hostname="mx1.lab.test",
        distro=d,
        packages=("postfix",),
        debconf=(),
        groups=(),
        users=(),
        directories=(),
        maps=(),
        postconf={"smtpd_sasl_type": "dovecot", "smtpd_sasl_path": "private/auth"},
        postconf_master=(),
        files=(ManagedFile("/etc/dovecot/users", "x\n", group="dovecot", mode="640", secret=True),),
        services=(Service("postfix", "postfix"),),
        ports=(Port(25, "postfix", "smtp", "starttls"),),
        tls=TlsPlan("generate", "/etc/ssl/certs/c.pem", "/etc/ssl/private/k.key", None, ("mx1.lab.test",)),
        sockets=("/var/spool/postfix/private/auth",),
    )


def _host(
    ports: tuple[str, ...],
    units: dict[str, tuple[str, str]],
    files: dict[str, tuple[str, str, str]],
    sockets: frozenset[str] = frozenset(),
) -> Snapshot:
    """What the verification reads: files as path -> (owner, group, mode), with the right content."""
    paths = {p: FileState(p, "file", o, g, mode, 1, sha256_text("x\n")) for p, (o, g, mode) in files.items()}
    stage = Stage()
    paths[stage.dir] = FileState(stage.dir, "directory", "root", "root", "700", 1)
    return Snapshot(packages={"postfix": "3.10"}, paths=paths, units=units, ports=ports, sockets=sockets)


def test_verification_names_every_miss() -> None:
    seen = _host(
        ("0.0.0.0:22",),
        {"postfix": ("failed", "enabled")},
        {"/etc/dovecot/users": ("root", "root", "644"), "/etc/ssl/private/k.key": ("root", "root", "644")},
    )
    found = [c.detail for c in diff(_manifest(), seen, Stage())]
    text = "\n".join(found)
    assert "service postfix is not running (failed)" in text
    assert "nothing listens on port 25" in text
    assert "/etc/dovecot/users is root:root 644, expected root:dovecot 640" in text
    assert "TLS key /etc/ssl/private/k.key is readable by others" in text
    assert "auth socket /var/spool/postfix/private/auth is missing" in text
    ok = _host(
        ("0.0.0.0:25",),
        {"postfix": ("active", "enabled")},
        {"/etc/dovecot/users": ("root", "dovecot", "640"), "/etc/ssl/private/k.key": ("root", "root", "600")},
        frozenset({"/var/spool/postfix/private/auth"}),
    )
    assert diff(_manifest(), ok, Stage()) == []


def test_deploy_command_is_registered() -> None:
    exe = Path(sys.executable).parent / "mailserver"
    r = subprocess.run([str(exe), "deploy", "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "--json" in r.stdout
