"""The typed model of a mail server (pydantic v2). `MailServer` is the root; each service's part lives in
its package (services/<name>/model.py), the shared types here (`common`, `passwords`, `services`)."""

from typing import Any

from pyinfra_mailserver.model.errors import ModelError, format_errors, validate_server

__all__ = ["MailServer", "ModelError", "format_errors", "validate_server"]


def __getattr__(name: str) -> Any:
    """`MailServer` is imported on first use: the services' model modules import this package's
    shared types, and the root model imports them."""
    if name == "MailServer":
        from pyinfra_mailserver.model.server import MailServer

        return MailServer
    raise AttributeError(name)
