"""P5: the deployed Postfix accepts mail at ≥ 0.95 × the rate of a stock Debian Postfix on an identical lab
host, measured with Postfix's own `smtp-source` from the controller, same count, size and sessions.

Fairness: both hosts accept the recipient domain `discard.bench.test` as a relay domain routed to the
`discard:` transport — on the deployed host through its data (bench/inventory/group_data/bench.py),
on the stock host with the same two settings by `postconf -e` plus `inet_protocols = ipv4` (the lab
data's value; the lab network has no IPv6). Nothing else of Debian's stock main.cf is touched. So both
sides do the same delivery work, and only what the rendered config adds (restrictions, header_checks,
TLS offered in EHLO, ...) can make a difference. Runs alternate between the hosts; before each run the
previous run's queue has drained, so no delivery backlog loads the next one. One small unmeasured run
per host first (smtpd processes forked, maps opened).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import time
from typing import Any

from common import BenchError, BenchLab, Timed, interleaved, now, ratio, run_timed

from pyinfra_mailserver.lab.state import HostState

TARGET_RATIO = 0.95
DOMAIN = "discard.bench.test"


def stock_host(bl: BenchLab) -> HostState:
    """A host with Debian's postfix package as installed by apt (plus the discard route), never deployed."""
    have = bl.with_role("stock")
    if have:
        return have[0]
    host = (bl.with_role("warm") or bl.add(1, "warm"))[0]
    preseed = "\n".join(
        [
            "postfix postfix/main_mailer_type select Internet Site",
            f"postfix postfix/mailname string {host.fqdn}",
        ]
    )
    script = " && ".join(
        [
            f"printf '%s\\n' {shlex.quote(preseed)} | debconf-set-selections",
            "DEBIAN_FRONTEND=noninteractive apt-get update -q",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postfix",
            f"echo '{DOMAIN} discard:' > /etc/postfix/transport",
            "postmap /etc/postfix/transport",
            f"postconf -e relay_domains={DOMAIN} transport_maps=hash:/etc/postfix/transport "
            "inet_protocols=ipv4",
            "systemctl restart postfix",
            "postfix status",
        ]
    )
    bl.log(f"P5: installing stock Postfix on {host.name}")
    t = bl.ssh(host, script)
    if t.returncode != 0:
        raise BenchError(f"stock Postfix install on {host.name} failed:\n{t.tail()}")
    bl.set_role([host.fqdn], "stock")
    return host


def drain(bl: BenchLab, host: HostState, timeout: float = 120) -> None:
    """Wait (bounded) until the host's queue is empty, so a run never pays for the previous run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = bl.ssh(host, "postqueue -j | wc -l")
        if t.returncode == 0 and t.stdout.strip() == "0":
            return
        time.sleep(0.5)
    raise BenchError(f"{host.name}: queue not empty after {timeout} s")


def blast(bl: BenchLab, host: HostState, messages: int, size: int, sessions: int) -> Timed:
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    argv = [
        exe,
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(size),
        "-M",
        "controller.lab.test",
        "-f",
        "bench@controller.lab.test",
        "-t",
        f"bench@{DOMAIN}",
        f"{host.ip}:25",
    ]
    t = run_timed(argv, bl.env, timeout=600)
    if t.returncode != 0 or t.stderr.strip():
        raise BenchError(f"smtp-source against {host.name} failed (exit {t.returncode}):\n{t.tail()}")
    return t


def run(bl: BenchLab, args: argparse.Namespace) -> dict[str, Any]:
    if not (shutil.which("smtp-source") or shutil.which("/usr/sbin/smtp-source")):
        raise BenchError("smtp-source not found: apt-get install -y postfix (on the controller)")
    [deployed] = bl.ensure_deployed(1)
    stock = stock_host(bl)
    m, size, sess = args.p5_messages, args.p5_size, args.p5_sessions
    for h in (deployed, stock):
        drain(bl, h)
        blast(bl, h, max(20, m // 20), size, sess)
        drain(bl, h)

    def rate(host: HostState) -> float:
        drain(bl, host)
        return m / blast(bl, host, m, size, sess).seconds

    bl.log(f"P5: {args.rounds} alternating rounds of {m} x {size} B, {sess} sessions")
    s = interleaved(args.rounds, {"deployed": lambda: rate(deployed), "stock": lambda: rate(stock)})
    dep, st = sorted(s["deployed"])[len(s["deployed"]) // 2], sorted(s["stock"])[len(s["stock"]) // 2]
    return {
        "deployed_host": deployed.fqdn,
        "stock_host": stock.fqdn,
        "deployed_msgs_per_s": round(dep, 1),
        "stock_msgs_per_s": round(st, 1),
        "ratio": ratio(dep, st),
        "target_ratio": TARGET_RATIO,
        "messages": m,
        "size_bytes": size,
        "sessions": sess,
        "samples": {k: [round(x, 1) for x in v] for k, v in s.items()},
        "rounds": args.rounds,
        "measured_at": now(),
    }


def rows(fig: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    return [
        ("P5 deployed Postfix, smtp-source (median)", f"{fig['deployed_msgs_per_s']} msg/s", "", None),
        ("P5 stock Debian Postfix, smtp-source (median)", f"{fig['stock_msgs_per_s']} msg/s", "", None),
        (
            "P5 ratio deployed / stock",
            f"{fig['ratio']}x",
            f"≥{TARGET_RATIO}x",
            fig["ratio"] is not None and fig["ratio"] >= TARGET_RATIO,
        ),
    ]
