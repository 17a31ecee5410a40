"""`mailserver drift`: does each host still look like its Manifest, in files and in effective settings?

Read-only on the host. Files are compared through the deploy's own `ManagedPaths` fact (sha256 + stat of
every managed path in one command), so drift and the deploy's change detection can never disagree. The
effective state (`postconf -n/-M`, `doveconf`, map lookups, units, sockets) comes in one more round trip;
unified diffs of changed files in a third, only when some file differs, and never for secret files.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# the deploy's own map output names and unit-state script: drift judges by exactly the deploy's rules
from pyinfra_mailserver.deploys.init import ENABLED_STATES, RUNNING_STATES
from pyinfra_mailserver.deploys.ops import map_output
from pyinfra_mailserver.facts import AccountState, FileState, unit_state_script
from pyinfra_mailserver.manifest import ManagedFile, Manifest
from pyinfra_mailserver.render.dovecot import parse_settings as parse_dovecot_settings
from pyinfra_mailserver.report import CheckResult, CheckSet, Severity, Status, in_parallel

if TYPE_CHECKING:
    from pyinfra_mailserver.audit.remote import Section, Target

MAX_DIFF_LINES = 200


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


def check_file(
    checks: CheckSet, f: ManagedFile, st: FileState | None, actual: str | None, mask: Callable[[str], str]
) -> None:
    """One managed file: present, content hash, owner, group, mode (each difference named)."""
    cid = f"drift.file[{f.path}]"
    if st is None or st.kind != "file":
        checks.fail(
            cid,
            f"{f.path} is missing" if st is None else f"{f.path} is a {st.kind}, not a file",
            severity=Severity.HIGH,
            fix="re-run mailserver deploy",
        )
        return
    problems = []
    detail = ""
    if st.sha256 != sha256(f.content):
        if f.secret:
            problems.append("content differs (secret file: not shown)")
        else:
            problems.append("content differs")
            if actual is not None:
                detail = unified_diff(f.content, actual, f.path, mask)
    if st.owner != f.owner or st.group != f.group:
        problems.append(f"owner {st.owner}:{st.group}, expected {f.owner}:{f.group}")
    if not st.mode_matches(f.mode):
        problems.append(f"mode {st.mode}, expected {f.mode}")
    checks.add(
        cid,
        not problems,
        f"{f.path}: " + "; ".join(problems),
        ok_message=f"{f.path} as rendered",
        severity=Severity.HIGH if f.secret else Severity.MEDIUM,
        fix="re-run mailserver deploy (or put the change into the inventory data)",
        detail=detail,
    )


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
    """Every read-only command drift needs besides the file fact, by section name."""
    cmds = {"postconf_n": "postconf -n", "postconf_m": "postconf -M", "postconf_p": "postconf -P"}
    if m.doveconf:
        cmds["doveconf"] = "doveconf " + " ".join(shlex.quote(k) for k in sorted(m.doveconf))
    for i, mp in enumerate(m.maps):
        if mp.sample_key is None:
            continue
        tool = "postalias" if mp.command == "postalias" else "postmap"
        # the answer is discarded: only whether the key is found matters (values may be secret)
        cmds[f"map{i}"] = f"{tool} -q {shlex.quote(mp.sample_key)} {shlex.quote(mp.spec)} >/dev/null"
    for i, sock in enumerate(m.sockets):
        cmds[f"sock{i}"] = f"test -S {shlex.quote(sock)}"
    cmds["units"] = unit_state_script(m.unit_names(), parts=m.distro.unit_parts)
    if m.distro.family == "debian":
        cmds["packages"] = (
            "dpkg-query -W -f='${db:Status-Abbrev}|${Package}\\n' "
            + " ".join(shlex.quote(p) for p in m.packages)
            + " 2>/dev/null; true"
        )
    else:
        cmds["packages"] = (
            "rpm -q --qf '%{NAME}\\n' "
            + " ".join(shlex.quote(p) for p in m.packages)
            + " 2>/dev/null | grep -v 'is not installed'; true"
        )
    return cmds


def installed(m: Manifest, text: str) -> set[str]:
    if m.distro.family == "debian":
        return {
            rest
            for line in text.splitlines()
            if (status := line.partition("|"))[0].strip() == "ii"
            for rest in [status[2]]
        }
    return {line.strip() for line in text.splitlines() if line.strip()}


def tls_files(m: Manifest, secrets_dir: Path) -> list[ManagedFile]:
    """The generated TLS files as the deploy uploads them, read from the controller's secrets directory.

    Read only: when the controller has no certificate for the host yet, nothing is compared by content
    (presence and modes of cert and key are still checked by the audit).
    """
    plan = m.tls
    if plan.mode != "generate":
        return []
    tls_dir = secrets_dir / "tls" / m.hostname
    ca = secrets_dir / "ca" / "ca.crt"
    cert, key = tls_dir / "server.crt", tls_dir / "server.key"
    if not (cert.is_file() and key.is_file() and ca.is_file()):
        return []
    ca_pem = ca.read_text()
    out = [
        ManagedFile(plan.cert_path, cert.read_text() + ca_pem, mode="644", service="tls"),
        ManagedFile(plan.key_path, key.read_text(), mode="600", service="tls", secret=True),
    ]
    if plan.ca_path:
        out.append(ManagedFile(plan.ca_path, ca_pem, mode="644", service="tls"))
    return out


def evaluate(
    m: Manifest,
    host: str,
    files: Sequence[ManagedFile],
    paths: Mapping[str, FileState],
    contents: Mapping[str, str],
    sections: Mapping[str, Section],
) -> list[CheckResult]:
    """All drift verdicts from what was read off the host (pure: unit-tested without hosts)."""
    checks = CheckSet(host, "drift")
    for f in files:
        check_file(checks, f, paths.get(f.path), contents.get(f.path), m.mask)
    for d in m.directories:
        st = paths.get(d.path)
        cid = f"drift.dir[{d.path}]"
        if st is None or st.kind != "directory":
            checks.fail(cid, f"{d.path}: missing directory", fix="re-run mailserver deploy")
            continue
        bad = []
        if (st.owner, st.group) != (d.owner, d.group):
            bad.append(f"owner {st.owner}:{st.group}, expected {d.owner}:{d.group}")
        if not st.mode_matches(d.mode):
            bad.append(f"mode {st.mode}, expected {d.mode}")
        checks.add(
            cid,
            not bad,
            f"{d.path}: " + "; ".join(bad),
            ok_message=f"{d.path} as expected",
            fix="re-run mailserver deploy",
        )

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
            fix="re-run mailserver deploy (postconf -e edits are drift too)",
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
            fix="re-run mailserver deploy",
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
            fix="re-run mailserver deploy",
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
                fix="re-run mailserver deploy",
                detail=m.mask("\n".join(diffs)),
            )
    for i, mp in enumerate(m.maps):
        cid = f"drift.map[{mp.source}]"
        src, out = paths.get(mp.source), paths.get(map_output(mp))
        cmd = "postalias" if mp.command == "postalias" else "postmap"
        fix = f"{cmd} {mp.spec}" + (" (or newaliases)" if mp.command == "postalias" else "")
        if out is None:
            checks.fail(cid, f"{map_output(mp)} is missing", severity=Severity.HIGH, fix=fix)
            continue
        if src is not None and out.mtime < src.mtime:
            checks.fail(
                cid,
                f"{map_output(mp)} is older than {mp.source}: Postfix uses stale data",
                severity=Severity.HIGH,
                fix=fix,
            )
            continue
        q = section(f"map{i}")
        if mp.sample_key is not None and (q is None or q.rc != 0):
            checks.fail(
                cid, f"{cmd} -q {mp.sample_key!r} {mp.spec} finds nothing", severity=Severity.HIGH, fix=fix
            )
            continue
        checks.passed(cid, f"{map_output(mp)} up to date" + (" and answers" if mp.sample_key else ""))
    pk = sections.get("packages")
    if pk is not None:
        have_pk = installed(m, pk.text)
        missing = [p for p in m.packages if p not in have_pk]
        checks.add(
            "drift.packages",
            not missing,
            f"not installed: {', '.join(missing)}",
            ok_message=f"{len(m.packages)} packages installed",
            severity=Severity.HIGH,
            fix="re-run mailserver deploy",
        )
    units: dict[str, tuple[str, str]] = {}
    un = sections.get("units")
    for line in un.lines if un else []:
        unit, active, enabled = [*line.split("|"), "", ""][:3]
        units[unit] = (active, enabled)
    for svc in m.services:
        active, enabled = units.get(svc.unit, ("unknown", "unknown"))
        bad = []
        if svc.running and active != "active":
            bad.append(f"not running ({active})")
        if svc.enabled and enabled not in ENABLED_STATES:
            bad.append(f"not enabled at boot ({enabled})")
        stale = [old for old in svc.replaces if units.get(old, ("", ""))[0] in RUNNING_STATES]
        bad += [f"still runs as {old} (a unit of the release before)" for old in stale]
        checks.add(
            f"drift.service[{svc.name}]",
            not bad,
            f"{svc.unit}: " + ", ".join(bad),
            ok_message=f"{svc.unit} running and enabled",
            severity=Severity.HIGH,
            fix="re-run mailserver deploy" if stale else f"systemctl enable --now {svc.unit}",
        )
    for i, sock in enumerate(m.sockets):
        s = sections.get(f"sock{i}")
        checks.add(
            f"drift.socket[{sock}]",
            s is not None and s.rc == 0,
            f"{sock}: no socket",
            ok_message=f"{sock} present",
            severity=Severity.HIGH,
            fix="restart the service that owns it (saslauthd / dovecot) and check its socket path",
        )
    return checks.results


def evaluate_accounts(m: Manifest, host: str, state: AccountState) -> list[CheckResult]:
    """Users and groups as the deploy makes them (same rules as its `ensure_accounts`); a password hash is
    compared by the sha256 the fact computes on the host, so no hash crosses the wire."""
    checks = CheckSet(host, "drift")
    for g in m.groups:
        have_g = state.groups.get(g.name)
        why = (
            "missing"
            if have_g is None
            else (
                f"gid {have_g['gid']}, expected {g.gid}"
                if g.gid is not None and have_g["gid"] != g.gid
                else ""
            )
        )
        checks.add(
            f"drift.group[{g.name}]",
            not why,
            f"group {g.name}: {why}",
            ok_message=f"group {g.name}",
            fix="re-run mailserver deploy",
        )
    for u in m.users:
        have = state.users.get(u.name)
        if have is None:
            checks.fail(
                f"drift.user[{u.name}]",
                f"user {u.name}: missing",
                severity=Severity.HIGH,
                fix="re-run mailserver deploy",
            )
            continue
        bad: list[str] = []
        if u.uid is not None and have["uid"] != u.uid:
            bad.append(f"uid {have['uid']}, expected {u.uid}")
        if u.home and have["home"] != u.home:
            bad.append(f"home {have['home']}, expected {u.home}")
        if have["shell"] != u.shell:
            bad.append(f"shell {have['shell']}, expected {u.shell}")
        if u.group:
            gid = state.groups.get(u.group, {}).get("gid")
            if gid is None or gid != have["gid"]:
                bad.append(f"primary group is not {u.group}")
        member_of = have.get("groups") or []
        missing = [g for g in u.groups if g not in member_of]  # type: ignore[operator]
        if missing:
            bad.append(f"not in group(s) {', '.join(missing)}")
        if u.password_hash and have.get("password_sha256") != sha256(u.password_hash):
            bad.append("password differs from the inventory's hash")
        checks.add(
            f"drift.user[{u.name}]",
            not bad,
            f"user {u.name}: " + "; ".join(bad),
            ok_message=f"user {u.name} as expected",
            severity=Severity.HIGH,
            fix="re-run mailserver deploy",
        )
    return checks.results


def managed_paths(m: Manifest, files: Sequence[ManagedFile]) -> tuple[str, ...]:
    paths = {f.path for f in files} | {d.path for d in m.directories}
    paths |= {mp.source for mp in m.maps} | {map_output(mp) for mp in m.maps}
    return tuple(sorted(paths))


def read_contents(target: Target, paths: Sequence[str]) -> dict[str, str]:
    """Current text of non-secret files (base64 on the wire, so bytes arrive unchanged)."""
    if not paths:
        return {}
    sections = target.run({f"f{i}": f"base64 -w0 {shlex.quote(p)}" for i, p in enumerate(paths)})
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
    """Read the host (two or three round trips) and compare with its Manifest."""
    from pyinfra_mailserver.facts import Accounts, ManagedPaths

    m = target.manifest
    files = [*m.files, *tls_files(m, target.secrets_dir)]
    seen: set[str] = set()
    files = [f for f in files if not (f.path in seen or seen.add(f.path))]  # type: ignore[func-returns-value]
    paths: dict[str, FileState] = target.fact(ManagedPaths, paths=managed_paths(m, files))
    sections = target.run(drift_commands(m))
    changed = [
        f.path
        for f in files
        if not f.secret
        and (st := paths.get(f.path)) is not None
        and st.kind == "file"
        and st.sha256 != sha256(f.content)
    ]
    contents = read_contents(target, changed)
    results = evaluate(m, target.name, files, paths, contents, sections)
    if m.users or m.groups:
        # every group a user must be in is read too (as the deploy's account_state does), or membership
        # in a package-made group (postfix in sasl) would look missing
        group_names = tuple(
            sorted(
                {g.name for g in m.groups}
                | {g for u in m.users for g in u.groups}
                | {u.group for u in m.users if u.group}
            )
        )
        state: AccountState = target.fact(Accounts, users=tuple(u.name for u in m.users), groups=group_names)
        results += evaluate_accounts(m, target.name, state)
    return results


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
