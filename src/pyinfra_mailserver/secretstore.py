"""Secrets: password hashes and relay credentials, kept out of the repository.

Inventory data holds either a literal hash or a reference `{"secret": "NAME"}`. A reference is read from
the host's secrets directory: host data `mailserver_secrets_dir`, else `$MAILSERVER_SECRETS_DIR`, else
`<inventory dir>/../secrets` (git-ignored). The directory must be 0700 and each file 0600, like ~/.ssh:
a hash readable by other local users is an offline-cracking target.

Kinds of secret, decided by where the reference sits in the data:
- `argon2id` / `sha512-crypt`: NAME holds a hash (Dovecot scheme prefix for ARGON2ID); `secrets generate`
  also writes NAME.password, the plaintext, for lab and test logins only.
- `plain`: NAME holds a plaintext credential Postfix must send (relay SASL password).
"""

from __future__ import annotations

import fcntl
import getpass
import os
import re
import secrets as _random
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SecretKind = Literal["argon2id", "sha512-crypt", "token", "plain"]
SCHEMES: tuple[str, ...] = ("argon2id", "sha512-crypt")
ENV_DIR = "MAILSERVER_SECRETS_DIR"
HOST_DATA_KEY = "mailserver_secrets_dir"
_NAME = re.compile(r"^[A-Za-z0-9_+@-][A-Za-z0-9_+@.-]{0,199}$")

# Argon2id cost: libsodium (Dovecot's verifier) only verifies parallelism 1; 64 MiB, 3 passes is the
# RFC 9106 "second recommended" profile and fits in Dovecot's default auth-worker memory limit.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 65536
ARGON2_PARALLELISM = 1
SHA512_ROUNDS = 656000
# A probe mailbox's password is a generated random token (no dictionary to guess from), so key
# stretching protects nothing and only costs the host on every audit login: SHA512-CRYPT's default.
TOKEN_ROUNDS = 5000


class SecretError(Exception):
    """A secret that cannot be read or written; the message says how to fix it and never holds a value."""


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name or name.endswith(".password"):
        raise SecretError(
            f"secret name {name!r} is invalid — use letters, digits, @ . _ + - (no '/', no '..', "
            "not ending in .password)"
        )
    return name


def resolve_dir(
    host_value: str | os.PathLike[str] | None, inventory_path: str | os.PathLike[str] | None
) -> Path:
    """The secrets directory of a host (see the module docstring for the order)."""
    if host_value:
        return Path(host_value).expanduser()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    if inventory_path is not None:
        return (Path(inventory_path).resolve().parent.parent / "secrets").resolve()
    return Path("secrets").resolve()


def _check_mode(path: Path, want: int, what: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~want:
        raise SecretError(
            f"{what} {path} has mode {mode:03o}, readable by others — fix it with `chmod {want:o} {path}`"
        )


def read(directory: Path, name: str) -> str:
    """The value stored under NAME (without its trailing newline)."""
    check_name(name)
    path = directory / name
    if not directory.is_dir():
        raise SecretError(f"secret {name!r} not found: secrets directory {directory} does not exist")
    _check_mode(directory, 0o700, "secrets directory")
    if not path.is_file():
        raise SecretError(f"secret {name!r} not found in {directory}")
    _check_mode(path, 0o600, "secret file")
    value = path.read_text(encoding="utf-8").rstrip("\n")
    if not value:
        raise SecretError(f"secret {name!r} in {directory} is empty")
    return value


def ensure_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def write(directory: Path, name: str, value: str) -> Path:
    """Store a value atomically with mode 0600 (the file is never readable by others, even briefly)."""
    if not name.endswith(".password"):
        check_name(name)
    ensure_dir(directory)
    path = directory / name
    tmp = directory / f".{name}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (value + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def hash_password(password: str, scheme: str = "argon2id") -> str:
    """Hash a password in a format Dovecot (and, for SHA512-CRYPT, PAM/shadow) verifies.

    ARGON2ID uses argon2-cffi and is prefixed `{ARGON2ID}` as Dovecot expects; SHA512-CRYPT uses libpass
    (maintained passlib) and is returned bare (`$6$...`), the crypt(3) form shadow holds.
    """
    if not password:
        raise SecretError("empty password refused")
    if scheme == "argon2id":
        from argon2 import PasswordHasher, Type

        hasher = PasswordHasher(
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_KIB,
            parallelism=ARGON2_PARALLELISM,
            type=Type.ID,
        )
        return "{ARGON2ID}" + hasher.hash(password)
    if scheme == "sha512-crypt":
        from passlib.hash import sha512_crypt

        return str(sha512_crypt.using(rounds=SHA512_ROUNDS).hash(password))
    if scheme == "token":
        from passlib.hash import sha512_crypt

        if len(password) < 24:
            raise SecretError("a token hash is for generated tokens only (24 or more random characters)")
        return "{SHA512-CRYPT}" + str(sha512_crypt.using(rounds=TOKEN_ROUNDS).hash(password))
    raise SecretError(f"unknown scheme {scheme!r} — use one of {', '.join(SCHEMES)}")


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against a hash we produce (for tests and `secrets generate` self-checks)."""
    if hashed.startswith("{ARGON2ID}"):
        from argon2 import PasswordHasher
        from argon2.exceptions import VerificationError

        try:
            return bool(PasswordHasher().verify(hashed.removeprefix("{ARGON2ID}"), password))
        except VerificationError:
            return False
    from passlib.hash import sha512_crypt

    return bool(sha512_crypt.verify(password, hashed.removeprefix("{SHA512-CRYPT}")))


def random_password(length: int = 24) -> str:
    """A random password without characters that need quoting in shells or SMTP tools."""
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(_random.choice(alphabet) for _ in range(length))


def read_password_interactive(prompt: str = "Password: ") -> str:
    """A password from the terminal (asked twice) or the first line of stdin when it is not a terminal."""
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        second = getpass.getpass("Again: ")
        if first != second:
            raise SecretError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@dataclass(frozen=True)
class SecretRef:
    """A `{"secret": NAME}` found in inventory data, with its field path and what kind of value it holds."""

    path: str
    name: str
    kind: SecretKind


def kind_for_path(path: str) -> SecretKind:
    """Which kind of value a reference at this data path must hold."""
    if path.startswith("relay."):
        return "plain"
    if path.startswith("local.users"):
        return "sha512-crypt"
    return "argon2id"


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secret"} and isinstance(value["secret"], str)


def find_refs(data: Any, path: str = "") -> Iterator[SecretRef]:
    """Every secret reference in raw inventory data, in data order."""
    if is_ref(data):
        yield SecretRef(path, data["secret"], kind_for_path(path))
    elif isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "password" and is_ref(value) and data.get("probe") is True:  # a probe mailbox
                yield SecretRef(sub, value["secret"], "token")
            else:
                yield from find_refs(value, sub)
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            yield from find_refs(value, f"{path}[{i}]")


def generate_missing(directory: Path, refs: list[SecretRef]) -> list[tuple[SecretRef, bool]]:
    """Create every referenced secret that does not exist yet; returns (ref, created) for each name."""
    done: dict[str, bool] = {}
    results: list[tuple[SecretRef, bool]] = []
    ensure_dir(directory)
    # one generator at a time per directory: two concurrent runs must not pair one run's hash with the
    # other's plaintext
    lock_fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        _generate_locked(directory, refs, done, results)
    finally:
        os.close(lock_fd)
    return results


def _generate_locked(
    directory: Path, refs: list[SecretRef], done: dict[str, bool], results: list[tuple[SecretRef, bool]]
) -> None:
    for ref in refs:
        if ref.name in done:
            continue
        check_name(ref.name)
        if (directory / ref.name).exists():
            done[ref.name] = False
        else:
            password = random_password(32 if ref.kind == "token" else 24)
            if ref.kind == "plain":
                write(directory, ref.name, password)
            else:
                write(directory, ref.name, hash_password(password, ref.kind))
                write(directory, ref.name + ".password", password)
            done[ref.name] = True
        results.append((ref, done[ref.name]))
