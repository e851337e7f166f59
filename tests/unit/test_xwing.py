"""X-Wing against the draft-10 appendix vectors, plus properties and length checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.crypto import xwing

VECTORS = Path(__file__).parent / "data" / "xwing_draft10_vectors.txt"


def _load_vectors() -> list[dict[str, bytes]]:
    """Parse the draft's appendix layout: ``name  hex`` or ``name`` + indented hex lines."""
    vectors: list[dict[str, str]] = []
    key = ""
    for line in VECTORS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(" "):
            vectors[-1][key] += line.strip()
            continue
        key, *rest = line.split()
        if key == "seed":
            vectors.append({})
        vectors[-1][key] = "".join(rest)
    return [{k: bytes.fromhex(v) for k, v in vec.items()} for vec in vectors]


VECS = _load_vectors()


def test_vector_file_is_complete() -> None:
    assert len(VECS) == 3
    for v in VECS:
        assert {k: len(x) for k, x in v.items()} == {
            "seed": 32, "sk": 32, "pk": 1216, "eseed": 64, "ct": 1120, "ss": 32}


@pytest.mark.parametrize("vec", VECS, ids=lambda v: v["seed"][:4].hex())
def test_keygen_matches_draft10(vec: dict[str, bytes]) -> None:
    sk, pk = xwing.generate_keypair_derand(vec["seed"])
    assert sk == vec["sk"]
    assert pk == vec["pk"]
    assert xwing.public_key_from_secret(vec["sk"]) == vec["pk"]


@pytest.mark.parametrize("vec", VECS, ids=lambda v: v["seed"][:4].hex())
def test_decapsulation_matches_draft10(vec: dict[str, bytes]) -> None:
    assert xwing.decapsulate(vec["ct"], vec["sk"]) == vec["ss"]


@pytest.mark.parametrize("vec", VECS, ids=lambda v: v["seed"][:4].hex())
def test_derandomized_encapsulation_matches_draft10(vec: dict[str, bytes]) -> None:
    ss, ct = xwing.encapsulate_derand(vec["pk"], vec["eseed"])
    assert ct == vec["ct"]
    assert ss == vec["ss"]


def test_tampered_ciphertext_gives_another_secret() -> None:
    vec = VECS[0]
    for pos in (0, 500, 1087, 1088, 1119):  # ML-KEM part (implicit rejection) and X25519 part
        ct = bytearray(vec["ct"])
        ct[pos] ^= 0x01
        assert xwing.decapsulate(bytes(ct), vec["sk"]) != vec["ss"]


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_random_seeds_round_trip(seed: bytes) -> None:
    sk, pk = xwing.generate_keypair_derand(seed)
    assert len(pk) == xwing.PUBLIC_KEY_SIZE
    ss, ct = xwing.encapsulate(pk)
    assert len(ct) == xwing.CIPHERTEXT_SIZE
    assert len(ss) == xwing.SHARED_SECRET_SIZE
    assert xwing.decapsulate(ct, sk) == ss


@settings(max_examples=10, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), eseed=st.binary(min_size=64, max_size=64))
def test_derand_and_production_paths_agree(seed: bytes, eseed: bytes) -> None:
    sk, pk = xwing.generate_keypair_derand(seed)
    ss, ct = xwing.encapsulate_derand(pk, eseed)
    assert xwing.decapsulate(ct, sk) == ss


def test_fresh_keypairs_differ() -> None:
    (sk1, pk1), (sk2, pk2) = xwing.generate_keypair(), xwing.generate_keypair()
    assert sk1 != sk2 and pk1 != pk2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: xwing.generate_keypair_derand(b"\x00" * 31), "seed must be 32 bytes, got 31"),
        (lambda: xwing.encapsulate(b"\x00" * 1215), "public key must be 1216 bytes, got 1215"),
        (lambda: xwing.decapsulate(b"\x00" * 1119, b"\x00" * 32),
         "ciphertext must be 1120 bytes, got 1119"),
        (lambda: xwing.decapsulate(b"\x00" * 1120, b"\x00" * 33),
         "secret key must be 32 bytes, got 33"),
        (lambda: xwing.encapsulate_derand(VECS[0]["pk"], b"\x00" * 63),
         "encapsulation seed must be 64 bytes, got 63"),
        (lambda: xwing.encapsulate("x" * 1216), "public key must be bytes, got str"),  # type: ignore[arg-type]
    ],
)
def test_lengths_and_types_are_checked(call: object, message: str) -> None:
    with pytest.raises(xwing.XWingError, match=message):
        call()  # type: ignore[operator]


def test_unreduced_mlkem_public_key_is_refused() -> None:
    # FIPS 203 §7.2 encapsulation key check: coefficients must be < q.
    bad = b"\xff" * 1184 + VECS[0]["pk"][1184:]
    with pytest.raises(xwing.XWingError, match="ML-KEM-768 part"):
        xwing.encapsulate(bad)


def test_low_order_x25519_ciphertext_is_refused() -> None:
    vec = VECS[0]
    ct = vec["ct"][:1088] + b"\x00" * 32  # the all-zero point gives an all-zero X25519 secret
    with pytest.raises(xwing.XWingError, match="X25519"):
        xwing.decapsulate(ct, vec["sk"])
