"""Keys of the seed spec's configuration that mean something else here.

Used by ``config check`` (the hint on an unknown key) and ``config migrate``
(the comment on a dropped line).
"""

from __future__ import annotations

SEED_KEY_HINTS: dict[str, str] = {
    "security.certificate_file": (
        "this node has no TLS certificate: peers authenticate it by its onion address, "
        "derived from its Ed25519 identity key (security.private_key_file, "
        "master_key.json, which aegis-hidden creates); remove the key"),
    "logging.level": "the log level is the top-level key log_level; move it there",
    "logging.file": (
        "the node's log file is twistd's --logfile option (rotated by logging.max_bytes "
        "and logging.max_files); remove the key"),
}
