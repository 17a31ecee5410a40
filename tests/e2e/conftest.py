"""End-to-end fixtures: `deployments(variant, release)` (a fresh, deployed lab host per SASL variant and
Debian release) and the sink."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_support import SINK_PORT, Deployment, deploy_fresh
from smtp_sink import SmtpSink

from pyinfra_mailserver import pki
from pyinfra_mailserver.lab.state import load


@pytest.fixture(scope="session")
def deployments(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Deployment]:
    """`deployments(variant, release)`: the session's deployed host of that variant on that Debian
    release (made on first use)."""
    made: dict[tuple[str, str], Deployment] = {}

    def get(variant: str, release: str) -> Deployment:
        if (variant, release) not in made:
            made[variant, release] = deploy_fresh(lab, variant, tmp_path_factory.mktemp("e2e"), release)
        return made[variant, release]

    return get


@pytest.fixture(scope="module")
def sink_factory(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], SmtpSink]]:
    """The SMTP sink on the controller's bridge address (started once the bridge exists).

    Module-scoped: its server thread must be gone before later tests import pyinfra_cli, whose gevent
    monkey-patching deadlocks a process that has a live thread.
    """
    started: list[SmtpSink] = []

    def get() -> SmtpSink:
        if not started:
            d = tmp_path_factory.mktemp("sink")
            tls = pki.ensure_server_cert(d, "sink.test", ("sink.test",))
            cert, key = d / "sink.crt", d / "sink.key"
            cert.write_text(tls.cert_pem)
            key.write_text(tls.key_pem)
            os.chmod(key, 0o600)
            started.append(SmtpSink(load(lab.state_dir).bridge_ip, SINK_PORT, cert, key).start())
        return started[0]

    yield get
    for s in started:
        s.stop()
