"""saslauthd's part of the manifest: Cyrus SASL's smtpd.conf for Postfix and the saslauthd defaults file."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated


def files(plan: Plan) -> list[ManagedFile]:
    if not plan.uses_saslauthd:
        return []
    return [
        templated(plan, plan.distro.sasl_smtpd_conf, "sasl/smtpd.conf.j2", "postfix"),
        templated(plan, plan.distro.saslauthd_defaults_file, "sasl/saslauthd.j2", "saslauthd"),
    ]
