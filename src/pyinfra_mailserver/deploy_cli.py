"""`mailserver deploy INVENTORY`: the main job through pyinfra's API, with per-host results as JSON.

The same `deploy_mailserver` as `pyinfra INVENTORY deploys/deploy_mailserver.py`, but the results come
from pyinfra's own state (operations, which changed, commands run, round trips to the host), so tests
and benchmarks assert on data rather than log text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `mailserver deploy` to the `mailserver` parser."""
    p = sub.add_parser(
        "deploy",
        help="deploy the mail stack to the hosts of an inventory (pyinfra API), results as JSON",
        description="Provision every host of INVENTORY as its data describes, then verify it.",
    )
    p.add_argument("inventory", help="pyinfra inventory file (e.g. inventories/lab.py)")
    p.add_argument("--limit", action="append", default=[], help="only these hosts or groups (repeatable)")
    p.add_argument("--json", action="store_true", help="print per-host results as JSON on stdout")
    p.add_argument("--dry", action="store_true", help="plan only: show what would change, change nothing")
    p.add_argument("--diff", action="store_true", help="show file diffs (secrets masked)")
    p.add_argument("--data", action="append", default=[], help="override host data, KEY=VALUE")
    p.add_argument(
        "--timings",
        action="store_true",
        help="with --json: each round trip's first words and seconds (for bench/)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="pyinfra verbosity")
    p.set_defaults(func=run)


class _Counter:
    """Counts what crosses the wire to one host: shell commands (facts included) and uploads."""

    def __init__(self, host: Any) -> None:
        self.commands = 0
        self.uploads = 0
        self.timings: list[tuple[str, float]] = []  # (what, seconds) per round trip, for --timings
        run, put = host.run_shell_command, host.put_file

        def counted_run(*args: Any, **kwargs: Any) -> Any:
            self.commands += 1
            t = time.monotonic()
            try:
                return run(*args, **kwargs)
            finally:
                what = _label(args[0] if args else kwargs.get("command"))
                self.timings.append((what, time.monotonic() - t))

        def counted_put(*args: Any, **kwargs: Any) -> Any:
            self.uploads += 1
            t = time.monotonic()
            try:
                return put(*args, **kwargs)
            finally:
                self.timings.append(("upload", time.monotonic() - t))

        host.run_shell_command = counted_run
        host.put_file = counted_put


def _label(command: Any) -> str:
    """A short, secret-free name for a command: its first words (commands never carry secrets, and the
    first 60 characters are enough to tell which fact or operation it was)."""
    text = command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)
    return " ".join(text.split())[:60]


class _ErrorLog(logging.Handler):
    """Keeps pyinfra's error lines (checker messages, verification misses) for the JSON report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        import click

        self.lines.append(click.unstyle(record.getMessage()))


def _limit_hosts(inventory: Any, names: list[str]) -> list[Any] | None:
    if not names:
        return None
    hosts = []
    for name in names:
        group = inventory.get_group(name, None) if hasattr(inventory, "get_group") else None
        if group:
            hosts.extend(group)
            continue
        host = inventory.get_host(name, None)
        if host is None:
            short = [h for h in inventory if h.name.split(".")[0] == name]
            if not short:
                raise SystemExit(f"mailserver deploy: no host or group {name!r} in the inventory")
            hosts.extend(short)
        else:
            hosts.append(host)
    return hosts


class _OpNames(dict):  # type: ignore[type-arg]
    """(host name, op hash) -> that host's operation name, filled as operations are added."""


def _record_op_names() -> _OpNames:
    """Remember each host's own operation names (pyinfra merges them per position in API mode)."""
    import importlib

    op_module = importlib.import_module("pyinfra.api.operation")  # the module, not the decorator

    names = _OpNames()
    real = op_module.generate_operation_name
    real_solve = op_module.solve_operation_consistency
    pending: dict[str, str] = {}

    def generate(func: Any, host: Any, kwargs: Any, global_arguments: Any) -> Any:
        result = real(func, host, kwargs, global_arguments)
        pending[host.name] = sorted(result[0])[0]
        return result

    def solve(names_: Any, state: Any, host: Any) -> Any:
        op_order, op_hash = real_solve(names_, state, host)
        if host.name in pending:
            names[(host.name, op_hash)] = pending.pop(host.name)
        return op_order, op_hash

    op_module.generate_operation_name = generate  # type: ignore[attr-defined]
    op_module.solve_operation_consistency = solve  # type: ignore[attr-defined]
    return names


def run(args: argparse.Namespace) -> int:
    # gevent must patch the standard library before pyinfra (and paramiko) import it.
    from gevent import monkey

    monkey.patch_all()

    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage
    from pyinfra.context import ctx_host, ctx_state
    from pyinfra_cli.inventory import make_inventory

    from pyinfra_mailserver import preflight
    from pyinfra_mailserver.deploys import deploy_mailserver
    from pyinfra_mailserver.deploys.ops import host_record

    inventory_path = str(Path(args.inventory).resolve())
    os.environ.setdefault("MAILSERVER_INVENTORY", inventory_path)
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.append(cwd)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.json and not args.verbose else logging.INFO,
        format="%(message)s",
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    errors = _ErrorLog()
    logging.getLogger("pyinfra").addHandler(errors)

    override = dict(kv.split("=", 1) for kv in args.data)
    # Planning evaluates every operation twice (plan, then execute); a real run only needs the second.
    state = State(check_for_changes=bool(args.dry or args.diff))
    state.cwd = cwd
    with ctx_state.use(state):
        inventory = make_inventory(inventory_path, override_data=override or None, cwd=cwd)
    config = Config()
    config.DIFF = bool(args.diff)
    selected = _limit_hosts(inventory, args.limit) or list(inventory)
    # Data first, on the controller: a host whose data is invalid is never contacted, and every such
    # problem is listed at once (pyinfra_mailserver.preflight).
    failed_to_prepare: dict[str, str] = preflight.invalid_hosts(selected, inventory_path)
    valid = [h for h in selected if h.name not in failed_to_prepare]
    state.init(inventory, config, initial_limit=valid)
    if args.verbose:
        state.print_fact_info = state.print_noop_info = True

    counters = {h: _Counter(h) for h in inventory}
    op_names = _record_op_names()
    started = time.monotonic()
    crashed = None
    with ctx_state.use(state):
        # The stages the pyinfra CLI goes through: facts and caches are per stage (plan vs execute).
        state.set_stage(StateStage.Connect)
        if valid:
            try:
                connect_all(state)
            except PyinfraError as e:  # "No hosts remaining!": every host failed to connect
                crashed = str(e)
        for host in valid:
            if not host.connected:
                said = [line for line in errors.lines if f"[{host.name}]" in line or host.name in line]
                failed_to_prepare[host.name] = "could not connect" + (f": {said[-1]}" if said else "")
        connected = time.monotonic()
        state.set_stage(StateStage.Prepare)
        for host in [] if crashed else list(state.inventory.get_active_hosts()):
            with ctx_host.use(host):
                try:
                    deploy_mailserver(raise_errors=True)
                except PyinfraError:
                    raise
                except Exception as e:  # bad data, unsupported distro: this host only
                    failed_to_prepare[host.name] = f"{type(e).__name__}: {e}"
                    with contextlib.suppress(PyinfraError):
                        state.fail_hosts({host})
        prepared = time.monotonic()
        if not args.dry and not crashed and state.inventory.get_active_hosts():
            state.set_stage(StateStage.Execute)
            try:
                run_ops(state)
            except PyinfraError as e:
                crashed = str(e)
        state.set_stage(StateStage.Disconnect)
    finished = time.monotonic()

    results = []
    for host in selected:
        ops: list[dict[str, Any]] = []
        for op_hash in state.get_op_order():
            op_data = state.ops.get(host, {}).get(op_hash)
            if op_data is None:
                continue
            meta = op_data.operation_meta
            # pyinfra shares one name set per operation position across hosts; prefer this host's own.
            name = op_names.get((host.name, op_hash)) or ", ".join(sorted(state.op_meta[op_hash].names))
            if meta.is_complete():
                ops.append(
                    {
                        "name": name,
                        "changed": meta.did_change(),
                        "success": meta.did_succeed(),
                        "commands": len(meta._commands or []),
                    }
                )
            else:
                planned = bool(meta._maybe_is_change)
                ops.append({"name": name, "changed": planned, "success": None, "commands": 0})
        counter = counters[host]
        results.append(
            {
                "host": host.name,
                "success": host not in state.failed_hosts
                and host.name not in failed_to_prepare
                and not crashed,
                "dry": bool(args.dry),
                "operations": ops,
                "changed": sum(1 for o in ops if o["changed"]),
                "commands_executed": sum(o["commands"] for o in ops),
                "round_trips": counter.commands + counter.uploads,
                "shell_commands": counter.commands,
                "uploads": counter.uploads,
                "services_reloaded": host_record(host, "reloaded"),
                "files_changed": host_record(host, "files_changed"),
                "error": failed_to_prepare.get(host.name),
                **({"timings": [[w, round(s, 3)] for w, s in counter.timings]} if args.timings else {}),
                "seconds": {
                    "connect": round(connected - started, 3),
                    "prepare": round(prepared - connected, 3),
                    "execute": round(finished - prepared, 3),
                    "total": round(finished - started, 3),
                },
            }
        )
    ok = all(r["success"] for r in results) and bool(results)
    if args.json:
        json.dump({"success": ok, "hosts": results, "errors": errors.lines}, sys.stdout, indent=2)
        print()
    else:
        for r in results:
            if args.dry:
                for o in r["operations"]:
                    if o["changed"]:
                        print(f"{r['host']}: would change: {o['name']}")
            mark = "ok" if r["success"] else "FAILED"
            print(
                f"{r['host']}: {mark}, {r['changed']} of {len(r['operations'])} operations changed, "
                f"{r['round_trips']} round trips, reloaded: {', '.join(r['services_reloaded']) or '-'}, "
                f"{r['seconds']['total']} s" + (f" ({r['error']})" if r["error"] else "")
            )
    return 0 if ok else 1
