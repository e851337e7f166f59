"""Regenerate docs/vectors/handshake.json: one full session handshake, byte for byte.

    .venv/bin/python docs/vectors/make_handshake_vector.py

Everything is fixed: identity seeds, record times, the initiator's ephemeral
X-Wing seed and nonce, the responder's nonce, the X-Wing encapsulation seed
(``xwing.encapsulate_derand``) and the clock. ML-DSA-65 signing in
``cryptography`` is hedged (randomised), so the two identity records (whose
ML-DSA signatures are randomised) and the two ML-DSA-65 transcript signatures
are taken from this run and stored; everything else follows from them
deterministically. tests/unit/test_vectors.py replays the stored values into
the real :class:`~aegis_hidden.session.Session` (its ML-DSA signer returns the
stored signature, after checking it is asked to sign exactly the stored
message) and checks every flight, message, key and sealed cell byte for byte;
it also recomputes the transcript and the key schedule from docs/protocol.md
alone and checks them against this file.

Regenerating changes the records and ML-DSA signatures (hence every later
transcript hash, key and cell): commit the new file with the code change that
needed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from aegis_hidden.crypto import xwing
from aegis_hidden.identity import IdentityRecord, NodeIdentity, RecordKind, sign_record
from aegis_hidden.session import IdentityKeys, Session, SessionParams
from aegis_hidden.wire import decode_clear

OUT = Path(__file__).with_name("handshake.json")

NOW = 1_800_000_000
CELL_SIZE = 996
SEEDS = {
    "initiator": {"master_seed": bytes([0x11]) * 32, "xwing_seed": bytes([0x12]) * 32,
                  "mldsa_seed": bytes([0x13]) * 32},
    "responder": {"master_seed": bytes([0x21]) * 32, "xwing_seed": bytes([0x22]) * 32,
                  "mldsa_seed": bytes([0x23]) * 32},
}
INITIATOR_RANDOM = [bytes(range(0x40, 0x60)), bytes(range(0x60, 0x80))]  # ephemeral seed, nonce
RESPONDER_RANDOM = [bytes(range(0x80, 0xA0))]                          # ServerHello nonce
ENCAPSULATION_SEED = bytes(range(0xA0, 0xE0))                          # 64 bytes
I2R_MESSAGES = [b"hello", b"again", b"after the rekey"]
R2I_MESSAGES = [b"world"]
I_REKEY_CELLS = 2  # the initiator rekeys before its third cell


def make_record(seeds: dict[str, bytes]) -> IdentityRecord:
    master = Ed25519PrivateKey.from_private_bytes(seeds["master_seed"])
    mldsa = MLDSA65PrivateKey.from_seed_bytes(seeds["mldsa_seed"])
    _, xwing_public = xwing.generate_keypair_derand(seeds["xwing_seed"])
    return sign_record(IdentityRecord(
        kind=RecordKind.IDENTITY, ed25519_public=master.public_key().public_bytes_raw(),
        sequence=1, created=NOW - 3600, expires=NOW - 3600 + 30 * 24 * 3600,
        xwing_public=xwing_public, mldsa_public=mldsa.public_key().public_bytes_raw()),
        master, mldsa)


class RecordingSigner:
    """Real ML-DSA-65 signing, remembering what it signed."""

    def __init__(self, seed: bytes) -> None:
        self._key = MLDSA65PrivateKey.from_seed_bytes(seed)
        self.signed: list[tuple[bytes, bytes]] = []

    def sign(self, data: bytes) -> bytes:
        sig = self._key.sign(data)
        self.signed.append((data, sig))
        return sig


def fixed_random(values: list[bytes]) -> Callable[[int], bytes]:
    queue = list(values)

    def rand(n: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == n, (len(value), n)
        return value

    return rand


def run(records: dict[str, IdentityRecord], signers: dict[str, object]
        ) -> tuple[Session, Session, list[bytes], dict[str, list[bytes]]]:
    """Run the handshake and the application messages with the fixed inputs."""
    idents = {}
    for role in ("initiator", "responder"):
        s = SEEDS[role]
        xsecret, _ = xwing.generate_keypair_derand(s["xwing_seed"])
        idents[role] = NodeIdentity(Path("/nonexistent"), s["master_seed"], xsecret,
                                    s["mldsa_seed"], records[role])

    def keys(role: str) -> IdentityKeys:
        return IdentityKeys(Ed25519PrivateKey.from_private_bytes(SEEDS[role]["master_seed"]),
                            signers[role])  # type: ignore[arg-type]

    clock = lambda: float(NOW)  # noqa: E731
    i = Session(idents["initiator"], SessionParams(cell_size=CELL_SIZE, rekey_cells=I_REKEY_CELLS),
                initiator=True, clock=clock, peer_address=idents["responder"].onion,
                random=fixed_random(INITIATOR_RANDOM), keys=keys("initiator"))
    r = Session(idents["responder"], SessionParams(cell_size=CELL_SIZE), initiator=False,
                clock=clock, random=fixed_random(RESPONDER_RANDOM),
                encapsulate=lambda pk: xwing.encapsulate_derand(pk, ENCAPSULATION_SEED),
                keys=keys("responder"))
    i.start()
    flights = []
    src, dst = i, r
    while True:
        data = src.data_to_send()
        if not data:
            break
        flights.append(data)
        dst.receive_data(data)
        src, dst = dst, src
    assert i.established and r.established, (i.close_reason, r.close_reason)
    app: dict[str, list[bytes]] = {"i2r": [], "r2i": []}
    for m in I2R_MESSAGES:
        i.send_message(m)
        app["i2r"].append(i.data_to_send())
    for m in R2I_MESSAGES:
        r.send_message(m)
        app["r2i"].append(r.data_to_send())
    return i, r, flights, app


# -- the key schedule, from docs/protocol.md §2.4 (independent of the session code) --

def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def th(*items: bytes) -> bytes:
    h = hashlib.sha256(b"aegis-hidden handshake\x00" + CELL_SIZE.to_bytes(2, "big"))
    for item in items:
        h.update(u32(len(item)) + item)
    return h.digest()


def expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def label(what: str) -> bytes:
    return f"aegis-hidden/1 {what}".encode("ascii")


def key_iv(secret: bytes, lab: bytes) -> tuple[bytes, bytes]:
    okm = expand(secret, lab + b" key+iv", 44)
    return okm[:32], okm[32:]


def open_cells(data: bytes, secret: bytes, lab: bytes, first: int = 0) -> list[bytes]:
    key, iv = key_iv(secret, lab)
    aead = AESGCM(key)
    out = []
    for k in range(0, len(data), CELL_SIZE):
        n = first + k // CELL_SIZE
        nonce = (int.from_bytes(iv, "big") ^ n).to_bytes(12, "big")
        out.append(aead.decrypt(nonce, data[k:k + CELL_SIZE], None))
    return out


def inner_message(plains: list[bytes]) -> bytes:
    out = b""
    for p in plains:
        ctype, length = p[0], int.from_bytes(p[2:4], "big")
        assert ctype == 6, ctype
        out += p[4:4 + length]
    return out


def clear_message(data: bytes) -> tuple[bytes, int]:
    """The clear cells at the start of ``data`` joined; also where they stop."""
    out, k = b"", 0
    while k < len(data) and data[k:k + 2] == b"AH":
        flags, piece = decode_clear(data[k:k + CELL_SIZE], CELL_SIZE)
        out += piece
        k += CELL_SIZE
        if not flags & 1:
            break
    return out, k


def build() -> dict[str, object]:
    records = {role: make_record(SEEDS[role]) for role in ("initiator", "responder")}
    signers = {role: RecordingSigner(SEEDS[role]["mldsa_seed"]) for role in records}
    i, r, flights, app = run(records, signers)  # type: ignore[arg-type]

    # Messages, recovered from the wire with the spec's key schedule.
    client_hello, _ = clear_message(flights[0])
    server_hello, stop = clear_message(flights[1])
    from aegis_hidden.wire import handshake_pb2

    ch = handshake_pb2.ClientHello()
    ch.ParseFromString(client_hello)
    sh = handshake_pb2.ServerHello()
    sh.ParseFromString(server_hello)
    eph_secret, eph_public = xwing.generate_keypair_derand(INITIATOR_RANDOM[0])
    assert eph_public == ch.ephemeral_public
    ss = xwing.decapsulate(sh.ciphertext, eph_secret)
    th_hello = th(client_hello, server_hello)
    hs = extract(th_hello, ss)
    k_r_hs, k_i_hs = expand(hs, label("r hs")), expand(hs, label("i hs"))
    server_auth = inner_message(open_cells(flights[1][stop:], k_r_hs, label("r hs")))
    client_auth = inner_message(open_cells(flights[2], k_i_hs, label("i hs")))
    th_final = th(client_hello, server_hello, server_auth, client_auth)
    master = extract(th_final, hs)
    k_i2r, k_r2i = expand(master, label("i2r traffic")), expand(master, label("r2i traffic"))
    confirm = expand(master, label("confirm"))
    finished = inner_message(open_cells(flights[3], k_r2i, label("r2i traffic")))

    sa = handshake_pb2.Auth()
    sa.ParseFromString(server_auth)
    ca = handshake_pb2.Auth()
    ca.ParseFromString(client_auth)
    r_signed = label("responder signature") + b"\x00" + th(client_hello, server_hello, sa.record,
                                                            sa.address.encode("ascii"))
    i_signed = label("initiator signature") + b"\x00" + th(client_hello, server_hello, server_auth,
                                                            ca.record, ca.address.encode("ascii"))
    assert signers["responder"].signed == [(r_signed, sa.mldsa_signature)]
    assert signers["initiator"].signed == [(i_signed, ca.mldsa_signature)]

    def direction(secret: bytes, lab: bytes) -> dict[str, str]:
        key, iv = key_iv(secret, lab)
        return {"secret": secret.hex(), "label": lab.decode(), "key": key.hex(), "iv": iv.hex()}

    i2r_next = expand(k_i2r, label("i2r traffic") + b" rekey")
    return {
        "description": "aegis-hidden session protocol v1: one handshake and the first sealed "
                       "cells (docs/protocol.md). All byte strings hex, all integers big-endian. "
                       "The records and the two ML-DSA-65 transcript signatures are hedged "
                       "(randomised) outputs stored from the generating run; everything else "
                       "follows deterministically from the inputs and them.",
        "generator": "docs/vectors/make_handshake_vector.py",
        "inputs": {
            "now": NOW,
            "cell_size": CELL_SIZE,
            "aead": "AES-256-GCM",
            "versions": [1],
            "initiator_rekey_cells": I_REKEY_CELLS,
            "initiator": {k: v.hex() for k, v in SEEDS["initiator"].items()},
            "responder": {k: v.hex() for k, v in SEEDS["responder"].items()},
            "initiator_random": [v.hex() for v in INITIATOR_RANDOM],
            "responder_random": [v.hex() for v in RESPONDER_RANDOM],
            "encapsulation_seed": ENCAPSULATION_SEED.hex(),
            "dialed_address": r.identity.onion,
            "i2r_messages": [m.hex() for m in I2R_MESSAGES],
            "r2i_messages": [m.hex() for m in R2I_MESSAGES],
        },
        "stored": {
            "initiator_record": records["initiator"].to_bytes().hex(),
            "responder_record": records["responder"].to_bytes().hex(),
            "responder_mldsa65_signature": sa.mldsa_signature.hex(),
            "initiator_mldsa65_signature": ca.mldsa_signature.hex(),
        },
        "addresses": {"initiator": i.identity.onion, "responder": r.identity.onion},
        "messages": {
            "client_hello": client_hello.hex(),
            "server_hello": server_hello.hex(),
            "server_auth": server_auth.hex(),
            "client_auth": client_auth.hex(),
            "finished": finished.hex(),
        },
        "xwing": {
            "ephemeral_secret": eph_secret.hex(),
            "ephemeral_public": eph_public.hex(),
            "ciphertext": sh.ciphertext.hex(),
            "shared_secret": ss.hex(),
        },
        "transcript": {
            "prologue": (b"aegis-hidden handshake\x00" + CELL_SIZE.to_bytes(2, "big")).hex(),
            "th_hello": th_hello.hex(),
            "responder_signed": r_signed.hex(),
            "responder_ed25519_signature": sa.ed25519_signature.hex(),
            "responder_mac": sa.mac.hex(),
            "initiator_signed": i_signed.hex(),
            "initiator_ed25519_signature": ca.ed25519_signature.hex(),
            "initiator_mac": ca.mac.hex(),
            "th_final": th_final.hex(),
        },
        "keys": {
            "hs": hs.hex(),
            "r_hs": direction(k_r_hs, label("r hs")),
            "i_hs": direction(k_i_hs, label("i hs")),
            "responder_finished": expand(hs, label("responder finished")).hex(),
            "initiator_finished": expand(hs, label("initiator finished")).hex(),
            "master": master.hex(),
            "i2r": direction(k_i2r, label("i2r traffic")),
            "r2i": direction(k_r2i, label("r2i traffic")),
            "i2r_after_rekey": direction(i2r_next, label("i2r traffic")),
            "confirm": confirm.hex(),
            "finished_mac": hmac.new(confirm, th_final, hashlib.sha256).hexdigest(),
        },
        "flights": [f.hex() for f in flights],
        "application_cells": {"i2r": [c.hex() for c in app["i2r"]],
                              "r2i": [c.hex() for c in app["r2i"]]},
    }


def main() -> int:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
