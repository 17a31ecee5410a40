"""P3: the no-change main job over 1, 5 and 10 deployed hosts at once; target ≤ 1.5 × the one-host time
at 10. Also the controller's peak RSS during the 10-host run (wait4's ru_maxrss of the pyinfra process).

Beside each count, `pyinfra exec -- true` over the same hosts: pyinfra's own scaling on this machine.
Every lab host shares the controller's 2 cores, so at 10 hosts the hosts' own work (sha256sum, postconf,
doveconf, systemctl on each) competes with the controller for CPU — that floor's ratio shows how much of
the growth no deploy code can remove. A closing `mailserver deploy --json` over all hosts proves the
runs changed nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from common import MAIN_JOB, BenchError, BenchLab, interleaved, median, now, ratio

TARGET_RATIO = 1.5


def run(bl: BenchLab, args: argparse.Namespace) -> dict[str, Any]:
    counts = sorted({int(c) for c in args.p3_hosts.split(",")})
    hosts = bl.ensure_deployed(max(counts))
    rss: dict[int, list[int]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    host_cpu: dict[int, list[float]] = {n: [] for n in counts}

    def main_job(n: int) -> float:
        before = bl.host_cpu_s(hosts[:n])
        t = bl.pyinfra(hosts[:n], MAIN_JOB)
        host_cpu[n].append(bl.host_cpu_s(hosts[:n]) - before)
        if t.returncode != 0:
            raise BenchError(f"no-change main job over {n} hosts failed:\n{t.tail()}")
        rss[n].append(t.maxrss_kib)
        cpu[n].append(t.cpu_s)
        return t.seconds

    def exec_true(n: int) -> float:
        t = bl.pyinfra(hosts[:n], "exec", "--", "true")
        if t.returncode != 0:
            raise BenchError(f"exec -- true over {n} hosts failed:\n{t.tail()}")
        return t.seconds

    runners = {f"deploy_{n}": (lambda n=n: main_job(n)) for n in counts}
    runners.update({f"exec_true_{n}": (lambda n=n: exec_true(n)) for n in (counts[0], counts[-1])})
    bl.log(f"P3: {args.rounds} interleaved rounds over {counts} hosts")
    s = interleaved(args.rounds, runners)

    check = bl.mailserver("deploy", hosts, "--json").json()
    changed = sum(h["changed"] for h in check["hosts"])
    if not check["success"] or changed:
        raise BenchError(f"the no-change runs were not: success={check['success']}, changed={changed}")

    lo, hi = counts[0], counts[-1]
    fig: dict[str, Any] = {f"hosts_{n}_s": median(s[f"deploy_{n}"]) for n in counts}
    fig.update(
        {
            "counts": counts,
            f"ratio_{hi}_vs_{lo}": ratio(fig[f"hosts_{hi}_s"], fig[f"hosts_{lo}_s"]),
            "ratio": ratio(fig[f"hosts_{hi}_s"], fig[f"hosts_{lo}_s"]),
            f"exec_true_{lo}_s": median(s[f"exec_true_{lo}"]),
            f"exec_true_{hi}_s": median(s[f"exec_true_{hi}"]),
            "exec_true_ratio": ratio(median(s[f"exec_true_{hi}"]), median(s[f"exec_true_{lo}"])),
            "peak_rss_mib": {str(n): round(max(v) / 1024, 1) for n, v in rss.items()},
            "controller_cpu_s": {str(n): median(v) for n, v in cpu.items()},
            "hosts_cpu_s": {str(n): median(v) for n, v in host_cpu.items()},
            "controller_peak_rss_mib": round(max(rss[hi]) / 1024, 1),
            "changed": changed,
            "round_trips_per_host": sorted({h["round_trips"] for h in check["hosts"]}),
            "target_ratio": TARGET_RATIO,
            "samples": {k: [round(x, 2) for x in v] for k, v in s.items()},
            "rounds": args.rounds,
            "measured_at": now(),
        }
    )
    return fig


def rows(fig: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    counts = fig["counts"]
    lo, hi = counts[0], counts[-1]
    out: list[tuple[str, str, str, bool | None]] = [
        (
            f"P3 no-change main job, {n} host{'s' if n > 1 else ''} at once",
            f"{fig[f'hosts_{n}_s']} s",
            "",
            None,
        )
        for n in counts
    ]
    out += [
        (
            f"P3 ratio {hi} hosts / {lo}",
            f"{fig['ratio']}x",
            f"≤{TARGET_RATIO}x",
            fig["ratio"] <= TARGET_RATIO,
        ),
        (
            f"P3 floor: exec -- true {hi} / {lo} hosts",
            f"{fig['exec_true_ratio']}x ({fig[f'exec_true_{hi}_s']}/{fig[f'exec_true_{lo}_s']})",
            "",
            None,
        ),
        (f"P3 controller peak RSS, {hi} hosts", f"{fig['controller_peak_rss_mib']} MiB", "", None),
        (
            f"P3 controller CPU (user+sys), {lo} / {hi} hosts",
            f"{fig['controller_cpu_s'][str(lo)]} / {fig['controller_cpu_s'][str(hi)]} s",
            "",
            None,
        ),
        (
            f"P3 lab hosts' CPU (all of them), {lo} / {hi} hosts",
            f"{fig['hosts_cpu_s'][str(lo)]} / {fig['hosts_cpu_s'][str(hi)]} s",
            "",
            None,
        ),
    ]
    return out
