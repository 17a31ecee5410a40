"""P3: the no-change main job over 1, 10 and 30 deployed hosts at once; targets ≤ 1.4 × the one-host
time at 10 and ≤ 2.0 × at 30, and the controller's peak RSS at 30 (wait4's ru_maxrss of the pyinfra
process) no higher than 76 MiB.

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

# the largest count's target, and the others' (count -> ratio to one host)
TARGETS = {10: 1.4, 30: 2.0}
TARGET_RATIO = 2.0
TARGET_RSS_MIB = 76.0


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
    runners.update({f"exec_true_{n}": (lambda n=n: exec_true(n)) for n in counts})
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
            **{f"ratio_{n}_vs_{lo}": ratio(fig[f"hosts_{n}_s"], fig[f"hosts_{lo}_s"]) for n in counts},
            **{f"exec_true_{n}_s": median(s[f"exec_true_{n}"]) for n in counts},
            **{
                f"exec_true_ratio_{n}_vs_{lo}": ratio(
                    median(s[f"exec_true_{n}"]), median(s[f"exec_true_{lo}"])
                )
                for n in counts
            },
            "exec_true_ratio": ratio(median(s[f"exec_true_{hi}"]), median(s[f"exec_true_{lo}"])),
            "peak_rss_mib": {str(n): round(max(v) / 1024, 1) for n, v in rss.items()},
            "controller_cpu_s": {str(n): median(v) for n, v in cpu.items()},
            "hosts_cpu_s": {str(n): median(v) for n, v in host_cpu.items()},
            "controller_peak_rss_mib": round(max(rss[hi]) / 1024, 1),
            "changed": changed,
            "round_trips_per_host": sorted({h["round_trips"] for h in check["hosts"]}),
            "target_ratio": TARGET_RATIO,
            "targets": {str(n): t for n, t in TARGETS.items()},
            "target_rss_mib": TARGET_RSS_MIB,
            "samples": {k: [round(x, 2) for x in v] for k, v in s.items()},
            "rounds": args.rounds,
            "measured_at": now(),
        }
    )
    return fig


def rows(fig: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    counts = fig["counts"]
    lo, hi = counts[0], counts[-1]
    targets = {int(n): t for n, t in fig.get("targets", {str(hi): fig["target_ratio"]}).items()}
    out: list[tuple[str, str, str, bool | None]] = [
        (
            f"P3 no-change main job, {n} host{'s' if n > 1 else ''} at once",
            f"{fig[f'hosts_{n}_s']} s",
            "",
            None,
        )
        for n in counts
    ]
    for n in counts[1:]:
        got = fig.get(f"ratio_{n}_vs_{lo}", fig["ratio"] if n == hi else None)
        target = targets.get(n)
        out.append(
            (
                f"P3 ratio {n} hosts / {lo}",
                f"{got}x",
                f"≤{target}x" if target else "",
                (got <= target) if (target and got is not None) else None,
            )
        )
        floor = fig.get(f"exec_true_ratio_{n}_vs_{lo}")
        if floor is not None:
            out.append((f"P3 floor: exec -- true {n} / {lo} hosts", f"{floor}x", "", None))
    rss = fig["controller_peak_rss_mib"]
    limit = fig.get("target_rss_mib")
    out += [
        (
            f"P3 controller peak RSS, {hi} hosts",
            f"{rss} MiB",
            f"≤{limit:g} MiB" if limit else "",
            (rss <= limit) if limit else None,
        ),
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
