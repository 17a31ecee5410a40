"""saslauthd's part of the manifest: Cyrus SASL's smtpd.conf for Postfix and the saslauthd defaults file."""

from __future__ import annotations

from pyinfra_mailserver.manifest import ManagedFile
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import render


def files(plan: Plan) -> list[ManagedFile]:
    if not plan.uses_saslauthd:
        return []
    return [
        ManagedFile(
            path=plan.distro.sasl_smtpd_conf,
            content=render("sasl/smtpd.conf.j2", plan),
            service="postfix",
            template="sasl/smtpd.conf.j2",
            reload=("postfix",),
        ),
        ManagedFile(
            path=plan.distro.saslauthd_defaults_file,
            content=render("sasl/saslauthd.j2", plan),
            service="saslauthd",
            template="sasl/saslauthd.j2",
            reload=("saslauthd",),
        ),
    ]
