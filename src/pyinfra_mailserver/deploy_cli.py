"""`mailserver deploy INVENTORY`: the main job through pyinfra's API, with per-host results as JSON.

The same `deploy_mailserver` as `pyinfra INVENTORY deploys/deploy_mailserver.py`, run the way pyinfra's
API documentation shows (an `Inventory`, a `State`, `connect_all`, the deploy for each host, `run_ops`),
so tests and benchmarks assert on data rather than log text: which operations changed, what the plan
said (files changed, services reloaded), round trips to each host.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `mailserver deploy` to the `mailserver` parser."""
    p = sub.add_parser(
        "deploy",
        help="deploy the mail stack to the hosts of an inventory (pyinfra API), results as JSON",
        description="Provision every host of INVENTORY as its data describes, then verify it. Exit 0 "
        "every host deployed, 1 a deploy failed (the host keeps its previous config), 2 invalid data or "
        "an unreachable host.",
    )
    p.add_argument("inventory", help="pyinfra inventory file (e.g. inventories/lab.py)")
    p.add_argument("--limit", action="append", default=[], help="only these hosts or groups (repeatable)")
    p.add_argument("--json", action="store_true", help="print per-host results as JSON on stdout")
    p.add_argument("--dry", action="store_true", help="plan only: show what would change, change nothing")
    p.add_argument("--diff", action="store_true", help="show file diffs (secrets masked)")
    p.add_argument("--data", action="append", default=[], help="override host data, KEY=VALUE")
    p.add_argument(
        "--until",
        choices=("install", "configure", "activate"),
        default="activate",
        help="stop after this phase (activate, the default, also smoke-checks and verifies)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="pyinfra verbosity")
    p.set_defaults(func=run)


class Traffic(logging.Handler):
    """Counts what crosses the wire to each host, from pyinfra's connector log (commands name their
    host; an upload is the host's whose operation runs in the same greenlet, see `HostOfGreenlet`)."""

    def __init__(self, hosts_of: dict[Any, str]) -> None:
        super().__init__(logging.DEBUG)
        self.hosts_of = hosts_of
        self.state: Any = None
        self.commands: dict[str, int] = {}
        self.executed: dict[str, int] = {}  # while the operations run (not the planning's reads)
        self.uploads: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        import gevent

        msg = str(record.msg)
        if msg.startswith("Running command on") and record.args:
            name = str(record.args[0])  # type: ignore[index]
            self.hosts_of[gevent.getcurrent()] = name
            self.commands[name] = self.commands.get(name, 0) + 1
            if self.state is not None and self.state.is_executing:
                self.executed[name] = self.executed.get(name, 0) + 1
        elif msg.startswith("Attempting upload of"):
            name = self.hosts_of.get(gevent.getcurrent(), "")
            self.uploads[name] = self.uploads.get(name, 0) + 1


class _ErrorLog(logging.Handler):
    """Keeps pyinfra's error lines (checker messages, verification misses) for the JSON report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        import click

        self.lines.append(click.unstyle(record.getMessage()))


def _callbacks(hosts_of: dict[Any, str]) -> Any:
    from pyinfra.api import BaseStateCallback

    class HostOfGreenlet(BaseStateCallback):
        """Each host's operation runs in its own greenlet: note whose, so its uploads are counted."""

        @staticmethod
        def operation_host_start(state: Any, host: Any, op_hash: Any) -> None:
            import gevent

            hosts_of[gevent.getcurrent()] = host.name

    return HostOfGreenlet()


def _services_acted_on(plan: Any) -> list[str]:
    """What the plan's activations did to each service (a start is named as such)."""
    from pyinfra_mailserver.engine.operations import action_for

    out = []
    for s in plan.manifest.services:
        action = action_for(s, plan.changes)
        if action != "none":
            out.append(f"{s.name} (start)" if action == "start" else s.name)
    return out


@dataclass
class _Logs:
    """pyinfra's log as the report needs it: error lines kept, round trips counted."""

    errors: _ErrorLog
    traffic: Traffic
    hosts_of: dict[Any, str]


def _attach_logs(json_output: bool, verbose: int) -> _Logs:
    """pyinfra's debug lines name each command it runs: counted (Traffic), only shown with -vv."""
    shown = logging.StreamHandler(sys.stderr)
    shown.setFormatter(logging.Formatter("%(message)s"))
    shown.setLevel(logging.WARNING if json_output and not verbose else logging.INFO)
    if verbose > 1:
        shown.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(shown)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    hosts_of: dict[Any, str] = {}
    logs = _Logs(_ErrorLog(), Traffic(hosts_of), hosts_of)
    pyinfra_log = logging.getLogger("pyinfra")
    pyinfra_log.setLevel(logging.DEBUG)
    pyinfra_log.addHandler(logs.errors)
    pyinfra_log.addHandler(logs.traffic)
    return logs


@dataclass
class _Run:
    """What happened to the hosts of one run: each host's plan, why a host failed before its operations
    ran, a run-wide failure, and when each stage ended."""

    plans: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    crashed: str | None = None
    times: dict[str, float] = field(default_factory=dict)

    def seconds(self) -> dict[str, float]:
        t = self.times
        return {
            "connect": round(t["connected"] - t["started"], 3),
            "prepare": round(t["prepared"] - t["connected"], 3),
            "execute": round(t["finished"] - t["prepared"], 3),
            "total": round(t["finished"] - t["started"], 3),
        }


def _execute(state: Any, valid: list[Any], logs: _Logs, r: _Run, until: str, dry: bool) -> None:
    """Connect, plan each host (the deploy reads its snapshot and diffs it), then run the operations.

    A host whose planning fails (lock held, unsupported distro) is failed alone; the others go on."""
    from pyinfra.api.connect import connect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.context import ctx_host, ctx_state

    from pyinfra_mailserver.deploys import deploy_mailserver

    r.times["started"] = time.monotonic()
    with ctx_state.use(state):
        if valid:
            try:
                connect_all(state)
            except PyinfraError as e:  # "No hosts remaining!": every host failed to connect
                r.crashed = str(e)
        for host in valid:
            if not host.connected:
                said = [line for line in logs.errors.lines if host.name in line]
                r.failed[host.name] = "could not connect" + (f": {said[-1]}" if said else "")
        r.times["connected"] = time.monotonic()
        for host in [] if r.crashed else list(state.inventory.get_active_hosts()):
            with ctx_host.use(host):
                try:
                    r.plans[host.name] = deploy_mailserver(raise_errors=True, until=until)
                except PyinfraError:
                    raise
                except Exception as e:  # bad data, unsupported distro, lock held: this host only
                    r.failed[host.name] = f"{type(e).__name__}: {e}"
                    # raises "No hosts remaining!" after failing the last host: that is no crash
                    with contextlib.suppress(PyinfraError):
                        state.fail_hosts({host})
        r.times["prepared"] = time.monotonic()
        if not dry and not r.crashed and state.inventory.get_active_hosts():
            try:
                run_ops(state)
            except PyinfraError as e:
                r.crashed = str(e)
    r.times["finished"] = time.monotonic()


def _print_summary(results: list[dict[str, Any]], dry: bool) -> None:
    for r in results:
        if dry:
            for o in r["operations"]:
                if o["changed"]:
                    print(f"{r['host']}: would change: {o['name']}")
        mark = "ok" if r["success"] else "FAILED"
        print(
            f"{r['host']}: {mark}, {r['changed']} of {len(r['operations'])} operations changed, "
            f"{r['round_trips']} round trips, reloaded: {', '.join(r['services_reloaded']) or '-'}, "
            f"{r['seconds']['total']} s" + (f" ({r['error']})" if r["error"] else "")
        )


def run(args: argparse.Namespace) -> int:
    # gevent must patch the standard library before pyinfra (and paramiko) import it.
    from gevent import monkey

    monkey.patch_all()

    from pyinfra.api import Config, State

    from pyinfra_mailserver import inventory, preflight

    inventory_path = str(Path(args.inventory).resolve())
    os.environ.setdefault("MAILSERVER_INVENTORY", inventory_path)
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.append(cwd)
    logs = _attach_logs(args.json, args.verbose)

    try:
        override = dict(kv.split("=", 1) for kv in args.data)
    except ValueError:
        print(f"mailserver deploy: --data takes KEY=VALUE, not {args.data!r}", file=sys.stderr)
        return 2
    try:
        inv = inventory.load_pyinfra_inventory(inventory_path, cwd, override)
        selected = inventory.limit_hosts(inv, args.limit) or list(inv)
    except (FileNotFoundError, LookupError) as e:
        print(f"mailserver deploy: {e}", file=sys.stderr)
        return 2
    config = Config()
    config.DIFF = bool(args.diff)
    # Data first, on the controller: a host whose data is invalid is never contacted, and every such
    # problem is listed at once (pyinfra_mailserver.preflight).
    r = _Run(failed=preflight.invalid_hosts(selected, inventory_path))
    unusable = set(r.failed)
    valid = [h for h in selected if h.name not in r.failed]
    # Planning evaluates every operation twice (plan, then execute); a real run only needs the second.
    state = State(check_for_changes=bool(args.dry or args.diff))
    state.cwd = cwd
    state.init(inv, config, initial_limit=valid)
    state.add_callback_handler(_callbacks(logs.hosts_of))
    logs.traffic.state = state
    if args.verbose:
        state.print_fact_info = state.print_noop_info = True

    _execute(state, valid, logs, r, args.until, args.dry)
    unusable |= {name for name, why in r.failed.items() if why.startswith("could not connect")}
    results = [
        _host_result(state, host, r.plans.get(host.name), r.failed, r.crashed, logs.traffic, args.dry)
        | {"seconds": r.seconds()}
        for host in selected
    ]
    ok = all(x["success"] for x in results) and bool(results)
    if args.json:
        json.dump({"success": ok, "hosts": results, "errors": logs.errors.lines}, sys.stdout, indent=2)
        print()
    else:
        _print_summary(results, args.dry)
    # as drift and audit: 2 when a host could not even be tried (invalid data, unreachable), which
    # calls for fixing the inventory, not the host
    return 0 if ok else 2 if unusable else 1


def _host_result(
    state: Any, host: Any, plan: Any, failed: dict[str, str], crashed: str | None, traffic: Traffic, dry: bool
) -> dict[str, Any]:
    """One host's entry of the report: its operations (from pyinfra's state), its plan, its traffic."""
    from pyinfra.context import ctx_host, ctx_state  # imported after gevent's patching (see run)

    ops: list[dict[str, Any]] = []
    for op_hash in state.get_op_order():
        op_data = state.ops.get(host, {}).get(op_hash)
        if op_data is None:
            continue
        meta = op_data.operation_meta
        name = ", ".join(sorted(state.get_op_meta(op_hash).names))
        if meta.is_complete():
            ops.append({"name": name, "changed": meta.did_change(), "success": meta.did_succeed()})
        elif dry:
            # `will_change` runs the operation's command generator, which reads the host's context
            with ctx_state.use(state), ctx_host.use(host):
                ops.append({"name": name, "changed": bool(meta.will_change), "success": None})
        else:  # never ran: an earlier operation of this host failed
            ops.append({"name": name, "changed": False, "success": None})
    success = host not in state.failed_hosts and host.name not in failed and not crashed
    done = plan is not None and (success or dry)
    commands, uploads = traffic.commands.get(host.name, 0), traffic.uploads.get(host.name, 0)
    return {
        "host": host.name,
        "success": success,
        "dry": dry,
        "operations": ops,
        "changed": sum(1 for o in ops if o["changed"]),
        "round_trips": commands + uploads,
        "shell_commands": commands,
        "commands_executed": traffic.executed.get(host.name, 0),
        "uploads": uploads,
        "services_reloaded": _services_acted_on(plan) if done else [],
        "files_changed": plan.files_changed if done else [],
        "changes": [c.detail for c in plan.changes] if plan is not None else [],
        "error": failed.get(host.name),
    }
