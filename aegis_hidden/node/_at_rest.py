"""What the node leaves on a disk and in a crash (docs/threat-model.md).

- :func:`disable_core_dumps`: ``RLIMIT_CORE`` 0 for the node process, so a crash
  never writes keys, the database key or message plaintext to a core file.
- :class:`PeerRedactingObserver`: the node log names peers only at debug level;
  above it every onion / ``.b32.i2p`` address but the node's own becomes
  ``peer-<8 hex>``, a hash salted per run (the same peer reads the same within
  one run, nothing links two runs or lets a reader confirm a guessed address).
- :func:`wipe`: the emergency wipe. Small secret files (the database key, the
  identity's key files, the I2P destination keys, the API token and API onion
  key) and the logs (the node's, tor's, i2pd's) are overwritten with random
  bytes, flushed, then deleted; the encrypted database is deleted (without its
  key it is noise); plain database backups are overwritten in full.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import resource
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from zope.interface import implementer

from .. import _json as strict_json
from ..identity import atomic_write
from ..peers import DB_FILE_NAME, key_file_path

_ADDRESS = re.compile(r"\b([a-z2-7]{56}\.onion|[a-z2-7]{52,56}\.b32\.i2p)\b", re.IGNORECASE)


def disable_core_dumps(allow: bool = False) -> bool:
    """Set ``RLIMIT_CORE`` to 0 (soft and hard) unless ``allow``; True when it was set."""
    if allow:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        return False
    return True


@implementer(ILogObserver)
class PeerRedactingObserver:
    """Forwards events to ``observer``, peers' addresses hashed above debug level."""

    def __init__(self, observer: ILogObserver, own: Iterable[str] = (), *,
                 salt: bytes | None = None) -> None:
        self._observer = observer
        self._own = {a.lower() for a in own if a}
        self._salt = salt if salt is not None else os.urandom(16)

    def _name(self, match: re.Match[str]) -> str:
        address = match.group(0).lower()
        if address in self._own:
            return match.group(0)
        digest = hashlib.blake2s(address.encode(), key=self._salt, digest_size=4).hexdigest()
        return f"peer-{digest}"

    def redact(self, text: str) -> str:
        return _ADDRESS.sub(self._name, text)

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        if level is None or level == LogLevel.debug:
            self._observer(event)
            return
        text = formatEvent(event)
        redacted = self.redact(text)
        if redacted == text and "log_failure" not in event:
            self._observer(event)
            return
        out = {k: v for k, v in event.items() if k.startswith("log_") and k != "log_format"}
        out["log_format"] = "{redacted}"
        out["redacted"] = redacted
        failure = event.get("log_failure")
        if failure is not None:  # the traceback goes as text, its addresses hashed too
            out.pop("log_failure")
            out["redacted"] = redacted + "\n" + self.redact(failure.getTraceback())
        self._observer(out)


# -- the emergency wipe --------------------------------------------------------------------

WIPE_CONFIRMATION = "wipe"
"""The API's confirmation field must be this word followed by the node's onion."""

LOG_PATTERNS = ("node.log*", "twistd.log*", "*.log", "*.log.[0-9]*",
                "tor/*.log", "i2pd/*.log", "i2pd/*.log.[0-9]*")
DURESS_FILE = "duress.json"
SECRET_NAMES = ("api_token", "api_onion_key", "api_client_keys.json", DURESS_FILE)
KEY_DIRS = ("i2p",)
"""Directories of the data dir that hold only secrets (the I2P destination keys)."""
TOR_STATE = ("tor/state", "tor/cached-microdescs", "tor/cached-microdescs.new",
             "tor/cached-microdesc-consensus", "tor/control_port")
"""Files of the node's own tor that show its guards and when it last ran."""


@dataclass
class WipeReport:
    overwritten: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"overwritten": self.overwritten, "deleted": self.deleted,
                "failed": self.failed}


def _overwrite(path: Path, report: WipeReport) -> None:
    """Random bytes over the whole file, flushed to the device, then unlink."""
    try:
        size = path.stat().st_size
        with open(path, "r+b", buffering=0) as f:
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 1 << 20))
                f.write(chunk)
                left -= len(chunk)
            os.fsync(f.fileno())
        report.overwritten.append(str(path))
    except OSError:
        report.failed.append(str(path))
    _delete(path, report)


def _delete(path: Path, report: WipeReport) -> None:
    try:
        path.unlink()
        report.deleted.append(str(path))
    except FileNotFoundError:
        pass
    except OSError:
        report.failed.append(str(path))


def wipe(data_dir: Path, identity_dir: Path, extra: Iterable[Path] = ()) -> WipeReport:
    """Destroy what would open the rest: keys first, then logs, then the database.

    Order matters if the wipe is cut short (power pulled): the database key and
    the identity keys go first, so whatever remains is ciphertext without its key.
    ``extra`` names more files to overwrite (a log outside the data dir).
    """
    data_dir, identity_dir = Path(data_dir), Path(identity_dir)
    report = WipeReport()
    db = data_dir / DB_FILE_NAME
    if key_file_path(db).exists():
        _overwrite(key_file_path(db), report)
    if identity_dir.is_dir():
        for path in sorted(identity_dir.rglob("*")):
            if path.is_file():
                _overwrite(path, report)
    for name in SECRET_NAMES:
        if (data_dir / name).is_file():
            _overwrite(data_dir / name, report)
    for name in KEY_DIRS:
        if (data_dir / name).is_dir():
            for path in sorted((data_dir / name).rglob("*")):
                if path.is_file():
                    _overwrite(path, report)
    for path in [*extra, *(p for pattern in LOG_PATTERNS for p in data_dir.glob(pattern))]:
        if path.is_file():
            _overwrite(path, report)
    for path in sorted(data_dir.glob(f"{DB_FILE_NAME}.plain-backup-*")):
        _overwrite(path, report)  # clear text: every byte
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            _delete(path, report)  # ciphertext whose key is gone
    # status.json and emergency.json (isolation, its reason as the operator typed it) name
    # nothing secret but tell of the node's last state: overwritten too.
    for name in ("status.json", "emergency.json", *TOR_STATE):
        if (data_dir / name).is_file():
            _overwrite(data_dir / name, report)
    return report


# -- the duress passphrase -------------------------------------------------------------------
# Only a salted scrypt hash is stored (DATA_DIR/duress.json, 0600); the node compares the
# passphrase it is given with it before opening anything, and wipes on a match.

_DURESS_N, _DURESS_R, _DURESS_P = 2**15, 8, 1


def _duress_hash(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * 1024 * 1024, dklen=32)


def set_duress_passphrase(data_dir: Path, passphrase: str) -> Path:
    """Store the duress passphrase's hash; it must not be empty."""
    if not passphrase:
        raise ValueError("an empty duress passphrase would wipe on an empty answer")
    salt = os.urandom(16)
    doc = {"format": "aegis-hidden-duress", "n": _DURESS_N, "r": _DURESS_R, "p": _DURESS_P,
           "salt": base64.b64encode(salt).decode(),
           "hash": base64.b64encode(_duress_hash(passphrase, salt, _DURESS_N, _DURESS_R,
                                                 _DURESS_P)).decode()}
    path = Path(data_dir) / DURESS_FILE
    atomic_write(path, json.dumps(doc).encode(), mode=0o600)
    return path


def is_duress_passphrase(data_dir: Path, passphrase: str | None) -> bool:
    """True when ``passphrase`` is the stored duress passphrase (False if none is set)."""
    path = Path(data_dir) / DURESS_FILE
    if passphrase is None or not path.is_file():
        return False
    try:
        doc = strict_json.loads(path.read_bytes())
        n, r, p = int(doc["n"]), int(doc["r"]), int(doc["p"])
        if not (0 < n <= 2**20 and 0 < r * p <= 64):
            return False
        salt = base64.b64decode(doc["salt"], validate=True)
        stored = base64.b64decode(doc["hash"], validate=True)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # a damaged duress file never wipes
    return hmac.compare_digest(_duress_hash(passphrase, salt, n, r, p), stored)
