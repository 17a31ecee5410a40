"""`mailserver drift`: does each host still look like its Manifest, in files and in effective settings?

Read-only on the host. The host is read by the deploy's own snapshot and compared by the deploy's own
`diff` (engine/changes.py), so drift reports exactly what a deploy would change; the effective state
(`postconf -n/-M/-P`, `doveconf`, map lookups) comes in the same round trip, and unified diffs of
changed files in a second one, only when some file differs, and never for secret files.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from pyinfra_mailserver.engine import script, shell
from pyinfra_mailserver.engine.changes import Change, diff, snapshot_spec
from pyinfra_mailserver.engine.script import Section
from pyinfra_mailserver.engine.stage import Stage
from pyinfra_mailserver.facts import AccountState, MailHostSnapshot, Script, Snapshot
from pyinfra_mailserver.manifest import ManagedFile, Manifest
from pyinfra_mailserver.report import CheckResult, CheckSet, Severity, Status, in_parallel
from pyinfra_mailserver.services.dovecot import checks as dovecot_checks
from pyinfra_mailserver.services.dovecot.render import parse_settings as parse_dovecot_settings
from pyinfra_mailserver.services.postfix import checks as postfix_checks

if TYPE_CHECKING:
    from pyinfra_mailserver.audit.remote import Target

MAX_DIFF_LINES = 200
FIX = "re-run mailserver deploy"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unified_diff(expected: str, actual: str, path: str, mask: Callable[[str], str]) -> str:
    """The host's edits as a diff from the rendered file, secrets masked, long diffs cut."""
    lines = list(
        difflib.unified_diff(
            mask(expected).splitlines(keepends=True),
            mask(actual).splitlines(keepends=True),
            fromfile=f"{path} (manifest)",
            tofile=f"{path} (host)",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more diff lines\n"]
    return "".join(x if x.endswith("\n") else x + "\n" for x in lines).rstrip("\n")


def parse_postconf(text: str) -> dict[str, str]:
    """`postconf -n` output as name -> value, whitespace normalised."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and not line.startswith((" ", "\t", "postconf:")):
            out[name.strip()] = " ".join(value.split())
    return out


def compare_params(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Differences as readable lines: changed, missing and unexpected parameters."""
    diffs = []
    for key in sorted(set(expected) | set(actual)):
        want = " ".join(expected[key].split()) if key in expected else None
        have = actual.get(key)
        if want == have:
            continue
        if have is None:
            diffs.append(f"{key}: missing (expected {want!r})")
        elif want is None:
            diffs.append(f"{key} = {have!r}: not in the manifest")
        else:
            diffs.append(f"{key} = {have!r}, expected {want!r}")
    return diffs


def compare_master(expected: Sequence[str], actual_text: str) -> list[str]:
    """`postconf -M` entries against the manifest's master.cf entries (any order, whitespace-normal)."""
    have = [" ".join(line.split()) for line in actual_text.splitlines() if line.strip()]
    want = [" ".join(line.split()) for line in expected]
    out = [f"missing: {w}" for w in want if w not in have]
    out += [f"unexpected: {h}" for h in have if h not in want]
    return out


def expected_service_params(master: Sequence[str]) -> dict[str, str]:
    """`postconf -P` as the manifest implies it: `service/type/name = value` from each entry's -o options."""
    out: dict[str, str] = {}
    for entry in master:
        words = entry.split()
        if len(words) < 8:
            continue
        svc, kind = words[0], words[1]
        i = 8
        while i < len(words):
            opt = words[i]
            if opt == "-o" and i + 1 < len(words):
                name, _, value = words[i + 1].partition("=")
                out[f"{svc}/{kind}/{name}"] = value
                i += 2
            elif opt.startswith("-o") and "=" in opt:
                name, _, value = opt[2:].partition("=")
                out[f"{svc}/{kind}/{name}"] = value
                i += 1
            else:
                i += 1
    return out


def parse_doveconf(text: str) -> dict[str, str]:
    """`doveconf KEY...` output as a dict, read by the same parser that derived the expected settings
    from the rendered files (so `ssl_server { cert_file = ... }` reads as `ssl_server/cert_file`)."""
    return parse_dovecot_settings(text)


def drift_commands(m: Manifest) -> dict[str, str]:
    """The read-only commands of drift's effective checks (each service's), by section name."""
    return {**postfix_checks.effective_commands(m), **dovecot_checks.effective_commands(m)}


def _by(changes: Sequence[Change], *kinds: str) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for c in changes:
        if c.kind in kinds:
            out.setdefault(c.subject, []).append(c)
    return out


def evaluate(
    m: Manifest,
    host: str,
    snap: Snapshot,
    contents: Mapping[str, str],
    sections: Mapping[str, Section],
    generated: Sequence[ManagedFile] = (),
    stage: Stage | None = None,
) -> list[CheckResult]:
    """All drift verdicts from what was read off the host (pure: unit-tested without hosts): one check
    per managed thing, failing with the deploy's own description of each change."""
    stage = stage or Stage()
    changes = [c for c in diff(m, snap, stage, generated) if c.subject != stage.dir]
    checks = CheckSet(host, "drift")
    files = _by(changes, "file", "file-attrs")
    for f in (*m.files, *generated):
        found = files.get(f.path, [])
        detail = ""
        if found and found[0].kind == "file" and not f.secret and f.path in contents:
            detail = unified_diff(f.content, contents[f.path], f.path, m.mask)
        missing = bool(found) and found[0].detail.endswith(("is missing", "not a file"))
        checks.add(
            f"drift.file[{f.path}]",
            not found,
            "; ".join(c.detail for c in found),
            ok_message=f"{f.path} as rendered",
            severity=Severity.HIGH if (f.secret or missing) else Severity.MEDIUM,
            fix=f"{FIX} (or put the change into the inventory data)",
            detail=detail,
        )
    dirs = _by(changes, "directory")
    for d in m.directories:
        found = dirs.get(d.path, [])
        checks.add(
            f"drift.dir[{d.path}]",
            not found,
            "; ".join(c.detail for c in found),
            ok_message=f"{d.path} as expected",
            fix=FIX,
        )
    _effective(checks, m, sections)
    maps = _by(changes, "map")
    for i, mp in enumerate(m.maps):
        cid = f"drift.map[{mp.source}]"
        fix = f"{mp.command} {mp.spec}" + (" (or newaliases)" if mp.command == "postalias" else "")
        found = [c for c in maps.get(mp.source, []) if "rebuilt" not in c.detail]
        if found:
            checks.fail(cid, found[0].detail, severity=Severity.HIGH, fix=fix)
            continue
        q = sections.get(f"map{i}")
        if mp.sample_key is not None and (q is None or q.rc != 0):
            checks.fail(
                cid,
                f"{mp.command} -q {mp.sample_key!r} {mp.spec} finds nothing",
                severity=Severity.HIGH,
                fix=fix,
            )
            continue
        checks.passed(cid, f"{mp.output} up to date" + (" and answers" if mp.sample_key else ""))
    missing_packages = [c.subject for c in changes if c.kind == "package"]
    checks.add(
        "drift.packages",
        not missing_packages,
        f"not installed: {', '.join(missing_packages)}",
        ok_message=f"{len(m.packages)} packages installed",
        severity=Severity.HIGH,
        fix=FIX,
    )
    hook = [c for c in changes if c.kind == "policy-rc-d"]
    if hook:
        checks.fail(
            "drift.policy_rc_d",
            hook[0].detail + ": package upgrades will not restart daemons",
            severity=Severity.HIGH,
            fix=f"rm {hook[0].subject} (or {FIX})",
        )
    for svc in m.services:
        found = [
            c
            for c in changes
            if c.service == svc.name
            and c.kind in ("unit-enable", "unit-start", "unit-replaced", "pending", "listener")
        ]
        stale = any(c.kind in ("unit-replaced", "pending") for c in found)
        checks.add(
            f"drift.service[{svc.name}]",
            not found,
            "; ".join(c.detail for c in found),
            ok_message=f"{svc.unit} running and enabled",
            severity=Severity.HIGH,
            fix=FIX if stale else f"systemctl enable --now {svc.unit}",
        )
    socks = _by(changes, "socket")
    for sock in m.sockets:
        found = socks.get(sock, [])
        checks.add(
            f"drift.socket[{sock}]",
            not found,
            f"{sock}: no socket",
            ok_message=f"{sock} present",
            severity=Severity.HIGH,
            fix="restart the service that owns it (saslauthd / dovecot) and check its socket path",
        )
    _accounts(checks, m, changes)
    return checks.results


def _effective(checks: CheckSet, m: Manifest, sections: Mapping[str, Section]) -> None:
    """The settings in effect: `postconf -n/-M/-P` and `doveconf` against the rendered files."""

    def section(name: str) -> Section | None:
        s = sections.get(name)
        return s if s is not None and s.rc != -1 else None

    pn = section("postconf_n")
    if pn is None or pn.rc != 0:
        checks.error("drift.postconf", "postconf -n did not run: " + (pn.text if pn else "no output"))
    else:
        diffs = compare_params(m.postconf, parse_postconf(pn.text))
        checks.add(
            "drift.postconf",
            not diffs,
            f"main.cf in effect differs in {len(diffs)} parameter(s)",
            ok_message=f"postconf -n matches ({len(m.postconf)} parameters)",
            severity=Severity.HIGH,
            fix=f"{FIX} (postconf -e edits are drift too)",
            detail=m.mask("\n".join(diffs)),
        )
    pm = section("postconf_m")
    if pm is None or pm.rc != 0:
        checks.error("drift.postconf_master", "postconf -M did not run: " + (pm.text if pm else "no output"))
    else:
        diffs = compare_master(m.postconf_master, pm.text)
        checks.add(
            "drift.postconf_master",
            not diffs,
            f"master.cf in effect differs in {len(diffs)} entries",
            ok_message=f"postconf -M matches ({len(m.postconf_master)} services)",
            severity=Severity.HIGH,
            fix=FIX,
            detail=m.mask("\n".join(diffs)),
        )
    pp = section("postconf_p")
    if pp is not None and pp.rc == 0:
        diffs = compare_params(expected_service_params(m.postconf_master), parse_postconf(pp.text))
        checks.add(
            "drift.postconf_services",
            not diffs,
            f"per-service parameters (postconf -P) differ in {len(diffs)}",
            ok_message="postconf -P matches the master.cf -o options",
            severity=Severity.HIGH,
            fix=FIX,
            detail=m.mask("\n".join(diffs)),
        )
    if m.doveconf:
        dc = section("doveconf")
        if dc is None or dc.rc != 0:
            checks.error("drift.doveconf", "doveconf did not run: " + (dc.text if dc else "no output"))
        else:
            have = parse_doveconf(dc.text)
            diffs = [d for d in compare_params(m.doveconf, have) if not d.endswith("not in the manifest")]
            checks.add(
                "drift.doveconf",
                not diffs,
                f"Dovecot settings differ in {len(diffs)} key(s)",
                ok_message=f"doveconf matches ({len(m.doveconf)} settings)",
                severity=Severity.HIGH,
                fix=FIX,
                detail=m.mask("\n".join(diffs)),
            )


def _accounts(checks: CheckSet, m: Manifest, changes: Sequence[Change]) -> None:
    groups, users = _by(changes, "group"), _by(changes, "user", "password")
    for g in m.groups:
        found = groups.get(g.name, [])
        checks.add(
            f"drift.group[{g.name}]",
            not found,
            "; ".join(c.detail for c in found),
            ok_message=f"group {g.name}",
            severity=Severity.HIGH,
            fix=FIX,
        )
    for u in m.users:
        found = users.get(u.name, [])
        checks.add(
            f"drift.user[{u.name}]",
            not found,
            "; ".join(c.detail for c in found),
            ok_message=f"user {u.name} as expected",
            severity=Severity.HIGH,
            fix=FIX,
        )


def evaluate_accounts(m: Manifest, host: str, state: AccountState) -> list[CheckResult]:
    """The account verdicts alone (the same rules as the deploy's: a password hash is compared by the
    sha256 the snapshot computes on the host, so no hash crosses the wire)."""
    checks = CheckSet(host, "drift")
    accounts = [
        c for c in diff(m, Snapshot(accounts=state), Stage()) if c.kind in ("group", "user", "password")
    ]
    _accounts(checks, m, accounts)
    return checks.results


def read_contents(target: Target, paths: Sequence[str]) -> dict[str, str]:
    """Current text of non-secret files (base64 on the wire, so bytes arrive unchanged)."""
    if not paths:
        return {}
    sections = target.run({f"f{i}": f"base64 -w0 {shell.quote(p)}" for i, p in enumerate(paths)})
    out: dict[str, str] = {}
    for i, p in enumerate(paths):
        s = sections.get(f"f{i}")
        if s is None or s.rc != 0:
            continue
        try:
            out[p] = base64.b64decode("".join(s.lines)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
    return out


def run_drift(target: Target) -> list[CheckResult]:
    """Read the host (one round trip, two when a file differs) and compare it with its Manifest."""
    from pyinfra_mailserver.services.tls.render import generated_files

    m = target.manifest
    stage = Stage.of(target.data)
    generated = generated_files(m, target.secrets_dir, create=False)
    spec = snapshot_spec(m, stage, generated)
    lines = target.fact(
        Script, script=MailHostSnapshot().command(spec) + "\n" + script.build(drift_commands(m))
    )
    snap = MailHostSnapshot().process(lines)
    sections = script.parse(lines)
    changed = [
        c.subject
        for c in diff(m, snap, stage, generated)
        if c.kind == "file" and c.file is not None and not c.file.secret and c.subject in snap.paths
    ]
    contents = read_contents(target, changed)
    return evaluate(m, target.name, snap, contents, sections, generated, stage)


def run_all(targets: Sequence[Target]) -> list[CheckResult]:
    """Every host concurrently (pyinfra's connections are greenlet-safe); a host that drops mid-check is
    reported and the rest still run."""

    def one(t: Target) -> list[CheckResult]:
        try:
            return run_drift(t)
        except Exception as e:
            return [
                CheckResult(
                    "drift.host",
                    t.name,
                    Status.ERROR,
                    f"drift failed: {type(e).__name__}: {e}",
                    Severity.HIGH,
                    section="drift",
                )
            ]

    return in_parallel(one, list(targets))
