"""Report layer: exit codes, JSON and JUnit shapes that CI parses."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

from pyinfra_mailserver.report import (
    CheckResult,
    CheckSet,
    Severity,
    Status,
    exit_code,
    print_table,
    to_json,
    to_junit,
)


def _sample() -> list[CheckResult]:
    a = CheckSet("mx1.example.org", "audit")
    a.passed("smtp.vrfy[25]", "VRFY disabled")
    a.fail(
        "smtp.open_relay[25]",
        "RCPT to a foreign domain accepted",
        severity=Severity.CRITICAL,
        fix="remove foreign networks from mynetworks",
        detail="--- a\n+++ b",
    )
    a.skip("tls.v1_0_refused[25]", "local OpenSSL cannot speak TLS 1.0")
    b = CheckSet("mx2.example.org", "audit")
    b.passed("smtp.vrfy[25]", "VRFY disabled")
    return a.results + b.results


def test_exit_codes() -> None:
    clean = [CheckResult("x", "h", Status.PASS, "ok"), CheckResult("y", "h", Status.SKIP, "no resolver")]
    assert exit_code(clean) == 0
    finding = [*clean, CheckResult("z", "h", Status.FAIL, "bad", Severity.LOW)]
    assert exit_code(finding) == 1
    assert exit_code(finding, fail_on=Severity.HIGH) == 0
    assert exit_code([*finding, CheckResult("c", "h", Status.ERROR, "unreachable")]) == 2


def test_info_findings_do_not_fail_by_default() -> None:
    assert exit_code([CheckResult("q", "h", Status.FAIL, "note", Severity.INFO)]) == 0


def test_json_round_trip() -> None:
    data = json.loads(to_json(_sample(), "audit"))
    assert data["summary"] == {"pass": 2, "fail": 1, "skip": 1, "error": 0}
    assert data["exit_code"] == 1
    relay = next(r for r in data["results"] if r["id"] == "smtp.open_relay[25]")
    assert relay["status"] == "fail" and relay["severity"] == "critical"
    assert relay["fix"].startswith("remove")


def test_junit_one_case_per_check_per_host() -> None:
    root = ET.fromstring(to_junit(_sample(), "audit").split("\n", 1)[1])
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["audit.mx1.example.org", "audit.mx2.example.org"]
    assert root.get("tests") == "4" and root.get("failures") == "1" and root.get("skipped") == "1"
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["smtp.vrfy[25]", "smtp.open_relay[25]", "tls.v1_0_refused[25]"]
    assert cases[0].find("failure") is None and cases[0].find("skipped") is None
    failure = cases[1].find("failure")
    assert failure is not None and "foreign" in (failure.get("message") or "")
    assert "fix: remove" in (failure.text or "")
    skipped = cases[2].find("skipped")
    assert skipped is not None and "TLS 1.0" in (skipped.get("message") or "")


def test_junit_escapes_markup_in_messages() -> None:
    r = [CheckResult("a<b", "h&1", Status.FAIL, 'says "<hello>" & bye')]
    root = ET.fromstring(to_junit(r, "drift").split("\n", 1)[1])
    assert root.find("testsuite/testcase/failure").get("message") == 'says "<hello>" & bye'  # type: ignore[union-attr]


def test_table_lists_skips_and_fix() -> None:
    buf = io.StringIO()
    print_table(_sample(), "audit", file=buf)
    out = buf.getvalue()
    assert "skip" in out and "remove foreign networks" in out and "exit 1" in out


def test_table_shows_bracketed_ids_and_diffs_literally() -> None:
    c = CheckSet("mx1", "drift")
    c.fail("drift.file[/etc/postfix/main.cf]", "content differs [/etc/x]", detail="-a = [b]\n+a = [/c]")
    buf = io.StringIO()
    print_table(c.results, "drift", file=buf)
    out = buf.getvalue()
    assert "drift.file[/etc/postfix/main.cf]" in out and "+a = [/c]" in out


def test_script_sections_parse_output_without_final_newline() -> None:
    from pyinfra_mailserver.engine.script import MARK
    from pyinfra_mailserver.engine.script import build as build_script
    from pyinfra_mailserver.engine.script import parse as parse_script

    script = build_script({"a": "echo hi", "b": "printf x"})
    assert "echo hi" in script and "printf x" in script
    lines = [f"{MARK} a", "hi", f"{MARK}-rc 0", f"{MARK} b", f"x{MARK}-rc 3"]
    got = parse_script(lines)
    assert got["a"].rc == 0 and got["a"].lines == ["hi"]
    assert got["b"].rc == 3 and got["b"].lines == ["x"]


def test_json_result_rows_carry_every_field() -> None:
    """to_dict is spelled out (no dataclasses.asdict): a field added to CheckResult must reach the JSON."""
    from dataclasses import fields

    rows = json.loads(to_json(_sample(), "audit"))["results"]
    assert rows and all(set(r) == {f.name for f in fields(CheckResult)} for r in rows)
    assert json.loads(to_json([], "audit"))["results"] == []
