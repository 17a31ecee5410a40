"""The `mailserver` command line: render, schema, passwd, lab (and later drift, audit ...)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each entry is a module with `register(subparsers) -> None`; a subcommand sets `func(args) -> int`.
# Kept as a list so a new command is one module plus one line here.
COMMAND_MODULES: tuple[str, ...] = (
    "pyinfra_mailserver.commands",
    "pyinfra_mailserver.lab.cli",
    "pyinfra_mailserver.deploy_cli",
    "pyinfra_mailserver.audit_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailserver",
        description="Provision and audit Postfix / Dovecot / saslauthd mail hosts with pyinfra.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
