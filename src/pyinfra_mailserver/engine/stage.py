"""The root-only directory on the host where a deploy's files wait, and the markers it leaves there."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyinfra_mailserver.manifest import Directory

# Where changed files wait before they replace the live ones; host data `mailserver_stage_dir` moves it.
DEFAULT_STAGE_DIR = "/var/lib/pyinfra-mailserver/stage"


@dataclass(frozen=True)
class Stage:
    """Paths under the stage directory. Everything below it is root's alone (0700)."""

    dir: str = DEFAULT_STAGE_DIR

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Stage:
        return cls(str(data.get("mailserver_stage_dir") or DEFAULT_STAGE_DIR))

    def pending(self, service: str) -> str:
        """Left by an install until `service` was reloaded: a run killed in between still reloads."""
        return posixpath.join(self.dir, f"pending-{service}")

    def restart(self, service: str) -> str:
        """Left by an install whose change a reload cannot apply (Postfix's inet_interfaces)."""
        return posixpath.join(self.dir, f"restart-{service}")

    @property
    def directory(self) -> Directory:
        """The stage as a directory the system phase makes: root's alone, so is everything in it."""
        return Directory(self.dir, "root", "root", "700")

    @property
    def backup(self) -> str:
        """Live files replaced by this run, kept until the smoke check passed (rollback)."""
        return posixpath.join(self.dir, "backup")

    def bundle(self, name: str) -> str:
        """Where a service's tar of changed files is uploaded."""
        return posixpath.join(self.dir, f"bundle-{name}.tar")

    @property
    def chpasswd(self) -> str:
        return posixpath.join(self.dir, "chpasswd")
