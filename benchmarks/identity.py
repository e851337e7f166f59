"""Identity costs, measured in one run: `python benchmarks/identity.py`.

Prints operations per second for onion address derivation and parsing, record
signing and verification with Ed25519 only and hybrid (Ed25519 + ML-DSA-65), and
the ratio of hybrid to Ed25519-only verification (what the ML-DSA half costs a
peer that checks a record).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from aegis_hidden.identity import (
    IdentityRecord,
    RecordKind,
    onion_address_from_public_key,
    public_key_from_onion_address,
    sign_record,
    verify_record,
)
from aegis_hidden.session import xwing


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        n += 20
    return n / elapsed


def main() -> None:
    master = Ed25519PrivateKey.generate()
    mldsa = MLDSA65PrivateKey.from_seed_bytes(os.urandom(32))
    pub = master.public_key().public_bytes_raw()
    onion = onion_address_from_public_key(pub)
    _, xpk = xwing.generate_keypair()
    now = int(time.time())

    def record(hybrid: bool) -> IdentityRecord:
        return IdentityRecord(
            kind=RecordKind.IDENTITY, ed25519_public=pub, sequence=1, created=now,
            expires=now + 3600, xwing_public=xpk,
            mldsa_public=mldsa.public_key().public_bytes_raw() if hybrid else b"")

    plain = sign_record(record(False), master).to_bytes()
    hybrid = sign_record(record(True), master, mldsa).to_bytes()
    results = {
        "onion derive": rate(lambda: onion_address_from_public_key(pub)),
        "onion parse": rate(lambda: public_key_from_onion_address(onion)),
        "sign record (Ed25519)": rate(lambda: sign_record(record(False), master)),
        "sign record (hybrid)": rate(lambda: sign_record(record(True), master, mldsa)),
        "verify record (Ed25519)": rate(lambda: verify_record(plain, onion, now)),
        "verify record (hybrid)": rate(lambda: verify_record(hybrid, onion, now)),
    }
    for name, ops in results.items():
        print(f"{name:26s} {ops:12,.0f} /s")
    print(f"record size: Ed25519 {len(plain)} bytes, hybrid {len(hybrid)} bytes")
    ratio = results["verify record (hybrid)"] / results["verify record (Ed25519)"]
    print(f"hybrid / Ed25519-only verification rate: {ratio:.2f}")


if __name__ == "__main__":
    main()
