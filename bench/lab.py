"""Benchmark of the lab (not a test): boot times from the cached image, image build time, idle memory.

    sudo .venv/bin/python bench/lab.py              # uses the cached image (builds it if missing)
    sudo .venv/bin/python bench/lab.py --cold-build # also times a first image build in a scratch cache

Uses its own lab (state dir /var/lib/pyinfra-mailserver/bench-lab, bridge msbench0, 10.213.90.0/24),
prints a table and merges the figures into bench/results.json under "lab" (other keys are kept).
Targets (issue 3): 1 host ≤ 2 s, 5 in parallel ≤ 5 s, first build ≤ 180 s, idle memory ≤ 50 MiB/host.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyinfra_mailserver.lab import cgroups, image
from pyinfra_mailserver.lab.manager import Lab
from pyinfra_mailserver.lab.ssh import ssh_run
from pyinfra_mailserver.lab.state import LabError, default_release, load
from pyinfra_mailserver.lab.util import check_preconditions

RESULTS = Path(__file__).resolve().parent / "results.json"
MIB = 1024 * 1024
TARGETS = {"one_host_s": 2.0, "five_hosts_s": 5.0, "image_build_s": 180.0, "idle_memory_mib": 50.0}


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    result = fn()
    return time.monotonic() - t0, result


def cold_build(release: str) -> float:
    """A first build exactly as `lab up` does it, into a scratch cache so the real one stays."""
    scratch = Path(tempfile.mkdtemp(prefix="lab-bench-cache-", dir="/var/cache"))
    try:
        _, took = image.ensure_image(release, scratch, log=False)
        assert took is not None
        return took
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def idle_memory(lab: Lab, settle: float) -> list[dict[str, Any]]:
    """Memory charged to each host's own cgroup once systemd reports the boot finished and the host
    sat idle for `settle` seconds (the bench waits on purpose here: it measures an idle host)."""
    st = load(lab.state_dir)
    hosts = st.sorted_hosts()
    with ThreadPoolExecutor(len(hosts)) as pool:
        states = list(
            pool.map(lambda h: ssh_run(st.key_path, h.ip, "systemctl is-system-running --wait").stdout, hosts)
        )
    time.sleep(settle)
    rows = []
    for h, state in zip(hosts, states, strict=True):
        usage = cgroups.memory_usage(h.cgroups) or 0
        stat = cgroups.memory_stat(h.cgroups)
        rows.append(
            {
                "host": h.name,
                "state": state.strip(),
                "usage_mib": round(usage / MIB, 1),
                "rss_mib": round(stat.get("total_rss", stat.get("anon", 0)) / MIB, 1),
                "cache_mib": round(stat.get("total_cache", stat.get("file", 0)) / MIB, 1),
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold-build", action="store_true", help="also time a first image build")
    ap.add_argument("--rounds", type=int, default=3, help="repetitions of the 1-host and 5-host boots")
    ap.add_argument("--settle", type=float, default=5.0, help="idle seconds before reading memory")
    ap.add_argument("--release", default=default_release(), help="Debian release (default: the lab's)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results.json")
    args = ap.parse_args()
    try:
        check_preconditions()
    except LabError as e:
        print(f"bench: {e}", file=sys.stderr)
        return e.exit_code

    figures: dict[str, object] = {"release": args.release}
    if args.cold_build:
        figures["image_build_s"] = round(cold_build(args.release), 1)
    t_img, (img, built) = timed(lambda: image.ensure_image(args.release))
    if built is not None and "image_build_s" not in figures:
        figures["image_build_s"] = round(built, 1)
    figures["image_cached_lookup_s"] = round(t_img, 3) if built is None else None
    figures["image_size_mib"] = round(
        int(subprocess.run(["du", "-sb", str(img.rootfs)], capture_output=True, text=True).stdout.split()[0])
        / MIB
    )

    lab = Lab(Path("/var/lib/pyinfra-mailserver/bench-lab"), subnet="10.213.90.0/24", bridge="msbench0")
    lab.down()
    one, five, cold, down5 = [], [], [], []
    memory: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            # Cold: bridge + apt proxy + 1 host, as a first `mailserver lab up` does.
            t, _ = timed(lambda: lab.up(1, release=args.release))
            cold.append(t)
            # One more host into a running lab: sshd answering.
            t, _ = timed(lambda: lab.add(1, release=args.release))
            one.append(t)
            lab.down()
            lab.up(1, release=args.release)
            t, _ = timed(lambda: lab.add(5, release=args.release))
            five.append(t)
            if r == 0:
                memory = idle_memory(lab, args.settle)
            names = [h.name for h in load(lab.state_dir).sorted_hosts()][1:]
            t, _ = timed(lambda names=names: lab.down(names))
            down5.append(t)
            lab.down()
    finally:
        lab.down()

    usage = [m["usage_mib"] for m in memory]
    figures.update(
        {
            "one_host_s": round(statistics.median(one), 2),
            "one_host_max_s": round(max(one), 2),
            "cold_up_one_host_s": round(statistics.median(cold), 2),
            "five_hosts_s": round(statistics.median(five), 2),
            "five_hosts_max_s": round(max(five), 2),
            "down_five_hosts_s": round(statistics.median(down5), 2),
            "idle_memory_mib": round(statistics.mean(usage), 1) if usage else None,
            "idle_memory_max_mib": max(usage) if usage else None,
            "idle_memory_hosts": memory,
            "rounds": args.rounds,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores",
        }
    )

    previous = json.loads(RESULTS.read_text()).get("lab", {}) if RESULTS.exists() else {}
    if "image_build_s" not in figures and "image_build_s" in previous:
        figures["image_build_s"] = previous["image_build_s"]  # kept from an earlier --cold-build run
    rows = [
        ("1 new host, sshd answering (median)", "one_host_s", "s"),
        ("  worst of rounds", "one_host_max_s", "s"),
        ("5 hosts in parallel (median)", "five_hosts_s", "s"),
        ("  worst of rounds", "five_hosts_max_s", "s"),
        ("cold `lab up` 1 host (bridge+proxy+host)", "cold_up_one_host_s", "s"),
        ("down 5 hosts", "down_five_hosts_s", "s"),
        ("first image build", "image_build_s", "s"),
        ("cached image lookup", "image_cached_lookup_s", "s"),
        ("image size", "image_size_mib", "MiB"),
        ("idle memory per host (mean, cgroup)", "idle_memory_mib", "MiB"),
        ("idle memory per host (max)", "idle_memory_max_mib", "MiB"),
    ]
    print(f"{'measure':44} {'value':>10}  {'target':>8}")
    for label, key, unit in rows:
        val = figures.get(key)
        target_key = key.replace("_max", "") if key.endswith("_max_s") or key.endswith("_max_mib") else key
        target = TARGETS.get(target_key)
        ok = "" if target is None or val is None else ("  ok" if float(val) <= target else "  MISSED")  # type: ignore[arg-type]
        tgt = f"≤{target:g}" if target else ""
        print(f"{label:44} {('-' if val is None else f'{val} {unit}'):>10}  {tgt:>8}{ok}")
    for m in memory:
        detail = f"rss {m['rss_mib']}, page cache {m['cache_mib']}"
        print(f"  {m['host']}: {m['usage_mib']} MiB ({detail}) {m['state']}")

    if not args.no_save:
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        data["lab"] = figures
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nwrote {RESULTS} (key 'lab')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
