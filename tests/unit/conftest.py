"""Fixtures of the model/render tests: a secrets dir with generated secrets for the example inventory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mailserver_testdata import EXAMPLE

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.inventory import secret_refs


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
