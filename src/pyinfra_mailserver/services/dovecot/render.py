"""Dovecot's part of the manifest: dovecot.conf, the conf.d files it includes, the passwd-file."""

from __future__ import annotations

from pyinfra_mailserver.distro import version_tuple
from pyinfra_mailserver.manifest import ManagedFile
from pyinfra_mailserver.render.plan import Plan
from pyinfra_mailserver.render.templating import templated

# Dovecot 2.4 applies the defaults of `dovecot_config_version`, not of the installed version, so a point
# release never changes behaviour by itself. This is the version whose defaults the templates were
# reviewed against; raising it is a reviewed change (read Dovecot's "2.4 to 2.4.x" upgrade notes).
DOVECOT_CONFIG_VERSION = "2.4.1"
# The oldest Dovecot that must read the mail storage this one writes: the first 2.4, so that new file
# formats are only used once this is raised on purpose.
DOVECOT_STORAGE_VERSION = "2.4.0"
# Settings `doveconf KEY` does not answer with their value: never compared (the file's hash still is).
NOT_QUERYABLE = frozenset(
    {
        "ssl_key",  # 2.3 prints "# hidden, use -P to show it"
        "dovecot_config_version",  # 2.4 prints it only as the first line of `doveconf -n`
    }
)
# Dovecot 2.4's named filters: settings written in a `ssl_server { ... }` block are asked for as
# `ssl_server/cert_file`, and doveconf prints them back in the same block form.
FILTERS = ("ssl_server", "ssl_client")


def _includes(plan: Plan) -> list[str]:
    """conf.d files in the order Dovecot must read them (10-mail sets mail_plugins before protocol blocks)."""
    names = ["conf.d/10-auth.conf", "conf.d/10-mail.conf", "conf.d/10-master.conf", "conf.d/10-ssl.conf"]
    if "lmtp" in plan.protocols:
        names.append("conf.d/20-lmtp.conf")
    if plan.has_quota:
        names.append("conf.d/90-quota.conf")
    return names


def _first_valid_uid(plan: Plan) -> int:
    uids = [1000]
    if plan.server.virtual is not None:
        uids.append(plan.server.virtual.vmail.uid)
    return min(uids)


def files(plan: Plan) -> list[ManagedFile]:
    if not plan.uses_dovecot:
        return []
    s = plan.server
    out: list[ManagedFile] = []

    def add(rel: str, template: str, **extra: object) -> None:
        out.append(templated(plan, plan.dovecot_file(rel), template, "dovecot", context=extra))

    includes = _includes(plan)
    add(
        "dovecot.conf",
        "dovecot/dovecot.conf.j2",
        dovecot_includes=includes,
        dovecot_config_version=config_version(plan),
        dovecot_storage_version=DOVECOT_STORAGE_VERSION,
    )
    add("conf.d/10-auth.conf", "dovecot/conf.d/10-auth.conf.j2")
    add("conf.d/10-mail.conf", "dovecot/conf.d/10-mail.conf.j2", first_valid_uid=_first_valid_uid(plan))
    add("conf.d/10-master.conf", "dovecot/conf.d/10-master.conf.j2")
    add("conf.d/10-ssl.conf", "dovecot/conf.d/10-ssl.conf.j2")
    if "conf.d/20-lmtp.conf" in includes:
        add("conf.d/20-lmtp.conf", "dovecot/conf.d/20-lmtp.conf.j2")
    if "conf.d/90-quota.conf" in includes:
        add("conf.d/90-quota.conf", "dovecot/conf.d/90-quota.conf.j2")
    if s.virtual is not None:
        add("conf.d/auth-passwdfile.conf.ext", "dovecot/conf.d/auth-passwdfile.conf.ext.j2")
        # the auth process runs as dovecot and reads the passwd-file itself: root:dovecot 0640
        out.append(
            templated(
                plan,
                plan.distro.dovecot_passwd_file,
                "dovecot/users.j2",
                "dovecot",
                reload=(),
                owner="root",
                group=plan.distro.dovecot_user,
                mode="640",
                secret=True,
            )
        )
    if s.local.users:
        add("conf.d/auth-system.conf.ext", "dovecot/conf.d/auth-system.conf.ext.j2")
    return out


def config_version(plan: Plan) -> str:
    """`dovecot_config_version`: the reviewed pin, or the host's own version when that is older (a
    config may not ask for defaults of a version newer than the one running it)."""
    host = version_tuple(plan.distro.dovecot_version)
    if len(host) >= 3 and host < version_tuple(DOVECOT_CONFIG_VERSION):
        return ".".join(str(n) for n in host[:3])
    return DOVECOT_CONFIG_VERSION


def parse_settings(text: str) -> dict[str, str]:
    """Top-level `key = value` settings of a Dovecot config file (and `filter/key` for those of a named
    filter block), the way `doveconf KEY` prints them: other sections, includes and comments skipped,
    whitespace normalised, quotes around a value dropped, the last one wins. Reads rendered files and
    doveconf's output alike."""
    out: dict[str, str] = {}
    blocks: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("!"):
            continue
        if line.endswith("{"):
            blocks.append(line[:-1].strip())
            continue
        if line == "}":
            if blocks:
                blocks.pop()
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':  # a quoted value: doveconf prints it bare
            value = value[1:-1]
        if not blocks:
            out[key.strip()] = " ".join(value.split())
        elif len(blocks) == 1 and blocks[0] in FILTERS:
            out[f"{blocks[0]}/{key.strip()}"] = " ".join(value.split())
    return out


def expected_doveconf(plan: Plan, files: list[ManagedFile]) -> dict[str, str]:
    """Top-level settings `doveconf` must show, read from the rendered config files (dovecot.conf, its
    includes and the .ext files they include), so they are in the spelling of the host's Dovecot."""
    if not plan.uses_dovecot:
        return {}
    configs = [f for f in files if f.service == "dovecot" and f.template and ".conf" in f.path]
    out: dict[str, str] = {}
    for f in configs:
        out.update(parse_settings(f.content))
    return {k: v for k, v in out.items() if k not in NOT_QUERYABLE}
