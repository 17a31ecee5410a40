"""/etc/aliases: local redirects and lists (newaliases/postalias), checked for loops and unknown targets."""

from __future__ import annotations

import re

from pyinfra_mailserver.model.common import check_address, err

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")


def check_alias_name(name: str) -> str:
    if not _NAME.match(name):
        raise err("alias", f"alias name {name!r}: use lower-case letters, digits and . _ + -")
    return name


def classify_target(target: str) -> tuple[str, str]:
    """(kind, value) of an alias target: local, address, command, file, include."""
    t = target.strip()
    if t.startswith("|"):
        return "command", t
    if t.startswith(":include:"):
        return "include", t
    if t.startswith("/"):
        return "file", t
    if "@" in t:
        return "address", check_address(t, what="alias target")
    name = t.removeprefix("\\")
    if not _NAME.match(name):
        raise err("alias", f"alias target {target!r} is neither a local name, an address, |command nor /file")
    return "local", name


def check_aliases(aliases: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, targets in aliases.items():
        check_alias_name(name)
        if not targets:
            raise err("alias", f"alias {name!r} has no targets")
        for t in targets:
            classify_target(t)
            if "," in t or "\n" in t:
                raise err("alias", f"alias {name!r}: one target per list item (no commas)")
        out[name] = [t.strip() for t in targets]
    return out


def find_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Cycles in a directed graph (each reported once, starting at its smallest node)."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, []):
            if nxt in path:
                cyc = path[path.index(nxt) :]
                i = cyc.index(min(cyc))
                key = tuple(cyc[i:] + cyc[:i])
                if key not in seen:
                    seen.add(key)
                    cycles.append([*key, key[0]])
            elif len(path) < 64:
                walk(nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, [start])
    return cycles
