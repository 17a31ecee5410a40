"""The snapshot's unit states: every unit read with at most two `systemctl show` calls, `is-enabled`
asked only for SysV-generated units; checked against a fake `systemctl` that answers like systemd 252
does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pyinfra_mailserver.facts import MailHostSnapshot, SnapshotSpec

FAKE_SYSTEMCTL = r"""#!/bin/sh
echo "$*" >> "$CALLS"
block() { printf 'Id=%s\n' "$1"; [ -n "$3" ] && printf 'ConsistsOf=%s\n' "$3";
          printf 'ActiveState=%s\n' "$2"; [ -n "$4" ] && printf 'UnitFileState=%s\n' "$4";
          [ -n "$5" ] && printf 'Type=%s\n' "$5"; printf '\n'; }
case "$1" in
  show)
    shift 3
    for u in "$@"; do case "$u" in
      postfix.service) block postfix.service active "postfix@-.service" enabled "$POSTFIX_TYPE";;
      postfix@-.service) block postfix@-.service "$POSTFIX_MASTER" "" "";;
      dovecot.service) block dovecot.service active "" enabled;;
      saslauthd) block saslauthd.service active "" generated;;
      *) block "$u" inactive "" "";;
    esac; done;;
  is-enabled) echo "$SASL_ENABLED";;
esac
"""


def states(
    tmp_path: Path,
    units: tuple[str, ...],
    master: str = "active",
    sasl: str = "enabled",
    parts: tuple[str, ...] = (),
    postfix_type: str = "",
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "POSTFIX_MASTER": master,
        "SASL_ENABLED": sasl,
        "POSTFIX_TYPE": postfix_type,
    }
    script = MailHostSnapshot().command(SnapshotSpec("debian", units=units, parts=parts))
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    return MailHostSnapshot().process(out.splitlines()).units, calls.read_text().splitlines()


def test_all_units_in_two_show_calls(tmp_path: Path) -> None:
    got, calls = states(tmp_path, ("postfix.service", "dovecot.service", "nosuch.service"))
    assert got == {
        "postfix.service": ("active", "enabled"),
        "dovecot.service": ("active", "enabled"),
        "nosuch.service": ("inactive", ""),
    }
    assert [c.split()[0] for c in calls] == ["show", "show"]


def test_wrapper_unit_is_as_active_as_its_parts(tmp_path: Path) -> None:
    got, _ = states(tmp_path, ("postfix.service",), master="failed")
    assert got["postfix.service"] == ("failed", "enabled")


@pytest.mark.parametrize("answer", ["enabled", "disabled"])
def test_sysv_generated_unit_asks_is_enabled(tmp_path: Path, answer: str) -> None:
    got, calls = states(tmp_path, ("dovecot.service", "saslauthd"), sasl=answer)
    assert got["saslauthd"] == ("active", answer)
    assert calls[-1] == "is-enabled saslauthd.service"


@pytest.mark.parametrize("master", ["active", "failed"])
def test_known_parts_are_read_in_the_first_call(tmp_path: Path, master: str) -> None:
    got, calls = states(
        tmp_path, ("postfix.service", "dovecot.service"), master=master, parts=("postfix@-.service",)
    )
    assert got["postfix.service"] == (master, "enabled")
    assert [c.split()[0] for c in calls] == ["show"]


def test_a_unit_with_its_own_process_is_judged_alone(tmp_path: Path) -> None:
    """Debian 13's postfix.service runs the master itself (Type=forking); systemd still lists the
    postfix@ template's instance in ConsistsOf, inactive because it conflicts: it must not count."""
    got, calls = states(tmp_path, ("postfix.service",), master="inactive", postfix_type="forking")
    assert got["postfix.service"] == ("active", "enabled")
    assert [c.split()[0] for c in calls] == ["show"]
