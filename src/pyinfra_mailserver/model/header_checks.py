"""header_checks: regexp rules on message headers, e.g. WARN to log Subject/From/To (legal tracking)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from pyinfra_mailserver.model.common import Strict, err

ACTIONS = ("WARN", "HOLD", "DISCARD", "REJECT", "IGNORE", "INFO", "PREPEND", "REDIRECT", "FILTER", "DUNNO")
_PATTERN = re.compile(r"^!?/(.+)/([imx]*)$")


class HeaderCheck(Strict):
    """One line of a regexp: table: `/pattern/flags ACTION [text]`; order matters (first match wins)."""

    pattern: str = Field(
        description="Postfix regexp, e.g. /^Subject:/ — case-insensitive by default (the i flag makes it "
        "case-sensitive in Postfix)."
    )
    action: str = Field(default="WARN", description="WARN, HOLD, DISCARD, REJECT text, PREPEND header ...")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        m = _PATTERN.match(v)
        if not m or "\n" in v:
            raise err("regexp", f"pattern {v!r} must look like /regex/flags (flags among i, m, x)")
        body = m.group(1)
        if re.search(r"(?<!\\)/", body):
            raise err("regexp", f"pattern {v!r}: escape '/' inside the expression as \\/")
        try:
            re.compile(body)
        except re.error as exc:
            raise err("regexp", f"pattern {v!r} does not compile: {exc}") from None
        return v

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        word = v.split(" ", 1)[0].upper()
        if word not in ACTIONS or "\n" in v:
            raise err("action", f"action {v!r}: start with one of {', '.join(ACTIONS)}")
        return word + v[len(word) :]
