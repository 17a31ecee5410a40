"""Shared data of the model/render tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra_mailserver import secretstore

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "example.py"

# one hash of each kind, made once (hashing is deliberately slow)
ARGON = secretstore.hash_password("correct horse", "argon2id")
CRYPT = secretstore.hash_password("correct horse", "sha512-crypt")


def write_inventory(root: Path, groups: dict[str, list[str]], data: dict[str, dict[str, Any]]) -> Path:
    """A small pyinfra inventory: `inv.py` with groups, and group_data/<group>.py = {"mailserver": ...}."""
    inv = root / "inv"
    (inv / "group_data").mkdir(parents=True, exist_ok=True)
    (inv / "inv.py").write_text("".join(f"{g} = {hosts!r}\n" for g, hosts in groups.items()))
    for group, d in data.items():
        (inv / "group_data" / f"{group}.py").write_text(f"mailserver = {d!r}\n")
    return inv / "inv.py"
