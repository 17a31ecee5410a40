"""Issue 6 (5): no password hash, plaintext test password, private key or relay credential appears in any
output of the tool (deploys with and without --diff / -v / -vvv, a dry plan, a failed deploy, render,
drift, audit), nor in a world-readable file on the controller or the host.

Every captured output is grepped for every secret the controller holds for the lab (the secrets
directory: hashes, the plaintexts `secrets generate` made for tests, the relay password, each line of
the CA and server private keys).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from safety_support import (
    MAILSERVER,
    STAGE_DIR,
    SafetyHost,
    leaks,
    pyinfra_exe,
    run_tool,
    secret_values,
)

pytestmark = pytest.mark.lab

# Changes that touch secret files (Dovecot's passwd-file via a quota, sasl_passwd via the relay user)
# and a plain one (an alias), so diffs of both kinds are printed.
CHANGES = {
    "a": (
        "mailserver['virtual']['mailboxes'][0]['quota'] = '3G'",
        "_relay['credentials']['username'] = 'safety-relay-a'",
        "mailserver['aliases']['safety-a'] = ['root']",
    ),
    "b": (
        "mailserver['virtual']['mailboxes'][0]['quota'] = '4G'",
        "_relay['credentials']['username'] = 'safety-relay-b'",
        "mailserver['aliases']['safety-b'] = ['root']",
    ),
    "c": (
        "mailserver['virtual']['mailboxes'][1]['quota'] = '7M'",
        "_relay['credentials']['username'] = 'safety-relay-c'",
    ),
}


def _out(r: Any) -> str:
    return str(r.stdout) + str(r.stderr)


@pytest.fixture(scope="module")
def outputs(safe_host: SafetyHost, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every output the tool prints in the runs above, by label (the host is restored at the end)."""
    dep = safe_host.dep
    inv, env = str(dep.inventory), dep.env
    out: dict[str, str] = {}
    try:
        safe_host.write_data(*CHANGES["a"])
        r = run_tool([pyinfra_exe(), "-y", inv, "deploys/deploy_mailserver.py", "--diff", "-vvv"], env)
        assert r.returncode == 0, _out(r)[-3000:]
        out["pyinfra --diff -vvv"] = _out(r)

        safe_host.write_data(*CHANGES["b"])
        r = run_tool([MAILSERVER, "deploy", inv, "--dry", "--diff", "-v"], env)
        out["mailserver deploy --dry --diff -v"] = _out(r)
        r = run_tool([MAILSERVER, "deploy", inv, "--diff", "-v"], env)
        assert r.returncode == 0, _out(r)[-3000:]
        out["mailserver deploy --diff -v"] = _out(r)

        safe_host.write_data(*CHANGES["c"])
        r = run_tool([MAILSERVER, "deploy", inv, "--json", "--diff", "-v"], env)
        assert r.returncode == 0, _out(r)[-3000:]
        out["mailserver deploy --json --diff -v"] = _out(r)

        # a failing deploy: the checker's message and pyinfra's error output
        safe_host.write_data(*CHANGES["a"], postfix_extra={"mail_owner": "nosuchuser"})
        r = run_tool([pyinfra_exe(), "-y", inv, "deploys/deploy_mailserver.py", "-v"], env)
        assert r.returncode != 0, _out(r)[-3000:]
        out["pyinfra -v (failing deploy)"] = _out(r)
        r = run_tool([MAILSERVER, "deploy", inv, "--json", "--diff"], env)
        assert r.returncode != 0, _out(r)[-3000:]
        out["mailserver deploy --json --diff (failing deploy)"] = _out(r)

        safe_host.write_data()
        r = run_tool([pyinfra_exe(), "-y", inv, "deploys/deploy_mailserver.py"], env)
        assert r.returncode == 0, _out(r)[-3000:]
        out["pyinfra (plain)"] = _out(r)

        tree = tmp_path_factory.mktemp("render")
        r = run_tool([MAILSERVER, "render", inv, "--out", str(tree)], env)
        assert r.returncode == 0, _out(r)
        out["mailserver render"] = _out(r)
        for f in sorted(p for p in tree.rglob("*") if p.is_file()):
            out[f"rendered file {f.relative_to(tree)}"] = f.read_text(errors="replace")

        for argv in (["drift"], ["drift", "--json"], ["audit", "--json"], ["audit", "-v"]):
            r = run_tool(
                [MAILSERVER, *argv, inv, "--ca", str(dep.ca_file)]
                if argv[0] == "audit"
                else [MAILSERVER, *argv, inv],
                env,
            )
            assert r.returncode in (0, 1), _out(r)[-3000:]
            out[f"mailserver {' '.join(argv)}"] = _out(r)
    finally:
        safe_host.restore()
    return out


def test_no_secret_in_any_output(safe_host: SafetyHost, outputs: dict[str, str]) -> None:
    secrets = secret_values(safe_host.dep.secrets_dir)
    kinds = {name.split("#")[0] for name in secrets}
    # the scan looks for the kinds the issue names: hashes, test plaintexts, the relay password, keys
    assert any(k.endswith(".password") for k in kinds) and any("relay-safety" in k for k in kinds)
    assert any("key" in k for k in kinds), sorted(kinds)
    found = {label: leaks(text, secrets) for label, text in outputs.items()}
    found = {k: v for k, v in found.items() if v}
    assert found == {}, f"secrets (by name) in outputs: {json.dumps(found, indent=1)}"
    # the diffs were really printed, with the secret files masked
    assert "secret content: diff masked" in outputs["pyinfra --diff -vvv"]
    assert "secret content: diff masked" in outputs["mailserver deploy --diff -v"]
    assert "safety-b" in outputs["mailserver deploy --diff -v"]  # a plain diff line is shown
    assert "check failed" in outputs["pyinfra -v (failing deploy)"]


def test_no_world_readable_secret_on_the_controller(safe_host: SafetyHost) -> None:
    d = safe_host.dep.secrets_dir
    r = run_tool(["find", str(d), "-perm", "-o+r", "!", "-name", "*.crt"], safe_host.dep.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"world-readable under {d}:\n{r.stdout}"
    r = run_tool(["find", str(d), "-type", "f", "-perm", "/g+rwx"], safe_host.dep.env)
    assert r.stdout.strip() == "", f"group-accessible secret files:\n{r.stdout}"


def test_no_world_readable_secret_on_the_host(safe_host: SafetyHost) -> None:
    safe_host.write_data()  # the base data, as restored by the output fixture
    m = safe_host.manifest()
    paths = {f.path for f in m.files if f.secret} | {m.tls.key_path}
    paths |= {f"{mp.source}.db" for mp in m.maps if mp.source in paths}
    paths.add(STAGE_DIR)
    q = " ".join(shlex.quote(p) for p in sorted(paths))
    present = safe_host.check(f"ls -d {q} 2>/dev/null; true").split()
    assert m.tls.key_path in present and any("sasl_passwd" in p for p in present), present
    found = safe_host.check(f"find {q} -perm -o+r 2>/dev/null; true").strip()
    assert found == "", f"world-readable secrets on the host:\n{found}"
    # and no copy of a secret file anywhere under the config trees (a backup, a stage leftover)
    names = " -o ".join(f"-name {shlex.quote(Path(p).name + '*')}" for p in sorted(paths) if p != STAGE_DIR)
    roots = "/etc /var/lib/pyinfra-mailserver"
    found = safe_host.check(f"find {roots} \\( {names} \\) -perm -o+r 2>/dev/null; true")
    assert found.strip() == "", found
