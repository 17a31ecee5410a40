"""Issue 6 (4), without hosts: which mailbox directories count as orphaned (kept, reported)."""

from __future__ import annotations

from pathlib import Path

from pyinfra_mailserver import distro, secretstore
from pyinfra_mailserver.engine import shell
from pyinfra_mailserver.engine.changes import snapshot_spec
from pyinfra_mailserver.engine.script import MARK
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.facts import MailHostSnapshot
from pyinfra_mailserver.model import validate_server
from pyinfra_mailserver.orphans import mailbox_dirs, orphaned
from pyinfra_mailserver.render import build_manifest

ARGON = secretstore.hash_password("safety horse", "argon2id")


def test_orphaned_mailbox_dirs(tmp_path: Path) -> None:
    data = {
        "virtual": {
            "domains": ["example.net"],
            "mailboxes": [{"address": "alice@example.net", "password": ARGON}],
            "aliases": {f"{r}@example.net": ["alice@example.net"] for r in ("postmaster", "abuse")},
        },
        "sasl": {"backend": "dovecot"},
    }
    m = build_manifest(validate_server(data, hostname="mx1.example.org"), distro.DEBIAN)
    base, expected = mailbox_dirs(m)
    assert base == "/var/mail/vmail"
    assert expected == {"/var/mail/vmail/example.net/alice"}
    d = "/var/mail/vmail/example.net"
    out = [f"{MARK} mailboxes", f"{d}/bob", f"{d}/alice", "", f"{MARK}-rc 0"]
    found = MailHostSnapshot().process(out).mailboxes
    assert orphaned(found, expected) == ["/var/mail/vmail/example.net/bob"]
    assert snapshot_spec(m, Stage()).mailbox_base == "/var/mail/vmail"
    assert 'find "$base" -mindepth 2 -maxdepth 2 -type d' in shell.script("snapshot")
