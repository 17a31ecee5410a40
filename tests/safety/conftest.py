"""Fixtures of the safety tests: one shared deployed host (virtual variant + a credentialed relayhost that
refuses connections) and one bare lab host for connection-level failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from safety_support import SafetyHost  # first: it puts tests/e2e on sys.path

from e2e_support import deploy_fresh  # isort: skip

from pyinfra_mailserver.lab.state import default_release


@pytest.fixture(scope="session")
def safe_host(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> SafetyHost:
    """A deployed virtual-variant host with the safety base data (restored by every test that changes it)."""
    dep = deploy_fresh(lab, "virtual", tmp_path_factory.mktemp("safety"), default_release())
    assert dep.first["success"], f"{dep.first['_report']['errors']}\n{dep.first['_stderr'][-3000:]}"
    sh = SafetyHost(dep)
    sh.write_data()
    sh.generate_secrets()
    sh.restore()
    return sh


@pytest.fixture(scope="module")
def bare_host(lab: Any) -> Iterator[Any]:
    """A lab host nothing is deployed on (connection and distro failures), destroyed after the module."""
    [h] = lab.up(1, variant="virtual")
    try:
        yield h
    finally:
        lab.down([h.name])
