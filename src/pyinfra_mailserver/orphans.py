"""Mailboxes on disk that the data no longer lists (issue 6: nothing lost).

The deploy never deletes mail: removing a mailbox from the data leaves its Maildir where it was. So
that this is visible rather than silent (disk use, a forgotten account's mail), the deploy reports each
such directory as orphaned, with its path, and changes nothing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator
from typing import Any

from pyinfra import host, logger, state
from pyinfra.api import operation

from pyinfra_mailserver.facts import MailboxDirs
from pyinfra_mailserver.manifest import Manifest


def mailbox_dirs(manifest: Manifest) -> tuple[str | None, set[str]]:
    """(virtual base directory, the `base/DOMAIN/USER` directory of every virtual mailbox of the data)."""
    dirs = set()
    for a in manifest.accounts:
        if a.kind != "virtual":
            continue
        path = a.mailbox.rstrip("/")
        if posixpath.basename(path).lower() == "maildir":
            path = posixpath.dirname(path)
        dirs.add(path)
    bases = {posixpath.dirname(posixpath.dirname(d)) for d in dirs}
    return (bases.pop() if len(bases) == 1 else None), dirs


def orphaned(found: list[str], expected: set[str]) -> list[str]:
    return [d for d in found if d not in expected]


@operation(is_idempotent=True)
def report_orphaned_mailboxes(manifest: Manifest) -> Generator[Any, None, None]:
    """
    Report mailbox directories on the host that no virtual mailbox of the data uses; never delete them.

    + manifest: the host's manifest (its virtual accounts and their Maildirs)
    """
    base, expected = mailbox_dirs(manifest)
    if not state.is_executing:  # read once, when executing: a plan costs no extra round trip
        host.noop("orphaned mailboxes are looked for when the deploy runs")
        return
    if base is None:
        host.noop("no virtual mailboxes")
        return
    from pyinfra_mailserver.deploys.ops import snapshot_part  # (deploys import this module)

    in_snapshot = snapshot_part("mailboxes", mailbox_base=base)
    found = list(in_snapshot) if in_snapshot is not None else host.get_fact(MailboxDirs, base_dir=base)
    orphans = orphaned(found, expected)
    for d in orphans:
        host.log_styled(
            f"orphaned mailbox {d}: not in the data any more, its mail is kept on disk "
            "(add the mailbox back, or archive and remove the directory by hand)",
            fg="yellow",
            log_func=logger.warning,
        )
    host.noop(f"{len(orphans)} orphaned mailbox(es)" if orphans else "no orphaned mailbox")
    yield from ()
