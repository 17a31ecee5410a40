"""Check results of drift and audit, and their renderings: rich table, JSON, JUnit XML, exit code.

One result type for both commands, so CI sees the same shape whatever ran: each check on each host is one
`CheckResult` (one JUnit test case). Skipped checks stay visible as skipped — never counted as passed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any, TypeVar

T = TypeVar("T")

# Exit codes shared by `mailserver drift` and `mailserver audit`.
EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_UNREACHABLE = 2  # a host could not be reached, a check could not run, or the inventory is invalid


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"  # the check could not be carried out (not a verdict on the host)


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


@dataclass
class CheckResult:
    """One check on one host. `fix` is a one-line remedy; `detail` holds longer evidence (a masked diff)."""

    id: str
    host: str
    status: Status
    message: str
    severity: Severity = Severity.MEDIUM
    fix: str = ""
    detail: str = ""
    section: str = ""  # drift | audit, for grouping in reports

    @property
    def is_finding(self) -> bool:
        return self.status is Status.FAIL

    def to_dict(self) -> dict[str, Any]:
        # spelled out: dataclasses.asdict deep-copies every field, a tenth of a fleet audit's report time
        return {
            "id": self.id,
            "host": self.host,
            "status": str(self.status),
            "message": self.message,
            "severity": str(self.severity),
            "fix": self.fix,
            "detail": self.detail,
            "section": self.section,
        }


# A failed check is a "finding"; the name reads better where only failures are meant.
Finding = CheckResult


@dataclass
class CheckSet:
    """Builds the results of one host and section; helpers keep call sites to one line per verdict."""

    host: str
    section: str
    results: list[CheckResult] = field(default_factory=list)

    def add(
        self,
        id: str,
        ok: bool,
        message: str,
        *,
        severity: Severity = Severity.MEDIUM,
        fix: str = "",
        detail: str = "",
        ok_message: str | None = None,
    ) -> CheckResult:
        """A pass when `ok`, else a fail with `message`, `fix` and `detail`."""
        if ok:
            r = CheckResult(id, self.host, Status.PASS, ok_message or message, severity, section=self.section)
        else:
            r = CheckResult(id, self.host, Status.FAIL, message, severity, fix, detail, self.section)
        self.results.append(r)
        return r

    def passed(self, id: str, message: str, severity: Severity = Severity.MEDIUM) -> CheckResult:
        return self.add(id, True, message, severity=severity)

    def fail(
        self, id: str, message: str, *, severity: Severity = Severity.MEDIUM, fix: str = "", detail: str = ""
    ) -> CheckResult:
        return self.add(id, False, message, severity=severity, fix=fix, detail=detail)

    def skip(self, id: str, reason: str, severity: Severity = Severity.INFO) -> CheckResult:
        r = CheckResult(id, self.host, Status.SKIP, reason, severity, section=self.section)
        self.results.append(r)
        return r

    def error(self, id: str, message: str, severity: Severity = Severity.HIGH) -> CheckResult:
        r = CheckResult(id, self.host, Status.ERROR, message, severity, section=self.section)
        self.results.append(r)
        return r


def in_parallel(
    fn: Callable[[T], list[CheckResult]], items: Sequence[T], workers: int = 16
) -> list[CheckResult]:
    """`fn` over `items` concurrently, results in the order of `items` (reports must be stable).

    Under the CLI's gevent patching the threads are greenlets, as pyinfra's own per-host work is; without
    it (unit tests) they are plain threads. One host or port waiting on the network never holds up the
    others, which is what keeps ten hosts close to the time of one.
    """
    from concurrent.futures import ThreadPoolExecutor

    if len(items) <= 1:
        return [r for item in items for r in fn(item)]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return [r for chunk in pool.map(fn, items) for r in chunk]


def exit_code(results: Iterable[CheckResult], fail_on: Severity = Severity.LOW) -> int:
    """2 when anything could not be checked, else 1 when a finding is at least `fail_on`, else 0.

    Errors win over findings: a CI job must not look merely "dirty" when part of the fleet went unchecked.
    """
    results = list(results)
    if any(r.status is Status.ERROR for r in results):
        return EXIT_UNREACHABLE
    if any(r.status is Status.FAIL and r.severity.rank >= fail_on.rank for r in results):
        return EXIT_FINDINGS
    return EXIT_CLEAN


def summary(results: Sequence[CheckResult]) -> dict[str, int]:
    counts = {s.value: 0 for s in Status}
    for r in results:
        counts[r.status.value] += 1
    return counts


def to_json(results: Sequence[CheckResult], command: str, fail_on: Severity = Severity.LOW) -> str:
    """Machine-readable output: every result plus the counts and the exit code it implies."""
    # One result per line: readable, and encoded by json's C encoder (indent= takes the pure-Python one,
    # which was most of a 10-host report's time).
    head = json.dumps(
        {"command": command, "summary": summary(results), "exit_code": exit_code(results, fail_on)}, indent=2
    )
    rows = ",\n    ".join(json.dumps(r.to_dict()) for r in results)
    return head[:-2] + (',\n  "results": [\n    ' + rows + "\n  ]\n}" if results else ',\n  "results": []\n}')


def to_junit(results: Sequence[CheckResult], command: str) -> str:
    """JUnit XML: a <testsuite> per host, a <testcase> per check; skip -> <skipped/>, fail -> <failure>."""
    root = ET.Element("testsuites", name=f"mailserver {command}")
    by_host: dict[str, list[CheckResult]] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    totals = summary(results)
    root.set("tests", str(len(results)))
    root.set("failures", str(totals["fail"]))
    root.set("errors", str(totals["error"]))
    root.set("skipped", str(totals["skip"]))
    for host, items in by_host.items():
        counts = summary(items)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{command}.{host}",
            tests=str(len(items)),
            failures=str(counts["fail"]),
            errors=str(counts["error"]),
            skipped=str(counts["skip"]),
        )
        for r in items:
            case = ET.SubElement(suite, "testcase", classname=f"{command}.{host}", name=r.id)
            if r.status is Status.FAIL:
                el = ET.SubElement(case, "failure", message=r.message, type=str(r.severity))
                el.text = "\n".join(x for x in (f"fix: {r.fix}" if r.fix else "", r.detail) if x) or None
            elif r.status is Status.ERROR:
                ET.SubElement(case, "error", message=r.message)
            elif r.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=r.message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


_STYLE = {Status.PASS: "green", Status.FAIL: "red", Status.SKIP: "yellow", Status.ERROR: "magenta"}


def print_table(
    results: Sequence[CheckResult],
    command: str,
    file: IO[str] | None = None,
    show_passed: bool = True,
    show_detail: bool = True,
    fail_on: Severity = Severity.LOW,
) -> None:
    """The human view: one row per check, findings with their fix, then diffs, then the counts."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, soft_wrap=False, highlight=False)
    if not console.is_terminal:  # CI logs: wide rows beat folded ones
        console.width = max(console.width, 200)
    table = Table(title=f"mailserver {command}", show_lines=False)
    for col in ("host", "check", "status", "severity", "message", "fix"):
        table.add_column(col, overflow="fold")
    for r in results:
        if r.status is Status.PASS and not show_passed:
            continue
        # Text, not markup: ids like drift.file[/etc/postfix/main.cf] would read as closing tags
        table.add_row(
            Text(r.host),
            Text(r.id),
            Text(str(r.status), style=_STYLE[r.status]),
            Text(str(r.severity) if r.status is Status.FAIL else ""),
            Text(r.message),
            Text(r.fix),
        )
    console.print(table)
    if show_detail:
        for r in results:
            if r.status is Status.FAIL and r.detail:
                console.rule(Text(f"{r.host} {r.id}"))
                console.print(r.detail, markup=False)
    counts = summary(results)
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()) + f" — exit {exit_code(results, fail_on)}")
