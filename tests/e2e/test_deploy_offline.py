"""Deploy pieces that need no host: fact parsing, the controller-side CA, verification wording, CLI."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from pyinfra_mailserver import distro, pki
from pyinfra_mailserver.deploys.init import UnitStates
from pyinfra_mailserver.deploys.ops import map_output
from pyinfra_mailserver.deploys.verify import misses
from pyinfra_mailserver.facts import Accounts, DebPackageStatus, ManagedPaths
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
    got = ManagedPaths().process(out)
    assert got["/etc/dovecot/users"].sha256 == SHA
    assert got["/etc/dovecot/users"].mode_matches("640")
    assert got["/var/mail/vmail"].kind == "directory" and got["/var/mail/vmail"].sha256 is None
    assert not got["/var/mail/vmail"].mode_matches("750")  # setgid bit counts
    command = ManagedPaths().command(paths=("/etc/dovecot/users", "/var/mail/vmail"))
    assert command.count("stat -c") == 1 and "sha256sum" in command  # one command for every path


def test_accounts_fact_keeps_only_hash_digests() -> None:
    out = [
        "bob:x:1000:1000:Bob:/home/bob:/bin/bash",
        "postfix:x:102:104::/var/spool/postfix:/usr/sbin/nologin",
        "sasl:x:45:postfix",
        "bob:x:1000:",
        f"H:bob:{SHA}  -",
    ]
    got = Accounts().process(out)
    assert got.users["postfix"]["groups"] == ["sasl"]
    assert got.users["bob"]["password_sha256"] == SHA
    assert got.groups["sasl"]["gid"] == 45


def test_accounts_command_on_this_machine() -> None:
    """The real command (getent, sha256sum) as the host runs it: passwd and group lines told apart,
    the shadow hash only as its digest."""
    import hashlib
    import subprocess

    out = subprocess.run(
        ["sh", "-c", Accounts().command(("root", "nosuchuser"), ("root", "nosuchgroup"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = Accounts().process(out.splitlines())
    assert set(got.users) == {"root"} and set(got.groups) == {"root"}
    assert got.users["root"]["uid"] == 0 and got.groups["root"]["gid"] == 0
    shadow = subprocess.run(["getent", "shadow", "root"], capture_output=True, text=True).stdout
    if shadow:  # readable only by root
        raw = shadow.split(":")[1]
        assert got.users["root"]["password_sha256"] == hashlib.sha256(raw.encode()).hexdigest()
        if len(raw) > 2:  # a real hash, not a lock marker such as "*" or "!"
            assert raw not in out


def test_package_and_unit_facts() -> None:
    assert DebPackageStatus().process(["ii |postfix|3.7.11", "un |dovecot-core|"]) == {"postfix": "3.7.11"}
    assert UnitStates().process(["postfix|failed|enabled"]) == {"postfix": ("failed", "enabled")}


def test_stage_paths_and_map_outputs() -> None:
    assert map_output(PostfixMap("/etc/aliases", "hash", "postalias")) == "/etc/aliases.db"
    assert map_output(PostfixMap("/etc/postfix/transport", "lmdb")) == "/etc/postfix/transport.lmdb"


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
        postconf={},
        postconf_master=(),
        files=(ManagedFile("/etc/dovecot/users", "x\n", group="dovecot", mode="640", secret=True),),
        services=(Service("postfix", "postfix"),),
        ports=(Port(25, "postfix", "smtp", "starttls"),),
        tls=TlsPlan("generate", "/etc/ssl/certs/c.pem", "/etc/ssl/private/k.key", None, ("mx1.lab.test",)),
        sockets=("/var/spool/postfix/private/auth",),
    )


def test_verification_names_every_miss() -> None:
    seen = {
        "pkg": ["ii |postfix"],
        "unit": ["postfix|failed|enabled"],
        "port": ["0.0.0.0:22"],
        "file": ["/etc/dovecot/users|root|root|644", "/etc/ssl/private/k.key|root|root|644"],
    }
    found = misses(_manifest(), seen)
    text = "\n".join(found)
    assert "service postfix is not running (failed)" in text
    assert "nothing listens on port 25" in text
    assert "/etc/dovecot/users is root:root 644, expected root:dovecot 640" in text
    assert "TLS key /etc/ssl/private/k.key is readable by others" in text
    assert "auth socket /var/spool/postfix/private/auth is missing" in text
    ok = {
        "pkg": ["ii |postfix"],
        "unit": ["postfix|active|enabled"],
        "port": ["0.0.0.0:25"],
        "file": ["/etc/dovecot/users|root|dovecot|640", "/etc/ssl/private/k.key|root|root|600"],
        "socket": ["/var/spool/postfix/private/auth"],
    }
    assert misses(_manifest(), ok) == []


def test_deploy_command_is_registered() -> None:
    exe = Path(sys.executable).parent / "mailserver"
    r = subprocess.run([str(exe), "deploy", "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "--json" in r.stdout
