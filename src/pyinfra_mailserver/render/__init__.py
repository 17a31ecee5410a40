"""From a validated MailServer to a Manifest (every file, map, user, service of a host), and to a tree.

Each service's `render` module (services/<name>/render.py) contributes its entries; `build_manifest`
puts them together so that render, deploy, drift and audit all read the same derived data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyinfra_mailserver.distro import Distro
from pyinfra_mailserver.manifest import Manifest, Service
from pyinfra_mailserver.model import MailServer
from pyinfra_mailserver.render.plan import Plan

__all__ = ["Plan", "build_manifest", "parse_main_cf", "parse_master_cf", "write_tree"]

MASK = "**masked**"


def __getattr__(name: str) -> Any:
    """`parse_main_cf` / `parse_master_cf` live with Postfix (services/postfix/render.py)."""
    if name in ("parse_main_cf", "parse_master_cf"):
        from pyinfra_mailserver.services.postfix import render as postfix

        return getattr(postfix, name)
    raise AttributeError(name)


def build_manifest(server: MailServer, distro: Distro) -> Manifest:
    """Everything the host must look like, derived once from the model and the distro row."""
    # the services' render modules read the Plan of this package: imported here, not at its import
    from pyinfra_mailserver.services.dovecot import render as dovecot
    from pyinfra_mailserver.services.fail2ban import render as fail2ban
    from pyinfra_mailserver.services.postfix import render as postfix
    from pyinfra_mailserver.services.sasl import render as sasl
    from pyinfra_mailserver.services.system import render as system

    plan = Plan(server, distro)
    files = [
        *postfix.files(plan),
        *sasl.files(plan),
        *dovecot.files(plan),
        *fail2ban.files(plan),
        *system.files(plan),
    ]
    main_cf = next(f for f in files if f.path == plan.postfix_file("main.cf"))
    master_cf = next(f for f in files if f.path == plan.postfix_file("master.cf"))
    replaced = distro.replaced_units.get("postfix", ())
    services = [Service("postfix", distro.services["postfix"], replaces=replaced)]
    if plan.uses_dovecot:
        services.append(Service("dovecot", distro.services["dovecot"]))
    if plan.uses_saslauthd:
        services.append(
            Service(
                "saslauthd",
                distro.services["saslauthd"],
                reload=False,
                daemon_reload=bool(sasl.unit_dropin(plan)),
            )
        )
    if plan.uses_fail2ban:
        # restarted, not reloaded: after `fail2ban-client reload` its journal readers see no new entries
        # (bans survive a restart: fail2ban keeps them in its database)
        services.append(Service("fail2ban", distro.services["fail2ban"], reload=False))
    return Manifest(
        hostname=plan.hostname,
        distro=distro,
        packages=system.packages(plan),
        debconf=system.debconf(plan),
        groups=system.groups(plan),
        users=system.users(plan),
        directories=system.directories(plan),
        files=tuple(sorted(files, key=lambda f: f.path)),
        maps=postfix.maps(plan),
        services=tuple(services),
        ports=system.ports(plan),
        tls=plan.tls,
        postconf=postfix.parse_main_cf(main_cf.content),
        postconf_master=postfix.parse_master_cf(master_cf.content),
        secrets=system.secrets(plan),
        doveconf=dovecot.expected_doveconf(plan, files),
        sasl_backend=server.sasl.backend if server.sasl else None,
        accounts=system.accounts(plan),
        regexp_maps=postfix.regexp_maps(plan),
        sockets=system.sockets(plan),
        domains=tuple(postfix.served_domains(plan)),
    )


def write_tree(
    manifest: Manifest, out: str | os.PathLike[str], *, include_secrets: bool = False
) -> list[Path]:
    """Write every managed file under `out` at its host path (out/etc/postfix/main.cf ...).

    Secret files are always written 0600; without `include_secrets` their secrets are masked, so the tree
    can be shared, diffed and still checked by postmap/doveconf.
    """
    root = Path(out)
    written: list[Path] = []
    for f in manifest.files:
        dest = root / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        content = f.content
        if f.secret and not include_secrets:
            content = manifest.mask(content, MASK)
        mode = 0o600 if f.secret else int(f.mode, 8)
        tmp = dest.with_name(f".{dest.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, content.encode("utf-8"))
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
        written.append(dest)
    return written
