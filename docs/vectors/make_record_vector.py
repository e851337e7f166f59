"""Regenerate docs/vectors/record.json: a signed identity record and a revocation.

    .venv/bin/python docs/vectors/make_record_vector.py

Every input is fixed (seeds, salt, destination, times), so every public key, the
commitment, the record bodies and the Ed25519 signatures come out the same on
each run. ML-DSA-65 signing in ``cryptography`` is hedged (randomised), so the
ML-DSA signatures differ from run to run; the vector stores the ones of the run
that wrote it, and tests/unit/test_record_vectors.py verifies them rather than
re-signing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from aegis_hidden.crypto import xwing
from aegis_hidden.identity import I2PBinding, IdentityRecord, RecordKind, sign_record
from aegis_hidden.identity._record import DOMAIN, ROTATION_DOMAIN, rotation_message

OUT = Path(__file__).with_name("record.json")

INPUTS = {
    "master_seed": bytes(range(32)),
    "xwing_seed": bytes(range(32, 64)),
    "mldsa_seed_previous": bytes(range(64, 96)),
    "mldsa_seed": bytes(range(96, 128)),
    "i2p_salt": bytes(range(128, 160)),
    # a 391-byte destination: 256-byte encryption key, 128-byte signing key field
    # (96 zero bytes of padding + a 32-byte Ed25519 key), key certificate type 5,
    # length 4, signing type 7 (Ed25519), crypto type 0
    "i2p_destination_raw": bytes(range(256)) + bytes(96) + bytes([0x11]) * 32
    + bytes([5, 0, 4, 0, 7, 0, 0]),
}
ROTATION_SEQUENCE = 6
SEQUENCE = 7
CREATED = 1_800_000_000
EXPIRES = CREATED + 30 * 24 * 3600
REVOCATION_SEQUENCE = 8
REVOCATION_CREATED = CREATED + 3600
REASON = "key compromised \u2014 moved to a new identity"


def i2p_base64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw, altchars=b"-~").decode("ascii")


def build() -> dict[str, object]:
    master = Ed25519PrivateKey.from_private_bytes(INPUTS["master_seed"])
    ed_pub = master.public_key().public_bytes_raw()
    _, xwing_pub = xwing.generate_keypair_derand(INPUTS["xwing_seed"])
    previous = MLDSA65PrivateKey.from_seed_bytes(INPUTS["mldsa_seed_previous"])
    mldsa = MLDSA65PrivateKey.from_seed_bytes(INPUTS["mldsa_seed"])
    prev_pub = previous.public_key().public_bytes_raw()
    mldsa_pub = mldsa.public_key().public_bytes_raw()
    destination = i2p_base64(INPUTS["i2p_destination_raw"])
    binding = I2PBinding(destination, INPUTS["i2p_salt"])

    rot_msg = rotation_message(ed_pub, mldsa_pub, ROTATION_SEQUENCE)
    rot_sig = previous.sign(rot_msg)
    proof = prev_pub + ROTATION_SEQUENCE.to_bytes(8, "big") + rot_sig

    rec = sign_record(IdentityRecord(
        kind=RecordKind.IDENTITY, ed25519_public=ed_pub, sequence=SEQUENCE, created=CREATED,
        expires=EXPIRES, xwing_public=xwing_pub, mldsa_public=mldsa_pub,
        i2p_commitment=binding.commitment(), rotation_proof=proof), master, mldsa)
    rev = sign_record(IdentityRecord(
        kind=RecordKind.REVOCATION, ed25519_public=ed_pub, sequence=REVOCATION_SEQUENCE,
        created=REVOCATION_CREATED, expires=0, mldsa_public=mldsa_pub, reason=REASON,
        rotation_proof=proof), master, mldsa)

    def record_part(r: IdentityRecord) -> dict[str, object]:
        return {
            "kind": int(r.kind),
            "sequence": r.sequence,
            "created": r.created,
            "expires": r.expires,
            "reason": r.reason,
            "body": r.body().hex(),
            "signed_message": r.signed_message().hex(),
            "ed25519_signature": r.signature.hex(),
            "mldsa65_signature": r.mldsa_signature.hex(),
            "record": r.to_bytes().hex(),
        }

    return {
        "description": "aegis-hidden identity record v1 test vector (docs/identity.md). "
                       "All integers big-endian; all byte strings hex. ML-DSA-65 signatures "
                       "are hedged: verify them, do not expect to reproduce them.",
        "generator": "docs/vectors/make_record_vector.py",
        "domains": {
            "record": DOMAIN.hex(),
            "mldsa_rotation": ROTATION_DOMAIN.hex(),
            "i2p_binding": b"aegis-hidden i2p binding\x00".hex(),
        },
        "inputs": {
            **{k: v.hex() for k, v in INPUTS.items()},
            "rotation_sequence": ROTATION_SEQUENCE,
        },
        "derived": {
            "ed25519_public": ed_pub.hex(),
            "onion": rec.onion,
            "xwing_public": xwing_pub.hex(),
            "mldsa65_public_previous": prev_pub.hex(),
            "mldsa65_public": mldsa_pub.hex(),
            "i2p_destination": destination,
            "i2p_b32": binding.b32,
            "i2p_binding": binding.to_bytes().hex(),
            "i2p_commitment": binding.commitment().hex(),
        },
        "rotation_proof": {
            "message": rot_msg.hex(),
            "signature": rot_sig.hex(),
            "proof": proof.hex(),
        },
        "identity_record": record_part(rec),
        "revocation": record_part(rev),
    }


def main() -> int:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
