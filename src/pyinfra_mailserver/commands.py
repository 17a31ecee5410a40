"""Model commands of the CLI: render, schema, passwd."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this module's subcommands to the `mailserver` parser."""
