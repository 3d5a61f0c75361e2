"""Secrets at rest: unit passwords and Wi-Fi passphrases, encrypted with AES-256-GCM.

A stored secret is a text token::

    v1:<kid>:<base64url(nonce ‖ ciphertext ‖ tag)>

- `v1` is the token format;
- `kid` names the key (8 hex digits derived from the key itself), so a `SecretBox` can hold
  older keys next to the current one and keys can rotate without rewriting every row at once;
- the field a secret belongs to (`unit.password`, `unit.guest_passphrase` …) is bound in as
  associated data: a token copied into another field does not decrypt.

The key comes from the daemon's settings: `FLEETD_SECRET_KEY` (base64 of 32 bytes) or
`FLEETD_SECRET_KEY_FILE` (a file holding that text, made by `fleetd keygen FILE`). A missing,
malformed or wrong key raises `SecretKeyError` with a message that says what to do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from inventory.errors import SecretKeyError
from inventory.redact import Redactor

KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_VERSION = "v1"  # noqa: S105 - the token format, not a secret
ENV_KEY = "FLEETD_SECRET_KEY"
ENV_KEY_FILE = "FLEETD_SECRET_KEY_FILE"
_HOW = (
    f"set {ENV_KEY} (base64 of 32 random bytes) or {ENV_KEY_FILE} "
    "(a key file made by `fleetd keygen FILE`)"
)


def key_id(key: bytes) -> str:
    """The key's public name: 8 hex digits of a hash, never enough to recover the key."""
    return hashlib.sha256(b"fleetd key id\x00" + key).hexdigest()[:8]


class SecretBox:
    """Encrypts with the current key; decrypts with the current key or any older one."""

    def __init__(
        self, key: bytes, *, old_keys: Iterable[bytes] = (), redactor: Redactor | None = None
    ) -> None:
        for k in (key, *old_keys):
            if len(k) != KEY_BYTES:
                raise SecretKeyError(f"a secret key is {KEY_BYTES} bytes, not {len(k)}")
        self.kid = key_id(key)
        self._current = AESGCM(key)
        self._keys = {key_id(k): AESGCM(k) for k in old_keys}
        self._keys[self.kid] = self._current
        self._redactor = redactor

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def __repr__(self) -> str:
        return f"SecretBox(kid={self.kid!r})"

    def encrypt(self, plaintext: str, *, purpose: str) -> str:
        self._remember(plaintext)
        return self._seal(plaintext, purpose)

    def encrypt_values(self, values: Mapping[str, str], *, purpose: str) -> str:
        """One token for several secrets (a JSON object). Each value is remembered for
        redaction, not the document: its text is not what a log line would show."""
        for value in values.values():
            self._remember(value)
        return self._seal(json.dumps(dict(values), sort_keys=True), purpose)

    def _seal(self, plaintext: str, purpose: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, plaintext.encode("utf-8"), purpose.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{TOKEN_VERSION}:{self.kid}:{body}"

    def decrypt(self, token: str, *, purpose: str) -> str:
        text = self._open(token, purpose)
        self._remember(text)
        return text

    def decrypt_values(self, token: str, *, purpose: str) -> dict[str, str]:
        """The secrets of an `encrypt_values` token; each value is remembered for redaction."""
        values = json.loads(self._open(token, purpose))
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise SecretKeyError(f"a stored secret ({purpose}) is not a set of named values")
        for value in values.values():
            self._remember(value)
        return values

    def _open(self, token: str, purpose: str) -> str:
        version, kid, body = _split(token)
        if version != TOKEN_VERSION:
            raise SecretKeyError(f"a stored secret ({purpose}) has unknown format {version!r}")
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretKeyError(
                f"a stored secret ({purpose}) was encrypted with key {kid}, but the key given "
                f"is {self.kid}: give fleetd the key this database was set up with ({_HOW})"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretKeyError(
                f"a stored secret ({purpose}) does not decrypt with key {kid}: "
                "the key file was changed or the stored value is damaged"
            ) from None
        return plaintext.decode("utf-8")

    def matches(self, token: str | None, plaintext: str, *, purpose: str) -> bool:
        """Whether `token` holds `plaintext` (a fresh encryption never equals the old token)."""
        return token is not None and self.decrypt(token, purpose=purpose) == plaintext

    def _remember(self, plaintext: str) -> None:
        if self._redactor is not None:
            self._redactor.add_secret(plaintext)


def token_kid(token: str) -> str:
    return _split(token)[1]


def _split(token: str) -> tuple[str, str, str]:
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise SecretKeyError("a stored secret is not a fleetd secret token (v1:<kid>:…)")
    return parts[0], parts[1], parts[2]


def parse_key(text: str, *, source: str) -> bytes:
    """A key as written in the environment or a key file: base64 of exactly 32 bytes."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(
            f"{source} is not base64: a key is base64 of {KEY_BYTES} random bytes; "
            "make one with `fleetd keygen FILE`"
        ) from None
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"{source} holds {len(key)} bytes, a key is {KEY_BYTES}; "
            "make one with `fleetd keygen FILE`"
        )
    return key


def load_secret_box(
    key: str | None, key_file: Path | None, *, redactor: Redactor | None = None
) -> SecretBox:
    """The box for the key given as text (`FLEETD_SECRET_KEY`) or as a file path
    (`FLEETD_SECRET_KEY_FILE`): exactly one of the two."""
    if key and key_file:
        raise SecretKeyError(f"both {ENV_KEY} and {ENV_KEY_FILE} are set: set only one")
    if key:
        return SecretBox(parse_key(key, source=ENV_KEY), redactor=redactor)
    if key_file:
        try:
            text = key_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SecretKeyError(
                f"cannot read the key file {key_file} ({reason}): point {ENV_KEY_FILE} at the "
                "key file this database was set up with (a new database: `fleetd keygen FILE`)"
            ) from None
        return SecretBox(parse_key(text, source=f"key file {key_file}"), redactor=redactor)
    raise SecretKeyError(f"no secret key: {_HOW}")


def generate_key_file(path: Path) -> str:
    """Write a new random key to `path` (mode 0600, never over an existing file); returns
    the key id."""
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretKeyError(
            f"{path} exists: keygen never overwrites a key (the secrets encrypted with it "
            "would be lost); choose another file name"
        ) from None
    except OSError as exc:
        raise SecretKeyError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        os.fchmod(fh.fileno(), stat.S_IRUSR | stat.S_IWUSR)
        fh.write(base64.b64encode(key).decode() + "\n")
    return key_id(key)
