"""Regenerate docs/vectors/seal.json: one message sealed to an X-Wing key.

    .venv/bin/python docs/vectors/make_seal_vector.py

Every input is fixed (the recipient's seed, the encapsulation seed, info, aad,
plaintext), so the envelope comes out the same on each run (the encapsulation
is derandomised with the test extra ``kyber-py``). tests/unit/test_seal.py
checks that the code opens the stored envelope and seals the same bytes again.
"""

from __future__ import annotations

import json
from pathlib import Path

from aegis_hidden.crypto import seal_derand, xwing

OUT = Path(__file__).with_name("seal.json")

INPUTS = {
    "recipient_seed": bytes(range(32)),
    "eseed": bytes(range(64, 128)),
    "info": b"aegis-hidden mailbox v1\x00" + b"example" + bytes(32),
    "aad": b"",
    "plaintext": b"a message for a peer that is offline",
}


def build() -> dict[str, object]:
    _, public = xwing.generate_keypair_derand(INPUTS["recipient_seed"])
    out: dict[str, object] = {k: v.hex() for k, v in INPUTS.items()}
    out["recipient_public"] = public.hex()
    out["envelopes"] = {
        aead: seal_derand(public, INPUTS["plaintext"], INPUTS["eseed"], info=INPUTS["info"],
                          aad=INPUTS["aad"], aead=aead).hex()
        for aead in ("AES-256-GCM", "ChaCha20-Poly1305")
    }
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
