"""Postfix: main.cf, master.cf, the lookup tables; checked with `postfix check` / `postconf` before
they go live."""

from pyinfra_mailserver.services.postfix import checks, deploy, render

__all__ = ["checks", "deploy", "render"]
