"""Lab state and the inventory built from it (no root, no hosts: these run in the quick unit run too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_mailserver.lab.image import Mirror, recipe, recipe_hash, sources_list
from pyinfra_mailserver.lab.state import (
    HostState,
    LabError,
    LabState,
    ProcRef,
    host_index,
    inventory_hosts,
    load,
)

REPO = Path(__file__).resolve().parents[2]


def fake_lab(tmp_path: Path) -> LabState:
    st = LabState(state_dir=tmp_path, subnet="10.213.7.0/24", bridge="msfake0")
    for i, variant in ((1, "virtual"), (2, "saslauthd"), (3, "virtual")):
        name = f"mx{i}"
        st.hosts[name] = HostState(
            name=name,
            fqdn=f"{name}.lab.test",
            ip=st.host_ip(i),
            variant=variant,
            release="bookworm",
            image="/nonexistent",
            machine=f"msfake0-{name}",
            netns=f"msfake0-{name}",
            veth=f"msfake0-{name}",
            host_dir=str(tmp_path / "hosts" / name),
            proc=ProcRef(pid=999999, start_time=1),
        )
    st.save()
    return st


def test_state_round_trips_and_addresses(tmp_path: Path) -> None:
    st = fake_lab(tmp_path)
    again = load(tmp_path)
    assert again.to_json() == st.to_json()
    assert again.bridge_ip == "10.213.7.1"
    assert [h.ip for h in again.sorted_hosts()] == ["10.213.7.11", "10.213.7.12", "10.213.7.13"]
    assert not again.hosts["mx1"].alive()  # PID 999999 with another start time is not ours
    raw = json.loads((tmp_path / "state.json").read_text())
    assert raw["key_path"] == str(tmp_path / "id_ed25519")
    assert raw["secrets_dir"] == str(tmp_path / "secrets")


def test_host_names_are_mx_numbers() -> None:
    assert host_index("mx12") == 12
    with pytest.raises(LabError):
        host_index("web1")


def test_inventory_groups_by_variant_with_lab_ssh_settings(tmp_path: Path) -> None:
    fake_lab(tmp_path)
    groups = inventory_hosts(tmp_path)
    assert [n for n, _ in groups["lab"]] == ["mx1.lab.test", "mx2.lab.test", "mx3.lab.test"]
    assert [n for n, _ in groups["lab_virtual"]] == ["mx1.lab.test", "mx3.lab.test"]
    assert [n for n, _ in groups["lab_saslauthd"]] == ["mx2.lab.test"]
    data = dict(groups["lab"])["mx2.lab.test"]
    assert data["ssh_hostname"] == data["lab_ip"] == "10.213.7.12"
    assert data["ssh_user"] == "root"
    assert data["ssh_key"] == str(tmp_path / "id_ed25519")
    assert data["ssh_strict_host_key_checking"] == "no"
    assert data["ssh_known_hosts_file"] == "/dev/null"
    assert data["mailserver_secrets_dir"] == str(tmp_path / "secrets")


def pyinfra_debug_inventory(state_dir: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "pyinfra"
    return subprocess.run(
        [str(exe), "-y", "inventories/lab.py", "debug-inventory"],
        cwd=REPO,
        env={**os.environ, "MAILSERVER_LAB_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_inventory_file_with_an_empty_lab_says_what_to_do(tmp_path: Path) -> None:
    r = pyinfra_debug_inventory(tmp_path / "empty")
    assert r.returncode != 0
    assert "no lab hosts: run `mailserver lab up`" in r.stdout + r.stderr


def test_inventory_file_loads_in_pyinfra(tmp_path: Path) -> None:
    fake_lab(tmp_path)
    r = pyinfra_debug_inventory(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for name in ("mx1.lab.test", "mx2.lab.test", "mx3.lab.test"):
        assert name in out


def test_image_recipe_hash_follows_the_recipe() -> None:
    m = Mirror("http://mirror.example/debian", "http://mirror.example/debian-security")
    assert recipe_hash(recipe("bookworm", m)) == recipe_hash(recipe("bookworm", m))
    assert recipe_hash(recipe("bookworm", m)) != recipe_hash(recipe("trixie", m))
    other = Mirror("http://other.example/debian", None)
    assert recipe_hash(recipe("bookworm", m)) != recipe_hash(recipe("bookworm", other))
    assert sources_list(m, "bookworm").splitlines() == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]
