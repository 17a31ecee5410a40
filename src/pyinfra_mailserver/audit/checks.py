"""The audit run: outside-in probes plus inside checks per host (filled in below)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyinfra_mailserver.audit.remote import Target
from pyinfra_mailserver.report import CheckResult


@dataclass(frozen=True)
class AuditOptions:
    ca_file: str | None = None
    probes: bool = True
    inside: bool = True
    dns_resolver: str | None = None
    timeout: float = 10.0


def run_all(targets: Sequence[Target], options: AuditOptions) -> list[CheckResult]:
    return []
