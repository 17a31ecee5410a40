"""The lab's apt proxy: its configuration and its restart on an outdated one, without any network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pyinfra_mailserver.lab import proxy
from pyinfra_mailserver.lab.state import LabState


def _conf(cache: str = "/c", log: str = "/l", port: int = 3142, bind: str = "10.0.0.1") -> dict[str, str]:
    text = proxy.acng_conf(cache, log, port, bind)
    pairs = (line.split(":", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_a_wave_of_index_requests_shares_one_download() -> None:
    """acng takes a download still waiting for the mirror's headers (start time 0) for stuck unless the
    freeze time exceeds the current Unix time; concurrent `apt-get update`s then displaced each other's
    InRelease downloads and some hung. The value must also fit acng's int."""
    freeze = int(_conf()["ResponseFreezeDetectTime"])
    assert freeze == proxy.RESPONSE_FREEZE_DETECT_TIME
    assert time.time() + 365 * 86400 < freeze <= 2**31 - 1


def test_generated_conf() -> None:
    conf = _conf(cache="/var/cache/x/apt/br0", log="/s/proxy/log", port=3143, bind="10.213.97.1")
    assert conf["CacheDir"] == "/var/cache/x/apt/br0"
    assert conf["LogDir"] == "/s/proxy/log"
    assert (conf["Port"], conf["BindAddress"]) == ("3143", "10.213.97.1")
    assert "FreshIndexMaxAge" not in conf  # no effect on acng 3.7.4 (see docs/lab.md)
    assert conf["ForeGround"] == "1"


class _Alive:
    def __init__(self, alive: bool) -> None:
        self._alive = alive

    def alive(self) -> bool:
        return self._alive


def _lab_with_running_proxy(tmp_path: Path, conf: str, hosts_up: bool) -> LabState:
    st = LabState(state_dir=tmp_path, subnet="10.213.97.0/24", bridge="mshelpx")
    st.proxy = _Alive(True)  # type: ignore[assignment]
    st.hosts = {"mx1": _Alive(hosts_up)}  # type: ignore[dict-item]
    (tmp_path / "proxy").mkdir()
    (tmp_path / "proxy" / "acng.conf").write_text(conf)
    return st


def _current_conf(st: LabState) -> str:
    return proxy.acng_conf(
        proxy.proxy_cache_dir(st), st.state_dir / "proxy" / "log", st.proxy_port, st.bridge_ip
    )


def test_running_proxy_with_current_conf_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = _lab_with_running_proxy(tmp_path, "", hosts_up=False)
    (tmp_path / "proxy" / "acng.conf").write_text(_current_conf(st))
    monkeypatch.setattr(proxy, "stop_proxy", lambda st: pytest.fail("restarted a current proxy"))
    proxy.ensure_proxy(st)


def test_outdated_proxy_is_only_reported_while_hosts_are_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    st = _lab_with_running_proxy(tmp_path, "FreshIndexMaxAge: 27\n", hosts_up=True)
    monkeypatch.setattr(proxy, "stop_proxy", lambda st: pytest.fail("restarted under running hosts"))
    proxy.ensure_proxy(st)
    assert "outdated" in capsys.readouterr().out


def test_outdated_proxy_is_restarted_when_no_host_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = _lab_with_running_proxy(tmp_path, "FreshIndexMaxAge: 27\n", hosts_up=False)

    class Restarted(Exception):
        pass

    def stop(st: LabState) -> None:
        raise Restarted

    monkeypatch.setattr(proxy, "stop_proxy", stop)
    with pytest.raises(Restarted):
        proxy.ensure_proxy(st)
