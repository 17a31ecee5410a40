"""Password fields: literal hashes or `{"secret": NAME}` references, never plaintext.

A reference is resolved while the model validates, from the secrets directory given in the validation
context (`{"secrets_dir": Path}`), so a missing secret is one more listed problem naming its field.
Values are held as SecretStr: repr/str of any model show `**********`, never a hash.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from pyinfra_mailserver import secretstore
from pyinfra_mailserver.model.common import Strict, err

_ARGON2ID = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}$")
_SHA512 = re.compile(r"^\$6\$(rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}$")
_SCHEME = re.compile(r"^\{([A-Za-z0-9.-]+)\}")


def _fix_for(kind: secretstore.SecretKind, name: str, directory: Path) -> str:
    if kind == "plain":
        return f"create it with `mailserver secrets set {name} --secrets-dir {directory}`"
    scheme = "" if kind == "argon2id" else " --scheme sha512-crypt"
    return f"create it with `mailserver passwd{scheme} --store {name} --secrets-dir {directory}`"


def _resolve(value: Any, info: ValidationInfo, kind: secretstore.SecretKind) -> Any:
    """Turn a `{"secret": NAME}` into the stored value; pass literals through for the format check."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, dict):
        if not secretstore.is_ref(value):
            raise err("secret_ref", 'a secret reference is {"secret": "NAME"} and nothing else')
        name = value["secret"]
        try:
            secretstore.check_name(name)
        except secretstore.SecretError as exc:
            raise err("secret_ref", str(exc)) from None
        context = info.context or {}
        directory = context.get("secrets_dir")
        if directory is None:
            raise err(
                "secret_missing",
                f"secret {name!r} referenced but no secrets directory is known — set host data "
                f"`{secretstore.HOST_DATA_KEY}` or ${secretstore.ENV_DIR}",
            )
        directory = Path(directory)
        try:
            return secretstore.read(directory, name)
        except secretstore.SecretError as exc:
            msg = str(exc)
            if "not found" in msg:
                msg += f" — {_fix_for(kind, name, directory)} (or `mailserver secrets generate INVENTORY`)"
            raise err("secret_missing", msg) from None
    if not isinstance(value, str):
        raise err("password_type", 'give a hash string or {"secret": "NAME"}')
    return value


def _dovecot_hash(value: Any, info: ValidationInfo) -> SecretStr:
    """A hash Dovecot verifies: {ARGON2ID}$argon2id$... (p=1) or {SHA512-CRYPT}$6$..."""
    text = _resolve(value, info, "argon2id")
    if isinstance(text, SecretStr):
        text = text.get_secret_value()
    return SecretStr(normalise_dovecot_hash(text))


def normalise_dovecot_hash(text: str) -> str:
    text = text.strip()
    m = _SCHEME.match(text)
    scheme = m.group(1).upper() if m else None
    body = text[m.end() :] if m else text
    if scheme is None:
        if body.startswith("$argon2id$"):
            scheme = "ARGON2ID"
        elif body.startswith("$6$"):
            scheme = "SHA512-CRYPT"
    if scheme in {"PLAIN", "CLEARTEXT", "PLAIN-TRUNC"} or (scheme is None and not body.startswith("$")):
        raise err(
            "plaintext_password",
            "a plaintext password is refused — store a hash instead: `mailserver passwd` prints one "
            '(or use {"secret": "NAME"} with `mailserver passwd --store NAME`)',
        )
    if scheme == "ARGON2ID":
        am = _ARGON2ID.match(body)
        if not am:
            raise err("password_hash", "malformed {ARGON2ID} hash — regenerate it with `mailserver passwd`")
        if am.group(3) != "1":
            raise err(
                "password_hash",
                f"ARGON2ID hash with parallelism p={am.group(3)}: Dovecot's libsodium verifies p=1 only — "
                "regenerate it with `mailserver passwd`",
            )
        return "{ARGON2ID}" + body
    if scheme == "SHA512-CRYPT":
        if not _SHA512.match(body):
            raise err("password_hash", "malformed SHA512-CRYPT hash — regenerate it with `mailserver passwd`")
        return "{SHA512-CRYPT}" + body
    raise err(
        "password_scheme",
        f"password scheme {scheme or 'unknown'} refused — use ARGON2ID or SHA512-CRYPT "
        "(`mailserver passwd [--scheme sha512-crypt]`)",
    )


def _crypt_hash(value: Any, info: ValidationInfo) -> SecretStr:
    """A crypt(3) SHA512 hash for /etc/shadow (PAM and saslauthd's shadow only understand crypt)."""
    text = _resolve(value, info, "sha512-crypt")
    if isinstance(text, SecretStr):
        text = text.get_secret_value()
    text = text.strip()
    if text.upper().startswith("{ARGON2ID}") or text.startswith("$argon2"):
        raise err(
            "password_scheme",
            "system users need a crypt(3) hash (PAM/shadow cannot verify ARGON2ID) — "
            "use `mailserver passwd --scheme sha512-crypt`",
        )
    normal = normalise_dovecot_hash(text)
    if not normal.startswith("{SHA512-CRYPT}"):
        raise err("password_scheme", "system users need a SHA512-CRYPT hash ($6$...)")
    return SecretStr(normal.removeprefix("{SHA512-CRYPT}"))


def _plain_secret(value: Any, info: ValidationInfo) -> SecretStr:
    """A credential Postfix must send in clear over TLS: only accepted as a reference, never literal."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        raise err(
            "literal_secret",
            'a literal credential in inventory data would be committed — use {"secret": "NAME"} and '
            "`mailserver secrets set NAME`",
        )
    text = _resolve(value, info, "plain")
    if isinstance(text, SecretStr):
        return text
    if len(text) < 8 or "\n" in text:
        # short values are weak, and would be masked everywhere they occur in reports
        raise err("secret_weak", "the stored credential must be one line of at least 8 characters")
    return SecretStr(text)


_REF_SCHEMA = {
    "type": "object",
    "properties": {"secret": {"type": "string", "description": "name of a file in the secrets directory"}},
    "required": ["secret"],
    "additionalProperties": False,
}

DovecotHash = Annotated[
    SecretStr,
    BeforeValidator(_dovecot_hash),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^(\{ARGON2ID\}\$argon2id\$|\{SHA512-CRYPT\}\$6\$|\$argon2id\$|\$6\$)",
                },
                _REF_SCHEMA,
            ]
        }
    ),
]
CryptHash = Annotated[
    SecretStr,
    BeforeValidator(_crypt_hash),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^(\{SHA512-CRYPT\})?\$6\$"}, _REF_SCHEMA]}),
]
PlainSecret = Annotated[SecretStr, BeforeValidator(_plain_secret), WithJsonSchema(_REF_SCHEMA)]


def secret_name_of(data: Any) -> str | None:
    """The NAME of a `{"secret": NAME}` password in raw data (kept so tests know which login to use)."""
    if isinstance(data, dict):
        pw = data.get("password")
        if isinstance(pw, dict) and secretstore.is_ref(pw):
            return str(pw["secret"])
    return None


class SecretBacked(Strict):
    """An account whose `password` may come from a {"secret": NAME} reference.

    The model keeps only the resolved hash; the name is remembered apart so that tests, the audit's probe
    account and `mailserver secrets generate` can find the matching plaintext without it ever being data.
    """

    _secret_name: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")  # type: ignore[misc]
    @classmethod
    def _remember_secret(cls, data: object, handler: ValidatorFunctionWrapHandler) -> object:
        obj = handler(data)
        if isinstance(obj, cls):
            obj._secret_name = secret_name_of(data)
        return obj

    @property
    def secret_name(self) -> str | None:
        """Name of the secret the password came from (None for a literal hash in the data)."""
        return self._secret_name
