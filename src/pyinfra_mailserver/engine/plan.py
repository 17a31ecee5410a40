"""What a deploy will do on one host: its manifest, the snapshot read at its start, and the diff."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyinfra_mailserver.engine.changes import Change, Kind
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.facts import Snapshot
from pyinfra_mailserver.manifest import ManagedFile, Manifest


@dataclass(frozen=True)
class DeployPlan:
    """The one input of every phase of a deploy. Each phase takes its own changes (`of`); the
    verification compares a fresh snapshot, or this one when nothing was to change."""

    manifest: Manifest = field(repr=False)
    stage: Stage
    snapshot: Snapshot = field(repr=False)
    changes: tuple[Change, ...]
    generated: tuple[ManagedFile, ...] = field(default=(), repr=False)  # made on the controller (TLS)

    def of(self, service: str, *kinds: Kind) -> tuple[Change, ...]:
        """The changes of one service (all of its kinds, or only `kinds`)."""
        return tuple(c for c in self.changes if c.service == service and (not kinds or c.kind in kinds))

    @property
    def files_changed(self) -> list[str]:
        return [c.subject for c in self.changes if c.kind in ("file", "file-attrs")]
