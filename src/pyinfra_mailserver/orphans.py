"""Mailboxes on disk that the data no longer lists: the deploy never deletes mail, so it says where
they are (disk use, a forgotten account's mail) and changes nothing."""

from __future__ import annotations

import posixpath
from collections.abc import Generator, Iterable
from typing import Any

from pyinfra import host, logger, state
from pyinfra.api import operation

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


def orphaned(found: Iterable[str], expected: set[str]) -> list[str]:
    """The mailbox directories found on the host (the snapshot's) that no mailbox of the data uses."""
    return sorted(d for d in found if d.strip() and d not in expected)


@operation(is_idempotent=True)
def report_orphaned_mailboxes(orphans: tuple[str, ...]) -> Generator[Any, None, None]:
    """
    Report mailbox directories on the host that no virtual mailbox of the data uses; never delete them.

    + orphans: those directories (found in the deploy's snapshot)

    **Example:**

    .. code:: python

        report_orphaned_mailboxes(name="Report orphaned mailboxes", orphans=("/var/mail/vmail/x/bob",))
    """
    if state.is_executing:
        for d in orphans:
            host.log_styled(
                f"orphaned mailbox {d}: not in the data any more, its mail is kept on disk "
                "(add the mailbox back, or archive and remove the directory by hand)",
                fg="yellow",
                log_func=logger.warning,
            )
    host.noop(f"{len(orphans)} orphaned mailbox(es)" if orphans else "no orphaned mailbox")
    yield from ()
