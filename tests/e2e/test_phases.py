"""testinfra after each phase of a deploy: a fresh host deployed phase by phase (`mailserver deploy
--until install`, then `--until configure`, then the whole deploy), each service's testinfra checks
(services/<name>/checks.py) run from here over paramiko after each phase: those of the phase pass,
those of the phase after it do not yet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import Deployment, deploy_fresh

from pyinfra_mailserver import services
from pyinfra_mailserver.lab.state import default_release

pytestmark = pytest.mark.lab


def misses(dep: Deployment, phase: str) -> list[str]:
    t = dep.host.testinfra()
    return [m for checks in services.checks() for m in checks.testinfra_checks(t, dep.manifest, phase)]


@pytest.fixture(scope="module")
def phased(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A virtual-variant host deployed one phase at a time; what the checks said after each."""
    seen: dict[str, Any] = {}

    def before_each(dep: Deployment) -> None:
        seen["fresh"] = {"install": misses(dep, "install")}

    dep = deploy_fresh(
        lab,
        "virtual",
        tmp_path_factory.mktemp("phases"),
        default_release(),
        until="install",
        before=before_each,
    )
    try:
        seen["install"] = {p: misses(dep, p) for p in ("install", "configure")}
        seen["install_report"] = dep.first
        seen["configure_report"] = dep.deploy("--until", "configure")
        seen["configure"] = {p: misses(dep, p) for p in ("configure", "activate")}
        seen["activate_report"] = dep.deploy()
        seen["activate"] = {p: misses(dep, p) for p in services.PHASES}
        yield seen
    finally:
        dep.host.close()
        lab.down([dep.host.name])


def test_each_phase_succeeds(phased: dict[str, Any]) -> None:
    for phase in services.PHASES:
        r = phased[f"{phase}_report"]
        assert r["success"], (phase, r["_report"]["errors"], r["_stderr"][-3000:])


def test_nothing_is_installed_before_the_install_phase(phased: dict[str, Any]) -> None:
    assert any("is not installed" in m for m in phased["fresh"]["install"])


def test_install_checks_pass_after_install_and_configure_checks_not_yet(phased: dict[str, Any]) -> None:
    assert phased["install"]["install"] == []
    assert phased["install"]["configure"], "the configure checks found nothing missing before configure"


def test_configure_checks_pass_after_configure_and_activate_checks_not_yet(phased: dict[str, Any]) -> None:
    assert phased["configure"]["configure"] == []
    assert any("is not running" in m or "listens" in m for m in phased["configure"]["activate"])


def test_every_check_passes_after_the_whole_deploy(phased: dict[str, Any]) -> None:
    assert phased["activate"] == {p: [] for p in services.PHASES}
