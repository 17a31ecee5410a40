"""The lab group data: validates for FQDN-named lab hosts, keeps the controller out of mynetworks, routes
the sink domain to the controller, and covers both variants."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

from mailserver_testdata import EXAMPLE, REPO

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.inventory import load_hosts, secret_refs
from pyinfra_mailserver.services.postfix.model import MANAGED_PARAMS

CONTROLLER = ipaddress.ip_address("10.213.0.1")


def _lab_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_data").mkdir(parents=True)
    for name in ("lab_saslauthd.py", "lab_virtual.py"):
        shutil.copy(REPO / "inventories/group_data" / name, inv / "group_data" / name)
    # the lab inventory sets mailserver_secrets_dir per host; here the lab dir is a tmp dir
    (inv / "lab.py").write_text(
        f"_d = {{'mailserver_secrets_dir': {str(tmp_path / 'lab-secrets')!r}}}\n"
        "lab_saslauthd = [('mx1.lab.test', _d)]\nlab_virtual = [('mx2.lab.test', _d)]\n"
    )
    return inv / "lab.py"


def test_lab_data_validates_and_is_safe(tmp_path: Path) -> None:
    inv = _lab_inventory(tmp_path)
    refs = secret_refs(inv)
    assert {d for _h, d, _r in refs} == {tmp_path / "lab-secrets"}
    secretstore.generate_missing(tmp_path / "lab-secrets", [r for _h, _d, r in refs])
    hosts = {h.name: h for h in load_hosts(inv)}
    assert set(hosts) == {"mx1.lab.test", "mx2.lab.test"}
    for h in hosts.values():
        s = h.server
        assert s.identity.myhostname == h.name and s.identity.mydomain == "lab.test"
        for net in s.identity.mynetworks or []:
            assert CONTROLLER not in ipaddress.ip_network(net.strip("[]").replace("]", ""))
        assert s.relay.transport["sink.lab.test"] == "smtp:[10.213.0.1]:2525"
        m = h.manifest()
        assert m.tls.ca_path == "/etc/ssl/certs/lab.test-lab-ca.pem"
        assert all(a.secret for a in m.accounts)
    assert hosts["mx1.lab.test"].server.sasl.backend == "saslauthd"
    assert hosts["mx2.lab.test"].server.sasl.backend == "dovecot"


def test_managed_params_cover_every_rendered_parameter(secrets_env: Path, tmp_path: Path) -> None:
    inv = _lab_inventory(tmp_path)
    secretstore.generate_missing(tmp_path / "lab-secrets", [r for _h, _d, r in secret_refs(inv)])
    for path in (EXAMPLE, inv):
        for h in load_hosts(path):
            for family in ("debian", "rhel"):
                assert set(h.manifest(family).postconf) <= MANAGED_PARAMS
