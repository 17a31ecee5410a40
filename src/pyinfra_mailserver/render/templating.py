"""The jinja2 environment: strict (an undefined name is an error), no autoescape, trailing newline kept."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from pyinfra_mailserver import templates_dir
from pyinfra_mailserver.manifest import ManagedFile, ServiceName
from pyinfra_mailserver.render.plan import HEADER, Plan


def _alias_target(target: str) -> str:
    """An /etc/aliases target, quoted when it holds spaces (|command args, paths with spaces)."""
    return f'"{target}"' if (" " in target or "," in target) else target


def _svc_name(name: str, port: int) -> str:
    """master.cf service name: the IANA name on its default port, else the port number."""
    defaults = {"smtp": 25, "submission": 587, "smtps": 465}
    return name if defaults.get(name) == port else str(port)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["alias_target"] = _alias_target
    env.globals["svc_name"] = _svc_name
    return env


def header(comment: str, template: str) -> str:
    return f"{comment} {HEADER}\n{comment} Rendered from templates/{template}."


def render(template: str, plan: Plan, **extra: Any) -> str:
    """Render one template with the model (`server`), the distro row (`distro`) and what is derived
    from both (`plan`: paths, sockets, the TLS plan...)."""
    tpl = environment().get_template(template)
    text = tpl.render(
        server=plan.server,
        distro=plan.distro,
        plan=plan,
        header=lambda c: header(c, template),
        **extra,
    )
    # collapse runs of blank lines left by optional sections; always end with exactly one newline
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line == "" and (not lines or lines[-1] == ""):
            continue
        lines.append(line)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def templated(
    plan: Plan,
    path: str,
    template: str,
    service: ServiceName,
    *,
    reload: tuple[ServiceName, ...] | None = None,
    context: dict[str, Any] | None = None,
    **file_fields: Any,
) -> ManagedFile:
    """A managed file rendered from `template`: the one place that ties a file to its template name.

    `reload` defaults to the owning service (a change to its config reloads it); `context` is extra
    template variables; `file_fields` are the other ManagedFile fields (owner, group, mode, secret).
    """
    return ManagedFile(
        path=path,
        content=render(template, plan, **(context or {})),
        service=service,
        template=template,
        reload=(service,) if reload is None else reload,
        **file_fields,
    )
