"""One output format for every batched read of a host: sections framed by marker lines.

A section is `@@mailserver-section NAME`, its output lines, then `@@mailserver-section-rc STATUS`. The
snapshot script prints it, and drift's and the audit's batched commands are wrapped in it.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

MARK = "@@mailserver-section"


@dataclass
class Section:
    """One command's result inside a batched script."""

    rc: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def build(commands: dict[str, str]) -> str:
    """Batch named commands in one round trip; each section's stderr is merged into its output."""
    parts = []
    for name, cmd in commands.items():
        parts.append(f'echo {shlex.quote(MARK + " " + name)}; ( {cmd} ) 2>&1; echo "{MARK}-rc $?"')
    return "\n".join(parts)


def parse(lines: Iterable[str]) -> dict[str, Section]:
    """Sections by name; one whose end mark never came (the script was cut short) keeps rc -1."""
    out: dict[str, Section] = {}
    current: str | None = None
    for line in lines:
        head, sep, tail = line.partition(MARK + "-rc ")
        if sep and head and current is not None:  # output without a final newline: the mark follows it
            out[current].lines.append(head)
            line = sep + tail
        if line.startswith(MARK + " "):
            current = line[len(MARK) + 1 :]
            out[current] = Section(-1, [])
        elif line.startswith(MARK + "-rc ") and current is not None:
            rc = line.split()[-1]
            out[current].rc = int(rc) if rc.lstrip("-").isdigit() else -1
            current = None
        elif current is not None:
            out[current].lines.append(line)
    return out
