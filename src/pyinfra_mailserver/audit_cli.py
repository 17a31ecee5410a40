"""`mailserver drift` and `mailserver audit`: check live hosts against the inventory, for people and CI."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pyinfra_mailserver.report import (
    EXIT_UNREACHABLE,
    CheckResult,
    Severity,
    Status,
    exit_code,
    print_table,
    to_json,
    to_junit,
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("inventory", help="pyinfra inventory file (e.g. inventories/lab.py)")
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="HOST|GROUP",
        help="only these hosts or groups (repeatable; pyinfra --limit semantics)",
    )
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="override host data")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report (one test case per check)")
    p.add_argument("--failures-only", action="store_true", help="table: hide passed checks")
    p.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default=Severity.LOW.value,
        help="lowest severity of a finding that makes the exit code 1 (default: low)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show pyinfra's connection log")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `mailserver drift` and `mailserver audit` to the parser."""
    d = sub.add_parser(
        "drift",
        help="compare live hosts with what the inventory renders (read-only)",
        description="Compare each host's files, effective Postfix/Dovecot settings, maps, packages, services "
        "and sockets with its Manifest. Exit 0 clean, 1 drift, 2 unreachable host or invalid data.",
    )
    _common(d)
    d.set_defaults(func=run_drift)
    a = sub.add_parser(
        "audit",
        help="function and security checks from outside (protocol probes) and inside the hosts",
        description="Probe every port the model opens (relay, AUTH, TLS, logins) and check keys, "
        "password files, saslauthd, the queue and the mail log. Exit 0 clean, 1 findings, 2 unreachable "
        "host or invalid data.",
    )
    _common(a)
    a.add_argument(
        "--ca",
        metavar="FILE",
        help="CA file to verify the hosts' certificates with "
        "(default: the generated CA in the secrets directory, else the system store)",
    )
    a.add_argument("--no-probes", action="store_true", help="skip the outside-in protocol probes")
    a.add_argument("--no-inside", action="store_true", help="skip the checks run on the hosts")
    a.add_argument(
        "--dns-resolver",
        metavar="IP",
        default=None,
        help="DNS server for the DNS section (default: host data mailserver_audit.dns_resolver; "
        "without one the DNS checks are skipped)",
    )
    a.add_argument(
        "--log-since",
        metavar="WHEN",
        default=None,
        help="mail log window: a duration (6h, 30min), or journalctl --since syntax (@EPOCH, "
        "'YYYY-MM-DD HH:MM', --log-since=-6h); "
        "default: host data mailserver_audit.log_window, else -24h",
    )
    a.add_argument("--timeout", type=float, default=10.0, help="seconds per network operation (default 10)")
    a.set_defaults(func=run_audit)


def _setup(args: argparse.Namespace) -> None:
    # gevent must patch the standard library before pyinfra (and paramiko) import it.
    from gevent import monkey

    monkey.patch_all()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO if args.verbose else logging.ERROR, format="%(message)s"
    )


def _emit(args: argparse.Namespace, command: str, results: Sequence[CheckResult]) -> int:
    fail_on = Severity(args.fail_on)
    if args.junit:
        Path(args.junit).write_text(to_junit(results, command))
    if args.json:
        sys.stdout.write(to_json(results, command, fail_on) + "\n")
    else:
        print_table(results, command, show_passed=not args.failures_only, fail_on=fail_on)
    return exit_code(results, fail_on)


def _run(args: argparse.Namespace, command: str, body: Callable[[list[Any]], list[CheckResult]]) -> int:
    _setup(args)
    from pyinfra_mailserver.audit import remote

    override = dict(kv.split("=", 1) for kv in args.data)
    try:
        targets, problems = remote.connect(args.inventory, args.limit, command, override)
    except (FileNotFoundError, LookupError) as e:
        print(f"mailserver {command}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        results = problems + body(targets)
    finally:
        remote.disconnect(targets)
    if not results:
        results = [
            CheckResult(
                f"{command}.hosts",
                "-",
                Status.ERROR,
                "no host with mailserver data to check",
                section=command,
            )
        ]
    return _emit(args, command, results)


def run_drift(args: argparse.Namespace) -> int:
    from pyinfra_mailserver import drift

    return _run(args, "drift", drift.run_all)


def run_audit(args: argparse.Namespace) -> int:
    from pyinfra_mailserver.audit import checks

    if args.ca and not Path(args.ca).is_file():
        print(f"mailserver audit: --ca {args.ca}: no such file", file=sys.stderr)
        return EXIT_UNREACHABLE
    options = checks.AuditOptions(
        ca_file=args.ca,
        probes=not args.no_probes,
        inside=not args.no_inside,
        dns_resolver=args.dns_resolver,
        timeout=args.timeout,
        log_since=args.log_since,
    )
    return _run(args, "audit", lambda targets: checks.run_all(targets, options))
