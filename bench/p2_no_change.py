"""P2: a no-change re-run of the main job on a deployed host: wall time (median) and what it runs on the
host; targets ≤ 2 s, ≤ 1.1 × pyinfra's own `exec -- true`, and 0 changes.

Measured side by side, interleaved, in the same run:
- the main job, `pyinfra -y INVENTORY --limit HOST deploys/deploy_mailserver.py` (the figure);
- `mailserver deploy --json` (same deploy through pyinfra's API): changed operations, commands executed
  by operations, round trips (every shell command, facts included, and every upload), inside-seconds;
- floor 1: `pyinfra -y INVENTORY --limit HOST exec -- true` — pyinfra 3.10's own cost (start-up,
  inventory, connect), which no deploy can go below;
- floor 2: one plain SSH session that hashes and stats every managed file and runs `postconf -n` and
  `doveconf -n` — the least work that can prove "nothing changed".
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from common import MAIN_JOB, BenchError, BenchLab, interleaved, median, now, ratio

TARGET_S = 2.0
TARGET_RATIO = 1.1


def check_command(paths: list[str]) -> str:
    """Floor 2's shell command: what a minimal no-change check must read on the host."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (
        f"sha256sum {quoted} >/dev/null && stat -c '%U %G %a %Y %n' {quoted} >/dev/null && "
        "postconf -n >/dev/null && doveconf -n >/dev/null"
    )


def run(bl: BenchLab, args: argparse.Namespace) -> dict[str, Any]:
    [host] = bl.ensure_deployed(1)
    manifest = bl.manifest(host.fqdn)
    paths = [f.path for f in manifest.files]
    floor_cmd = check_command(paths)
    reports: list[dict[str, Any]] = []

    def main_job() -> float:
        t = bl.pyinfra([host], MAIN_JOB)
        if t.returncode != 0:
            raise BenchError(f"no-change main job failed on {host.name}:\n{t.tail()}")
        return t.seconds

    def mailserver_deploy() -> float:
        t = bl.mailserver("deploy", [host], "--json")
        report = t.json()
        [h] = report["hosts"]
        if not report["success"] or h["changed"]:
            changed = [o["name"] for o in h["operations"] if o["changed"]]
            raise BenchError(f"no-change run on {host.name}: success={report['success']}, changed={changed}")
        reports.append(h)
        return t.seconds

    def exec_true() -> float:
        t = bl.pyinfra([host], "exec", "--", "true")
        if t.returncode != 0:
            raise BenchError(f"pyinfra exec -- true failed:\n{t.tail()}")
        return t.seconds

    def ssh_floor() -> float:
        t = bl.ssh(host, floor_cmd)
        if t.returncode != 0:
            raise BenchError(f"floor SSH session failed:\n{t.tail()}")
        return t.seconds

    bl.log(f"P2: {args.rounds} interleaved rounds on {host.name}")
    s = interleaved(
        args.rounds,
        {
            "main_job": main_job,
            "mailserver_deploy": mailserver_deploy,
            "exec_true": exec_true,
            "ssh_floor": ssh_floor,
        },
    )
    last = reports[-1]
    main = median(s["main_job"])
    return {
        "host": host.fqdn,
        "main_job_s": main,
        "main_job_max_s": round(max(s["main_job"]), 2),
        "mailserver_deploy_s": median(s["mailserver_deploy"]),
        "mailserver_deploy_inside_s": median([r["seconds"]["total"] for r in reports]),
        "changed": max(r["changed"] for r in reports),
        "operations": len(last["operations"]),
        "commands_executed": last["commands_executed"],
        "round_trips": last["round_trips"],
        "shell_commands": last["shell_commands"],
        "uploads": last["uploads"],
        "services_reloaded": last["services_reloaded"],
        "floor_pyinfra_exec_true_s": median(s["exec_true"]),
        "floor_ssh_check_s": median(s["ssh_floor"]),
        "floor_sum_s": round(median(s["exec_true"]) + median(s["ssh_floor"]), 2),
        "ratio_to_exec_true": ratio(main, median(s["exec_true"])),
        "managed_files": len(paths),
        "target_s": TARGET_S,
        "samples": {k: [round(x, 2) for x in v] for k, v in s.items()},
        "rounds": args.rounds,
        "measured_at": now(),
    }


def rows(fig: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    return [
        (
            "P2 no-change main job, 1 host (median)",
            f"{fig['main_job_s']} s",
            f"≤{TARGET_S:g} s",
            fig["main_job_s"] <= TARGET_S,
        ),
        ("P2 changed operations", str(fig["changed"]), "0", fig["changed"] == 0),
        (
            "P2 round trips (shell commands + uploads)",
            f"{fig['round_trips']} ({fig['shell_commands']}+{fig['uploads']})",
            "",
            None,
        ),
        ("P2 commands executed by operations", str(fig["commands_executed"]), "", None),
        (
            "P2 `mailserver deploy` wall / inside",
            f"{fig['mailserver_deploy_s']} / {fig['mailserver_deploy_inside_s']} s",
            "",
            None,
        ),
        ("P2 floor: pyinfra exec -- true", f"{fig['floor_pyinfra_exec_true_s']} s", "", None),
        ("P2 floor: one SSH session hash+postconf+doveconf", f"{fig['floor_ssh_check_s']} s", "", None),
        (
            "P2 ratio main job / exec -- true",
            f"{fig['ratio_to_exec_true']}x",
            f"≤{TARGET_RATIO}x",
            fig["ratio_to_exec_true"] <= TARGET_RATIO,
        ),
    ]
