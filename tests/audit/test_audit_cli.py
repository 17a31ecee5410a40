"""The CLI contract CI relies on, without lab hosts: exit 2 and an <error> test case for an unreachable host
or invalid data, the JSON shape, and `--limit` errors. Run as subprocesses (the CLI patches with gevent)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MAILSERVER = str(Path(sys.executable).parent / "mailserver")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inventory(tmp_path: Path, data: str) -> Path:
    """An inventory of one host on loopback whose SSH port nothing listens on."""
    (tmp_path / "group_data").mkdir()
    inv = tmp_path / "inventory.py"
    host = {"ssh_hostname": "127.0.0.1", "ssh_port": closed_port(), "ssh_connect_retries": 0}
    inv.write_text(f'"""test inventory."""\nmail = [("mx9.example.org", {host!r})]\n')
    (tmp_path / "group_data" / "mail.py").write_text(data)
    (tmp_path / "secrets").mkdir(mode=0o700)
    return inv


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILSERVER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "MAILSERVER_SECRETS_DIR": str(cwd / "secrets")},
    )


VALID = 'mailserver = {"identity": {"mynetworks": ["127.0.0.0/8"]}}\n'


@pytest.mark.parametrize("command", ["drift", "audit"])
def test_unreachable_host_exits_2_with_error_case(tmp_path: Path, command: str) -> None:
    inv = inventory(tmp_path, VALID)
    junit = tmp_path / "out.xml"
    r = run(command, str(inv), "--json", "--junit", str(junit), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["exit_code"] == 2
    [res] = report["results"]
    assert res["id"] == "host.reachable" and res["status"] == "error" and res["host"] == "mx9.example.org"
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.get("name") == "host.reachable" and case.find("error") is not None


def test_invalid_data_exits_2(tmp_path: Path) -> None:
    inv = inventory(tmp_path, 'mailserver = {"identity": {"mynetworks": ["0.0.0.0/0"]}, "bogus": 1}\n')
    r = run("drift", str(inv), "--json", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    [res] = json.loads(r.stdout)["results"]
    assert res["id"] == "inventory.data" and res["status"] == "error"
    assert "bogus" in res["message"] or "mynetworks" in res["message"]


def test_unknown_limit_and_missing_inventory(tmp_path: Path) -> None:
    inv = inventory(tmp_path, VALID)
    r = run("drift", str(inv), "--limit", "nosuchhost", cwd=tmp_path)
    assert r.returncode == 2 and "nosuchhost" in r.stderr
    r = run("audit", str(tmp_path / "missing.py"), cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr
