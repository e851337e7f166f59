"""S/Kademlia's dynamic crypto puzzle (Baumgart & Mies 2007, §4.1), pure.

A place in the id space costs work: a contact is admitted to a routing table
(or asked in a lookup) only with a nonce X such that

    SHA-256("aegis-hidden dht puzzle v1\\0" | node id | u64 X)

starts with ``bits`` zero bits. The id stays SHA-256 of the onion key, so an
identity keeps its onion address whatever the difficulty; the nonce travels
with the contact (``DhtContact.nonce``, and ``sender_nonce`` on requests).
Checking costs one hash; solving costs 2^bits on average, for every id an
attacker wants to place (an eclipse needs ids ground next to a target *and*
a solved puzzle for each). ``benchmarks/dht_puzzle.py`` measures the seconds.
"""

from __future__ import annotations

import hashlib

DOMAIN = b"aegis-hidden dht puzzle v1\x00"
MAX_BITS = 32
#: nonces fit a signed 64-bit integer (SQLite's INTEGER)
MAX_NONCE = 2**63 - 1


def puzzle_digest(node_id: bytes, nonce: int) -> bytes:
    return hashlib.sha256(DOMAIN + node_id + nonce.to_bytes(8, "big")).digest()


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def check_puzzle(node_id: bytes, nonce: int, bits: int) -> bool:
    """Whether ``nonce`` solves ``node_id``'s puzzle at ``bits`` (always, at 0)."""
    if bits <= 0:
        return True
    if not 0 <= nonce <= MAX_NONCE:
        return False
    return leading_zero_bits(puzzle_digest(node_id, nonce)) >= bits


def solve_puzzle(node_id: bytes, bits: int, start: int = 0) -> int:
    """The first nonce from ``start`` that solves ``node_id``'s puzzle at ``bits``."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"puzzle difficulty is 0 to {MAX_BITS} bits")
    if bits == 0:
        return 0
    prefix = hashlib.sha256(DOMAIN + node_id)
    limit = 1 << (256 - bits)
    nonce = start
    while nonce <= MAX_NONCE:
        h = prefix.copy()
        h.update(nonce.to_bytes(8, "big"))
        if int.from_bytes(h.digest(), "big") < limit:
            return nonce
        nonce += 1
    raise ValueError("no nonce solves this puzzle")  # pragma: no cover - 2^63 tries
