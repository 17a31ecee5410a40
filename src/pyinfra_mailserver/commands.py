"""Model commands of the CLI: render, schema, passwd, secrets (generate / set)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyinfra_mailserver import distro as distros
from pyinfra_mailserver import secretstore
from pyinfra_mailserver.model import ModelError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this module's subcommands to the `mailserver` parser."""
    p = sub.add_parser("render", help="write the files a host would get, at their host paths, under --out")
    p.add_argument("inventory", help="pyinfra inventory file, e.g. inventories/example.py")
    p.add_argument(
        "--host", action="append", help="only this host (repeatable); with one host, no DIR/<host>/"
    )
    p.add_argument(
        "--distro",
        choices=[f.value for f in distros.Family],
        default=None,
        help="distro family, at its newest release (default: the data's `distro`, else debian)",
    )
    p.add_argument(
        "--release",
        choices=[r.release for r in distros.ALL_RELEASES],
        default=None,
        help="render for this release (default: host data mailserver_release, else the newest: "
        f"{distros.DEBIAN.release})",
    )
    p.add_argument(
        "--dovecot",
        metavar="VERSION",
        default=None,
        help="the Dovecot version the host runs, e.g. 2.3 or 2.4.1 (default: the release's own)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--include-secrets",
        action="store_true",
        help="write password hashes and relay credentials instead of masking them",
    )
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("schema", help="print the JSON Schema of the `mailserver` host data")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("passwd", help="hash a password (prompt twice, or stdin) for inventory data")
    p.add_argument(
        "--scheme",
        choices=secretstore.SCHEMES,
        default="argon2id",
        help="argon2id (Dovecot, virtual mailboxes) or sha512-crypt (system users, PAM)",
    )
    p.add_argument("--store", metavar="NAME", help="store the hash as secret NAME instead of printing it")
    p.add_argument("--secrets-dir", help=f"secrets directory (default ${secretstore.ENV_DIR} or ./secrets)")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("secrets", help="manage the secrets directory")
    ssub = p.add_subparsers(dest="secrets_command", metavar="ACTION")
    ssub.required = True
    g = ssub.add_parser("generate", help="create every missing referenced secret with a random password")
    g.add_argument("inventory")
    g.set_defaults(func=cmd_secrets_generate)
    s = ssub.add_parser("set", help="store a plaintext credential (e.g. a relay password) from prompt/stdin")
    s.add_argument("name")
    s.add_argument("--secrets-dir")
    s.set_defaults(func=cmd_secrets_set)


def _error(msg: str) -> int:
    print(f"mailserver: {msg}", file=sys.stderr)
    return 2


def cmd_render(args: argparse.Namespace) -> int:
    from pyinfra_mailserver.inventory import load_hosts
    from pyinfra_mailserver.render import write_tree

    try:
        hosts = load_hosts(args.inventory, args.host)
    except (ModelError, FileNotFoundError) as exc:
        return _error(str(exc))
    out = Path(args.out)
    single = args.host is not None and len(hosts) == 1
    for h in hosts:
        try:
            row = h.distro(args.release or args.distro)
            if args.dovecot:
                row = row.for_versions(dovecot=args.dovecot)
        except ValueError as exc:
            return _error(f"{h.name}: {exc}")
        manifest = h.manifest(row)
        dest = out if single else out / h.name
        written = write_tree(manifest, dest, include_secrets=args.include_secrets)
        masked = "" if args.include_secrets else " (secrets masked)"
        print(
            f"{h.name}: {len(written)} files ({row.name}, Dovecot {row.dovecot_generation}) in {dest}{masked}"
        )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from pyinfra_mailserver.model import MailServer

    schema = MailServer.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mailserver (pyinfra-mailserver host data)"
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


def _dir(arg: str | None) -> Path:
    return Path(arg) if arg else secretstore.resolve_dir(None, None)


def cmd_passwd(args: argparse.Namespace) -> int:
    try:
        password = secretstore.read_password_interactive()
        hashed = secretstore.hash_password(password, args.scheme)
        if args.store:
            directory = _dir(args.secrets_dir)
            path = secretstore.write(directory, secretstore.check_name(args.store), hashed)
            print(f"stored {args.scheme} hash of {args.store!r} in {path}", file=sys.stderr)
        else:
            print(hashed)
    except secretstore.SecretError as exc:
        return _error(str(exc))
    return 0


def cmd_secrets_set(args: argparse.Namespace) -> int:
    try:
        value = secretstore.read_password_interactive("Value: ")
        if not value:
            raise secretstore.SecretError("empty value refused")
        path = secretstore.write(_dir(args.secrets_dir), secretstore.check_name(args.name), value)
    except secretstore.SecretError as exc:
        return _error(str(exc))
    print(f"stored {args.name!r} in {path}", file=sys.stderr)
    return 0


def cmd_secrets_generate(args: argparse.Namespace) -> int:
    from pyinfra_mailserver.inventory import secret_refs

    try:
        refs = secret_refs(args.inventory)
    except FileNotFoundError as exc:
        return _error(str(exc))
    by_dir: dict[Path, list[secretstore.SecretRef]] = {}
    for _host, directory, ref in refs:
        by_dir.setdefault(directory, []).append(ref)
    created = kept = 0
    try:
        for directory, dir_refs in by_dir.items():
            for ref, new in secretstore.generate_missing(directory, dir_refs):
                state = "created" if new else "exists "
                created += new
                kept += not new
                print(f"{state} {ref.kind:12} {ref.name}  ({ref.path}) in {directory}")
    except secretstore.SecretError as exc:
        return _error(str(exc))
    print(f"secrets: {created} created, {kept} already present", file=sys.stderr)
    return 0
