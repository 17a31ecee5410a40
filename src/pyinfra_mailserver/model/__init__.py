"""The typed model of a mail server (pydantic v2), one module per concern; `MailServer` is the root."""

from pyinfra_mailserver.model.errors import ModelError, format_errors, validate_server
from pyinfra_mailserver.model.server import MailServer

__all__ = ["MailServer", "ModelError", "format_errors", "validate_server"]
