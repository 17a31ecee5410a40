"""Fixtures of the model/render tests: a secrets dir with generated secrets for the example inventory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.inventory import secret_refs

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "example.py"


@pytest.fixture(scope="session")
def example_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh secrets dir holding every secret the example inventory references (random passwords)."""
    directory = tmp_path_factory.mktemp("secrets-root") / "secrets"
    mp = pytest.MonkeyPatch()
    mp.setenv(secretstore.ENV_DIR, str(directory))
    try:
        refs = [ref for _h, _d, ref in secret_refs(EXAMPLE)]
        secretstore.generate_missing(directory, refs)
    finally:
        mp.undo()
    return directory


@pytest.fixture
def secrets_env(example_secrets: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(secretstore.ENV_DIR, str(example_secrets))
    yield example_secrets


def write_inventory(root: Path, groups: dict[str, list[str]], data: dict[str, dict]) -> Path:
    """A small pyinfra inventory: `inv.py` with groups, and group_data/<group>.py = {"mailserver": ...}."""
    inv = root / "inv"
    (inv / "group_data").mkdir(parents=True, exist_ok=True)
    (inv / "inv.py").write_text("".join(f"{g} = {hosts!r}\n" for g, hosts in groups.items()))
    for group, d in data.items():
        (inv / "group_data" / f"{group}.py").write_text(f"mailserver = {d!r}\n")
    return inv / "inv.py"
