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
# What to do about pydantic's own errors, by type (its message says what is wrong, not the fix)
_TYPE_FIXES = {
    "literal_error": "set one of those",
    "enum": "set one of those",
    "int_parsing": "write a whole number of the field's unit, without quotes or a suffix",
    "int_type": "write a whole number of the field's unit, without quotes or a suffix",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write it as a string in quotes",
    "list_type": 'write a list, e.g. ["..."]',
    "dict_type": "write a mapping of keys to values (`mailserver schema` shows them)",
    "model_type": "write a mapping of keys to values (`mailserver schema` shows them)",
    "model_attributes_type": "write a mapping of keys to values (`mailserver schema` shows them)",
    "less_than": "lower it",
    "less_than_equal": "lower it",
    "greater_than": "raise it",
    "greater_than_equal": "raise it",
    "string_too_long": "shorten it",
    "too_long": "remove entries",
    "string_too_short": "fill it in",
    "too_short": "add an entry",
    "string_pattern_mismatch": "see `mailserver schema` for the form it takes",
}


def _message(e: Any) -> str:
    """The line's text after the path: our validators' own `problem — fix`, or pydantic's message with
    the fix for its type."""
    if e["type"] in _FIXES:
        return _FIXES[e["type"]]
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "value_error" or " — " in msg:
        return msg
    fix = _TYPE_FIXES.get(e["type"], "see `mailserver schema` for what this field takes")
    return f"{msg} — {fix}"


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
        lines.append(f"{path}: {_message(e)}")
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
    context: dict[str, Any] = {
        "inventory_hostname": hostname,
        "secrets_dir": Path(secrets_dir) if secrets_dir else None,
    }
    try:
        return MailServer.model_validate(data, context=context)
    except ValidationError as exc:
        problems = format_errors(exc)
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
    # Cross-section checks need valid sections. So that one run lists every problem, validate again
    # without the sections that failed (their defaults stand in) and with the checks that read them
    # skipped, and add what that run finds.
    if bad and len(bad) < len(data):
        partial = {k: v for k, v in data.items() if k not in bad}
        again = {**context, "skip_sections": frozenset(bad), "auto_source": data}
        try:
            MailServer.model_validate(partial, context=again)
        except ValidationError as exc2:
            problems += [p for p in format_errors(exc2) if p not in problems]
    raise ModelError(hostname, problems)
