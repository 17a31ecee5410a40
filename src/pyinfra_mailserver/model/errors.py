"""Turning pydantic errors into `path: problem — fix` lines that never echo an input value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

_FIXES = {
    "extra_forbidden": "unknown key — remove it or fix its spelling (`mailserver schema` lists the keys)",
    "missing": "required — add it",
}


class ModelError(ValueError):
    """Inventory data that does not validate; `problems` holds every `path: message` line."""

    def __init__(self, host: str | None, problems: list[str]) -> None:
        self.host = host
        self.problems = problems
        where = f"host {host}: " if host else ""
        plural = "s" if len(problems) != 1 else ""
        super().__init__(
            f"{where}{len(problems)} problem{plural} in mailserver data:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out or "(top level)"


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem; cross-section errors (one pydantic error) are split back into lines."""
    lines: list[str] = []
    for e in exc.errors(include_input=False, include_url=False):
        path = loc_to_path(tuple(e["loc"]))
        if prefix:
            path = prefix if path == "(top level)" else f"{prefix}.{path}"
        if e["type"] == "cross_field":
            for line in str(e["msg"]).splitlines():
                lines.append(f"{prefix}.{line}" if prefix else line)
            continue
        msg = _FIXES.get(e["type"], e["msg"])
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{path}: {msg}")
    return lines


def validate_server(
    data: Any,
    *,
    hostname: str | None = None,
    secrets_dir: str | Path | None = None,
) -> Any:
    """Validate raw `mailserver` data into a MailServer, or raise ModelError listing every problem."""
    from pyinfra_mailserver.model.server import MailServer

    if not isinstance(data, dict):
        raise ModelError(
            hostname, ["mailserver: host data `mailserver` must be a dict (see inventories/example.py)"]
        )
    context = {"inventory_hostname": hostname, "secrets_dir": Path(secrets_dir) if secrets_dir else None}
    try:
        return MailServer.model_validate(data, context=context)
    except ValidationError as exc:
        raise ModelError(hostname, format_errors(exc)) from None
