"""The code against the published vectors, docs/vectors/record.json (docs/identity.md).

The body is rebuilt byte for byte from the fixed inputs by hand, following the
specification (not the code's encoder), and compared with the vector and with
the code; the stored signatures (ML-DSA-65 is hedged, so they cannot be
reproduced) are verified with the public keys derived from the seeds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

from aegis_hidden.crypto import xwing
from aegis_hidden.identity import (
    I2PBinding,
    RecordCache,
    RecordKind,
    check_mldsa_change,
    parse_record,
    verify_binding,
    verify_record,
)

VECTOR = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "record.json"


@pytest.fixture(scope="module")
def v() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTOR.read_text())
    return doc


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def _field(blob: bytes) -> bytes:
    return struct.pack(">H", len(blob)) + blob


def _spec_body(kind: int, ed_pub: bytes, part: dict[str, Any], fields: list[bytes]) -> bytes:
    """docs/identity.md, "Byte layout", written out by hand."""
    times = b"".join(int(part[k]).to_bytes(8, "big") for k in ("sequence", "created", "expires"))
    header = b"AEGISREC" + bytes([1, kind]) + ed_pub + times
    return header + b"".join(_field(f) for f in fields)


def test_domains(v: dict[str, Any]) -> None:
    assert h(v["domains"]["record"]) == b"aegis-hidden identity record v1\x00"
    assert h(v["domains"]["mldsa_rotation"]) == b"aegis-hidden mldsa rotation\x00"
    assert h(v["domains"]["i2p_binding"]) == b"aegis-hidden i2p binding\x00"


def test_derived_keys_and_binding(v: dict[str, Any]) -> None:
    i, d = v["inputs"], v["derived"]
    master = Ed25519PrivateKey.from_private_bytes(h(i["master_seed"]))
    assert master.public_key().public_bytes_raw().hex() == d["ed25519_public"]
    assert xwing.generate_keypair_derand(h(i["xwing_seed"]))[1].hex() == d["xwing_public"]
    for seed, pub in (("mldsa_seed_previous", "mldsa65_public_previous"),
                      ("mldsa_seed", "mldsa65_public")):
        key = MLDSA65PrivateKey.from_seed_bytes(h(i[seed]))
        assert key.public_key().public_bytes_raw().hex() == d[pub]
    raw_dest = h(i["i2p_destination_raw"])
    assert d["i2p_destination"] == base64.b64encode(raw_dest, altchars=b"-~").decode()
    assert d["i2p_b32"] == base64.b32encode(hashlib.sha256(raw_dest).digest()).decode(
    ).lower().rstrip("=") + ".b32.i2p"
    assert h(d["i2p_binding"]) == h(i["i2p_salt"]) + d["i2p_destination"].encode("ascii")
    assert h(d["i2p_commitment"]) == hashlib.sha256(
        h(v["domains"]["i2p_binding"]) + h(d["i2p_binding"])).digest()
    binding = I2PBinding.parse(h(d["i2p_binding"]))
    assert binding.commitment().hex() == d["i2p_commitment"] and binding.b32 == d["i2p_b32"]


def test_rotation_proof(v: dict[str, Any]) -> None:
    d, r = v["derived"], v["rotation_proof"]
    message = (h(v["domains"]["mldsa_rotation"]) + h(d["ed25519_public"])
               + h(d["mldsa65_public"]) + v["inputs"]["rotation_sequence"].to_bytes(8, "big"))
    assert h(r["message"]) == message
    MLDSA65PublicKey.from_public_bytes(h(d["mldsa65_public_previous"])).verify(
        h(r["signature"]), message)
    assert h(r["proof"]) == (h(d["mldsa65_public_previous"])
                             + v["inputs"]["rotation_sequence"].to_bytes(8, "big")
                             + h(r["signature"]))


@pytest.mark.parametrize("which", ["identity_record", "revocation"])
def test_record_bytes_signatures_and_code(v: dict[str, Any], which: str) -> None:
    d, part = v["derived"], v[which]
    ed_pub = h(d["ed25519_public"])
    if which == "identity_record":
        fields = [h(d["xwing_public"]), h(d["mldsa65_public"]), h(d["i2p_commitment"]), b"",
                  h(v["rotation_proof"]["proof"])]
    else:
        fields = [b"", h(d["mldsa65_public"]), b"", part["reason"].encode("utf-8"),
                  h(v["rotation_proof"]["proof"])]
    body = _spec_body(part["kind"], ed_pub, part, fields)
    assert body.hex() == part["body"]
    message = h(v["domains"]["record"]) + body
    assert message.hex() == part["signed_message"]
    # Ed25519 is deterministic: re-signing gives the stored signature
    master = Ed25519PrivateKey.from_private_bytes(h(v["inputs"]["master_seed"]))
    assert master.sign(message).hex() == part["ed25519_signature"]
    Ed25519PublicKey.from_public_bytes(ed_pub).verify(h(part["ed25519_signature"]), message)
    # ML-DSA-65 pure, empty context: verify the stored (hedged) signature
    mldsa_sig = h(part["mldsa65_signature"])
    assert len(mldsa_sig) == 3309
    MLDSA65PublicKey.from_public_bytes(h(d["mldsa65_public"])).verify(mldsa_sig, message)
    wire = body + h(part["ed25519_signature"]) + _field(mldsa_sig)
    assert wire.hex() == part["record"]

    # the code agrees: parses, re-encodes identically, verifies against the onion
    rec = parse_record(wire)
    assert rec.body() == body and rec.to_bytes() == wire
    assert rec.onion == d["onion"]
    checked = verify_record(wire, d["onion"], now=part["created"] + 1)
    assert checked.kind is RecordKind(part["kind"])
    check_mldsa_change(h(d["mldsa65_public_previous"]), checked)
    if which == "identity_record":
        assert verify_binding(checked, I2PBinding.parse(h(d["i2p_binding"]))) == d["i2p_b32"]


def test_revocation_vector_revokes_the_record(v: dict[str, Any]) -> None:
    onion = v["derived"]["onion"]
    cache = RecordCache()
    cache.accept(h(v["identity_record"]["record"]), onion, now=v["identity_record"]["created"])
    cache.accept(h(v["revocation"]["record"]), onion, now=v["revocation"]["created"])
    assert cache.is_revoked(onion)
