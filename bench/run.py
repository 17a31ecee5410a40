"""Run the deploy/audit benchmarks of issue 7 on the bench's own lab; print a table; merge the figures
into bench/results.json (key "deploy_bench", every other key kept).

    sudo bench/run                     # everything: p1 p2 p3 p4 p5, then the lab goes down
    sudo bench/run p2 p4 --keep        # a subset; --keep leaves the lab (and its deployed hosts) up
    sudo bench/run lab                 # bench/lab.py (lab boot figures, key "lab")
    sudo bench/run --down              # only tear the bench lab down

Figures run in the order given; each reuses hosts an earlier one deployed (roles in the lab state dir),
so `bench/run p2 --keep` then `bench/run p3 --keep` deploys only what is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

from common import BIN, REPO, RESULTS, BenchError, BenchLab, merge_results, now

FIGURES = {
    "p1": "p1_cold_deploy",
    "p2": "p2_no_change",
    "p3": "p3_scale",
    "p4": "p4_audit_drift",
    "p5": "p5_throughput",
}
KEY = "deploy_bench"


def module(name: str) -> ModuleType:
    return importlib.import_module(FIGURES[name])


def table(results: dict[str, Any]) -> str:
    """The figures with their targets, one line each, in figure order."""
    lines = [f"{'figure':52} {'value':>16}  {'target':>9}"]
    for name in FIGURES:
        if name not in results:
            continue
        for label, value, target, ok in module(name).rows(results[name]):
            mark = "" if ok is None else ("  ok" if ok else "  ABOVE TARGET")
            lines.append(f"{label:52} {value:>16}  {target:>9}{mark}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("figures", nargs="*", help=f"subset: lab {' '.join(FIGURES)} (default: all but lab)")
    ap.add_argument("--keep", action="store_true", help="leave the bench lab up at the end")
    ap.add_argument("--down", action="store_true", help="only tear the bench lab down")
    ap.add_argument("--rounds", type=int, default=5, help="repetitions of the short figures (median)")
    ap.add_argument("--p1-rounds", type=int, default=1, help="cold deploy/floor pairs (2 fresh hosts each)")
    ap.add_argument("--p3-hosts", default="1,10,30", help="host counts of P3")
    ap.add_argument("--p4-hosts", type=int, default=10, help="many-host side of P4 (its target is for 10)")
    ap.add_argument(
        "--p4-big-rounds",
        type=int,
        default=None,
        help="many-host audit/drift repetitions (default: --rounds), alternating with 1 host",
    )
    ap.add_argument("--p5-messages", type=int, default=1000, help="messages per smtp-source run")
    ap.add_argument("--p5-size", type=int, default=4096, help="message size in bytes")
    ap.add_argument("--p5-sessions", type=int, default=5, help="parallel SMTP sessions")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args()

    bl = BenchLab()
    if args.down:
        bl.down()
        return 0
    wanted = args.figures or list(FIGURES)
    unknown = [f for f in wanted if f not in FIGURES and f != "lab"]
    if unknown:
        ap.error(f"unknown figure(s): {', '.join(unknown)}")
    if "lab" in wanted:
        subprocess.run([str(BIN / "python"), str(REPO / "bench" / "lab.py")], check=False)
        wanted = [f for f in wanted if f != "lab"]
        if not wanted:
            return 0

    previous = json.loads(RESULTS.read_text()).get(KEY, {}) if RESULTS.exists() else {}
    results: dict[str, Any] = dict(previous)
    failed: list[str] = []
    try:
        for name in wanted:
            t0 = time.monotonic()
            bl.log(f"== {name} ==")
            try:
                results[name] = module(name).run(bl, args)
            except BenchError as e:
                failed.append(name)
                bl.log(f"{name} FAILED: {e}")
                continue
            bl.log(f"== {name} took {time.monotonic() - t0:.0f} s")
            if not args.no_save:  # save as we go: a later failure keeps the figures measured so far
                results["updated_at"] = now()
                merge_results({KEY: results})
    finally:
        if not args.keep:
            bl.log("bench lab down")
            bl.down()
    print()
    print(table(results))
    if not args.no_save:
        print(f"\nwrote {RESULTS} (key {KEY!r})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
