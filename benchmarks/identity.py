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

from aegis_hidden.crypto import xwing
from aegis_hidden.identity import (
    IdentityRecord,
    RecordKind,
    onion_address_from_public_key,
    parse_record,
    public_key_from_onion_address,
    sign_record,
    verify_record,
)
from aegis_hidden.identity._record import DOMAIN


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

    def record() -> IdentityRecord:
        return IdentityRecord(
            kind=RecordKind.IDENTITY, ed25519_public=pub, sequence=1, created=now,
            expires=now + 3600, xwing_public=xpk,
            mldsa_public=mldsa.public_key().public_bytes_raw())

    # Every record is hybrid (Ed25519 + ML-DSA-65, both mandatory): the figures
    # compare a full check with parsing alone and with its Ed25519 half alone.
    signed = sign_record(record(), master, mldsa)
    data = signed.to_bytes()
    ed_public = master.public_key()
    ed_input = DOMAIN + signed.body()
    results = {
        "onion derive": rate(lambda: onion_address_from_public_key(pub)),
        "onion parse": rate(lambda: public_key_from_onion_address(onion)),
        "sign record (hybrid)": rate(lambda: sign_record(record(), master, mldsa)),
        "parse record": rate(lambda: parse_record(data)),
        "Ed25519 half of a check": rate(lambda: ed_public.verify(signed.signature, ed_input)),
        "verify record (hybrid)": rate(lambda: verify_record(data, onion, now)),
    }
    for name, ops in results.items():
        print(f"{name:26s} {ops:12,.0f} /s")
    print(f"record size: {len(data)} bytes")
    ratio = results["verify record (hybrid)"] / results["Ed25519 half of a check"]
    print(f"hybrid / Ed25519-only verification rate: {ratio:.2f}")


if __name__ == "__main__":
    main()
