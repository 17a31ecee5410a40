"""saslauthd's part of the manifest: Cyrus SASL's smtpd.conf for Postfix and the saslauthd defaults file."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated


def files(plan: Plan) -> list[ManagedFile]:
    if not plan.uses_saslauthd:
        return []
    out = [
        templated(plan, plan.distro.sasl_smtpd_conf, "sasl/smtpd.conf.j2", "postfix"),
        templated(plan, plan.distro.saslauthd_defaults_file, "sasl/saslauthd.j2", "saslauthd"),
    ]
    if unit_dropin(plan):
        out.append(templated(plan, unit_dropin(plan), "sasl/saslauthd-unit.conf.j2", "saslauthd"))
    return out


def unit_dropin(plan: Plan) -> str:
    """The systemd drop-in saslauthd needs when its socket moved out of the default directory (into
    Postfix's chroot): a link at the default path, where testsaslauthd and other local tools look, and
    for a native unit the PID file that moved with the socket; "" when the socket did not move."""
    d = plan.distro
    if plan.saslauthd_socket_dir.rstrip("/") == d.saslauthd_default_socket_dir:
        return ""
    return f"{d.systemd_unit_dir}/{d.services['saslauthd']}.service.d/pyinfra-mailserver.conf"
