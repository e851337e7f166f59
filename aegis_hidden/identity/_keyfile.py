"""Secret-key files: JSON envelope, optionally sealed with a passphrase.

A file holds one or more named secret seeds. Without a passphrase the seeds are
stored in the clear (the file is 0600); with one, they are sealed with
ChaCha20-Poly1305 under a key from scrypt (n=2**15, r=8, p=1, 16-byte salt).
The envelope also carries a check value derived from the public key, so a
truncated, edited or mismatched file is reported as corrupted, never replaced.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .. import _json as strict_json
from ._files import atomic_write

FORMAT = "aegis-hidden-secret-keys"
VERSION = 1
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


class KeyFileError(Exception):
    """A key file that cannot be used: missing, corrupted, truncated, wrong passphrase."""


class PassphraseRequired(KeyFileError):
    """The key file is encrypted and no passphrase was given."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not open the key file (or its ciphertext was altered)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(path: Path, field: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: field {field!r} is missing or not a string (corrupted?)")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise KeyFileError(f"{path}: field {field!r} is not base64 (corrupted?)") from None


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def encode_key_file(
    secrets: dict[str, bytes], label: str, passphrase: str | None = None
) -> bytes:
    """Serialise named secrets; ``label`` (e.g. the onion address) is authenticated."""
    payload = json.dumps({k: _b64(v) for k, v in sorted(secrets.items())}).encode()
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "label": label}
    if passphrase is None:
        doc["cipher"] = "none"
        doc["secrets"] = _b64(payload)
    else:
        if not passphrase:
            raise KeyFileError("an empty passphrase would not protect anything")
        salt = os.urandom(16)
        nonce = os.urandom(12)
        key = _kdf(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        doc["cipher"] = "ChaCha20-Poly1305"
        doc["kdf"] = {"name": "scrypt", "salt": _b64(salt), "n": SCRYPT_N, "r": SCRYPT_R,
                      "p": SCRYPT_P}
        doc["nonce"] = _b64(nonce)
        doc["secrets"] = _b64(ChaCha20Poly1305(key).encrypt(nonce, payload, label.encode()))
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_key_file(
    path: Path, secrets: dict[str, bytes], label: str, passphrase: str | None = None
) -> None:
    atomic_write(path, encode_key_file(secrets, label, passphrase), mode=0o600)


def is_encrypted(path: Path) -> bool:
    """True when the key file at ``path`` is passphrase-sealed."""
    try:
        doc = strict_json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("cipher") not in (None, "none")


def read_key_file(path: Path, passphrase: str | None = None) -> tuple[str, dict[str, bytes]]:
    """(label, secrets) from a key file, or a :class:`KeyFileError` that says why not."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror}") from None
    try:
        doc = strict_json.loads(raw)
    except ValueError:
        raise KeyFileError(
            f"{path}: not a valid key file (truncated or corrupted; {len(raw)} bytes). "
            "It was left as it is: restore it from a backup"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyFileError(f"{path}: not an aegis-hidden key file")
    if doc.get("version") != VERSION:
        raise KeyFileError(f"{path}: key file version {doc.get('version')!r} is not supported")
    label = doc.get("label")
    if not isinstance(label, str):
        raise KeyFileError(f"{path}: field 'label' is missing (corrupted?)")
    sealed = _unb64(path, "secrets", doc.get("secrets"))
    cipher = doc.get("cipher")
    if cipher == "none":
        payload = sealed
    elif cipher == "ChaCha20-Poly1305":
        if passphrase is None:
            raise PassphraseRequired(
                f"{path}: the key file is encrypted; give its passphrase "
                "(--passphrase-file, or the AEGIS_HIDDEN_PASSPHRASE environment variable)"
            )
        kdf = doc.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise KeyFileError(f"{path}: unknown or missing key derivation (corrupted?)")
        params = [kdf.get(k) for k in ("n", "r", "p")]
        if not all(isinstance(v, int) and 0 < v <= 2**20 for v in params):
            raise KeyFileError(f"{path}: scrypt parameters out of range (corrupted?)")
        n, r, p = (int(v) for v in params)  # type: ignore[arg-type]
        if r * p > 64:
            raise KeyFileError(f"{path}: scrypt parameters out of range (corrupted?)")
        salt = _unb64(path, "kdf.salt", kdf.get("salt"))
        nonce = _unb64(path, "nonce", doc.get("nonce"))
        if len(nonce) != 12:
            raise KeyFileError(f"{path}: nonce has the wrong length (corrupted?)")
        try:
            key = _kdf(passphrase, salt, n, r, p)
        except ValueError as e:
            raise KeyFileError(f"{path}: bad scrypt parameters: {e}") from None
        try:
            payload = ChaCha20Poly1305(key).decrypt(nonce, sealed, label.encode())
        except InvalidTag:
            raise WrongPassphrase(
                f"{path}: wrong passphrase, or the encrypted key was altered"
            ) from None
    else:
        raise KeyFileError(f"{path}: unknown cipher {cipher!r}")
    try:
        secrets_doc = strict_json.loads(payload)
        if not isinstance(secrets_doc, dict):
            raise ValueError("not an object")
        secrets = {str(k): _unb64(path, f"secrets.{k}", v) for k, v in secrets_doc.items()}
    except ValueError:
        raise KeyFileError(f"{path}: secret payload is corrupted") from None
    return label, secrets
