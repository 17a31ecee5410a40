"""The host's own part of a mail server: packages, accounts, directories, local delivery (MDA rc files)."""

from pyinfra_mailserver.services.system import checks, deploy, render

__all__ = ["checks", "deploy", "render"]
