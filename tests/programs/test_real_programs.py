"""Rendered trees checked by the real programs installed on the controller (Debian packages):
postconf (no warning, and exactly the manifest's settings), postmap/postalias (every map builds and
answers its sample key), doveconf (accepts the Dovecot config, with the manifest's settings), and
doveadm pw (accepts the hashes `mailserver passwd` makes).

For both example hosts (saslauthd and virtual variants) and the two lab variants, for every release of
the distro table (Debian 12 and 13, EL9 and EL10). The controller is Debian 12, so its doveconf checks
the Dovecot 2.3 trees; the 2.4 trees are checked by the doveconf of a Debian 13 lab host. Without the
programs the tests skip, except under CI=true where they fail loudly.
"""

from __future__ import annotations

import base64
import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pyinfra_mailserver import distro, secretstore
from pyinfra_mailserver.inventory import load_hosts, secret_refs
from pyinfra_mailserver.manifest import Manifest
from pyinfra_mailserver.render import write_tree

pytestmark = pytest.mark.programs

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventories" / "example.py"
PROGRAMS = ("postconf", "postmap", "postalias", "doveconf", "doveadm")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None
    )


@pytest.fixture(scope="module", autouse=True)
def programs() -> dict[str, str]:
    found = {p: _which(p) for p in PROGRAMS}
    missing = [p for p, path in found.items() if path is None]
    if missing:
        msg = f"mail programs missing: {', '.join(missing)} (./scripts/bootstrap installs them)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(msg)
        pytest.skip(msg)
    return {p: str(path) for p, path in found.items()}


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def _lab_inventory(root: Path) -> Path:
    """A stand-in for the lab inventory (two hosts, the real lab group data), without a running lab."""
    inv = root / "lab-inv"
    (inv / "group_data").mkdir(parents=True)
    for name in ("lab_saslauthd.py", "lab_virtual.py"):
        shutil.copy(REPO / "inventories" / "group_data" / name, inv / "group_data" / name)
    (inv / "lab.py").write_text('lab_saslauthd = ["mx1.lab.test"]\nlab_virtual = ["mx2.lab.test"]\n')
    return inv / "lab.py"


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Manifest, Path, Path]]:
    """id -> (manifest, rendered tree, secrets dir) for every host × release."""
    root = tmp_path_factory.mktemp("programs")
    secrets_dir = root / "secrets"
    mp = pytest.MonkeyPatch()
    mp.setenv(secretstore.ENV_DIR, str(secrets_dir))
    out: dict[str, tuple[Manifest, Path, Path]] = {}
    try:
        for inv in (EXAMPLE, _lab_inventory(root)):
            secretstore.generate_missing(secrets_dir, [ref for _h, _d, ref in secret_refs(inv)])
            for h in load_hosts(inv):
                for row in distro.ALL_RELEASES:
                    m = h.manifest(row)
                    tree = root / f"{h.name}-{row.release}"
                    write_tree(m, tree, include_secrets=True)
                    out[f"{h.name}-{row.release}"] = (m, tree, secrets_dir)
    finally:
        mp.undo()
    return out


HOSTS = ("mx1.example.org", "mx2.example.org", "mx1.lab.test", "mx2.lab.test")
IDS = [f"{h}-{r.release}" for h in HOSTS for r in distro.ALL_RELEASES]
IDS_23 = [f"{h}-{r.release}" for h in HOSTS for r in distro.ALL_RELEASES if r.dovecot_generation == "2.3"]
IDS_24 = [f"{h}-{r.release}" for h in HOSTS for r in distro.ALL_RELEASES if r.dovecot_generation == "2.4"]


@pytest.mark.parametrize("tid", IDS)
def test_postconf_no_warning_and_exact_settings(tid: str, trees: dict, programs: dict[str, str]) -> None:
    m, tree, _ = trees[tid]
    conf = tree / "etc/postfix"
    r = run([programs["postconf"], "-c", str(conf), "-n"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    shown = dict(
        line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "") for line in r.stdout.splitlines()
    )
    shown.pop("config_directory", None)  # added by -c
    assert shown == m.postconf
    r = run([programs["postconf"], "-c", str(conf), "-M"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert tuple(" ".join(line.split()) for line in r.stdout.splitlines()) == m.postconf_master


@pytest.mark.parametrize("tid", IDS)
def test_every_map_builds_and_answers(
    tid: str, trees: dict, programs: dict[str, str], tmp_path: Path
) -> None:
    m, tree, _ = trees[tid]
    conf = str(tree / "etc/postfix")
    assert m.maps, "every host has at least the aliases map"
    for mp in m.maps:
        src = tmp_path / Path(mp.source).name
        shutil.copy(tree / mp.source.lstrip("/"), src)
        tool = programs[mp.command]
        r = run([tool, "-c", conf, f"{mp.type}:{src}"])
        assert r.returncode == 0 and r.stderr == "", f"{mp.command} {mp.type}:{mp.source}: {r.stderr}"
        if mp.sample_key:
            q = run([programs["postmap"], "-c", conf, "-q", mp.sample_key, f"{mp.type}:{src}"])
            assert q.returncode == 0 and q.stdout.strip(), f"{mp.sample_key} not in {mp.source}: {q.stderr}"
    for spec in m.regexp_maps:
        kind, path = spec.split(":", 1)
        q = run(
            [programs["postmap"], "-c", conf, "-q", "Subject: hello", f"{kind}:{tree / path.lstrip('/')}"]
        )
        assert q.returncode in (0, 1) and q.stderr == "", q.stderr


def test_header_checks_warn_rules_match(trees: dict, programs: dict[str, str]) -> None:
    _m, tree, _ = trees["mx1.example.org-trixie"]
    table = f"regexp:{tree / 'etc/postfix/header_checks'}"
    for header in ("Subject: hello", "subject: hello", "From: a@b.example", "To: c@d.example"):
        q = run([programs["postmap"], "-c", str(tree / "etc/postfix"), "-q", header, table])
        assert q.stdout.strip() == "WARN", header


@pytest.mark.parametrize("tid", IDS_23)
def test_doveconf_accepts_the_config(tid: str, trees: dict, programs: dict[str, str]) -> None:
    m, tree, _ = trees[tid]
    conf = tree / "etc/dovecot/dovecot.conf"
    r = run([programs["doveconf"], "-c", str(conf), "-n"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    for key, value in m.doveconf.items():
        h = run([programs["doveconf"], "-c", str(conf), "-h", key])
        assert h.returncode == 0 and h.stdout.strip() == value, f"{key}: {h.stdout!r} {h.stderr}"


@pytest.fixture(scope="module")
def dovecot24(lab: Any) -> Any:
    """A Debian 13 lab host with Dovecot 2.4 installed (no config of ours: only its doveconf is used)."""
    release = next(r.release for r in distro.RELEASES[distro.Family.DEBIAN] if r.dovecot_generation == "2.4")
    [host] = lab.up(1, variant="virtual", release=release)
    from pyinfra_mailserver.engine import shell

    row = distro.get(distro.Family.DEBIAN, release)
    names = [*row.dovecot_core_packages, *(p for ps in row.dovecot_protocol_packages.values() for p in ps)]
    host.check(shell.command("packages", "-F", "debian", "-P", row.policy_rc_d, *names), timeout=900)
    try:
        yield host
    finally:
        lab.down([host.name])


@pytest.mark.parametrize("tid", IDS_24)
def test_doveconf_2_4_accepts_the_config(tid: str, trees: dict, dovecot24: Any) -> None:
    """The 2.4 tree in a scratch directory of the Debian 13 host: `doveconf -n` accepts it, and every
    setting the manifest expects is what that doveconf reports."""
    m, tree, _ = trees[tid]
    where = f"/tmp/tree-{tid}"
    payload = base64.b64encode(_tar(tree / "etc/dovecot")).decode()
    dovecot24.check(f"rm -rf {where} && mkdir -p {where} && base64 -d | tar -C {where} -xf -", input=payload)
    conf = f"{where}/dovecot.conf"
    r = dovecot24.run(f"doveconf -c {conf} -n >/dev/null")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    keys = " ".join(shlex.quote(k) for k in m.doveconf)
    shown = dovecot24.check(f'for k in {keys}; do printf \'%s=\' "$k"; doveconf -c {conf} -h "$k"; done')
    got = dict(line.split("=", 1) for line in shown.splitlines())
    assert got == m.doveconf


def _tar(directory: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(directory, arcname=".")
    return out.getvalue()


@pytest.mark.parametrize("scheme", secretstore.SCHEMES)
def test_doveadm_verifies_mailserver_passwd_hashes(scheme: str, programs: dict[str, str]) -> None:
    password = "Corr3ct horse:battery"
    r = run(
        [sys.executable, "-m", "pyinfra_mailserver.cli", "passwd", "--scheme", scheme], input=password + "\n"
    )
    assert r.returncode == 0, r.stderr
    hashed = r.stdout.strip()
    dovecot_form = hashed if hashed.startswith("{") else "{SHA512-CRYPT}" + hashed
    ok = run([programs["doveadm"], "pw", "-t", dovecot_form, "-p", password])
    assert ok.returncode == 0 and "(verified)" in ok.stdout, ok.stderr
    bad = run([programs["doveadm"], "pw", "-t", dovecot_form, "-p", "wrong"])
    assert bad.returncode != 0


def test_doveadm_verifies_the_rendered_passwd_file(trees: dict, programs: dict[str, str]) -> None:
    for tid in ("mx2.example.org-bookworm", "mx2.example.org-trixie", "mx2.lab.test-trixie"):
        m, tree, secrets_dir = trees[tid]
        users = (tree / "etc/dovecot/users").read_text().splitlines()
        by_login = {a.login: a for a in m.accounts}
        checked = 0
        for line in users:
            if not line or line.startswith("#"):
                continue
            login, hashed = line.split(":")[:2]
            secret = by_login[login].secret
            assert secret is not None
            password = (secrets_dir / f"{secret}.password").read_text().strip()
            ok = run([programs["doveadm"], "pw", "-t", hashed, "-p", password])
            assert ok.returncode == 0, ok.stderr
            checked += 1
        assert checked == len([a for a in m.accounts if a.kind == "virtual"])
