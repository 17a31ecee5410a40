"""The one-command host snapshot splits back into the single facts' answers, and a service's changed
files travel in one tar that keeps each file's owner, group and mode."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from pyinfra_mailserver.engine.operations import bundle
from pyinfra_mailserver.engine.script import MARK
from pyinfra_mailserver.facts import MailHostSnapshot, SnapshotSpec, parse_os_release
from pyinfra_mailserver.manifest import ManagedFile

SECTION = MARK + " "


def framed(lines: list[str]) -> list[str]:
    """The snapshot script's output: each section closed by its status line."""
    out: list[str] = []
    for line in lines:
        if line.startswith(SECTION) and out:
            out.append(f"{MARK}-rc 0")
        out.append(line)
    return [*out, f"{MARK}-rc 0"]


def test_snapshot_sections_are_parsed_by_their_own_facts() -> None:
    output = [
        f"{SECTION}packages",
        "ii |postfix|3.7.11-0+deb12u1",
        "un |dovecot-core|",
        f"{SECTION}accounts",
        "vmail:x:5000:5000::/var/mail/vmail:/usr/sbin/nologin",
        "vmail:x:5000:",
        "sasl:x:45:postfix",
        f"{SECTION}paths",
        "S|regular file|root|root|644|1700000000|/etc/aliases",
        "a" * 64 + "  /etc/aliases",
        "S|directory|vmail|vmail|750|1700000000|/var/mail/vmail",
        f"{SECTION}units",
        "postfix.service|active|enabled",
        f"{SECTION}ports",
        "LISTEN 0      100          0.0.0.0:25        0.0.0.0:*",
        "LISTEN 0      100             [::]:993          [::]:*",
        f"{SECTION}sockets",
        "/var/spool/postfix/private/auth",
        f"{SECTION}mailboxes",
        "/var/mail/vmail/example.org/bob",
        "/var/mail/vmail/example.org/alice",
    ]
    snap = MailHostSnapshot().process(framed(output))
    assert snap.packages == {"postfix": "3.7.11-0+deb12u1"}
    assert snap.accounts.users["vmail"]["uid"] == 5000
    assert snap.accounts.groups["sasl"]["members"] == ["postfix"]
    assert snap.paths["/etc/aliases"].sha256 == "a" * 64
    assert snap.paths["/var/mail/vmail"].kind == "directory" and snap.paths["/var/mail/vmail"].mode == "750"
    assert snap.units == {"postfix.service": ("active", "enabled")}
    assert snap.ports == ("0.0.0.0:25", "[::]:993")
    assert snap.sockets == frozenset({"/var/spool/postfix/private/auth"})
    assert snap.mailboxes == ("/var/mail/vmail/example.org/alice", "/var/mail/vmail/example.org/bob")


def test_snapshot_command_runs_every_part(tmp_path: Path) -> None:
    """The command (here on this machine) prints each section, and the file part reads real files."""
    f = tmp_path / "main.cf"
    f.write_text("x\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(
        "#!/bin/sh\nprintf 'Id=x.service\\nActiveState=active\\nUnitFileState=enabled\\n\\n'\n"
    )
    (fake / "systemctl").chmod(0o755)
    spec = SnapshotSpec(
        family="debian",
        packages=("nosuchpackage",),
        users=("root",),
        groups=("root",),
        paths=(str(f), str(tmp_path / "absent")),
        units=("x.service",),
        sockets=(str(tmp_path / "nosock"),),
        mailbox_base=str(tmp_path),
    )
    cmd = f"PATH={fake}:$PATH; export PATH; " + MailHostSnapshot().command(spec)
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False).stdout
    snap = MailHostSnapshot().process(out.splitlines())
    assert snap.accounts.users["root"]["uid"] == 0
    assert set(snap.paths) == {str(f)}
    assert snap.paths[str(f)].sha256 == hashlib.sha256(b"x\n").hexdigest()
    assert snap.units == {"x.service": ("active", "enabled")}
    assert snap.sockets == frozenset()


def test_bundle_keeps_owner_group_mode_and_content() -> None:
    files = (
        ManagedFile("/etc/postfix/main.cf", "a = b\n", mode="644"),
        ManagedFile(
            "/etc/dovecot/users", "bob:{ARGON2ID}x\n", owner="root", group="dovecot", mode="640", secret=True
        ),
    )
    with tarfile.open(fileobj=io.BytesIO(bundle(files))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"etc/postfix/main.cf", "etc/dovecot/users"}
        users = members["etc/dovecot/users"]
        assert (users.uname, users.gname, users.mode) == ("root", "dovecot", 0o640)
        extracted = tar.extractfile(users)
        assert extracted is not None and extracted.read() == b"bob:{ARGON2ID}x\n"


def test_os_release_values_without_quotes() -> None:
    got = parse_os_release(
        ['PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', "ID=debian", "", "# note", "ID_LIKE='rhel fedora'"]
    )
    assert got == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian", "ID_LIKE": "rhel fedora"}
