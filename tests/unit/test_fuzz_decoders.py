"""Every decoder, fuzzed a bounded number of times with hypothesis (``make unit``).

The targets are the ones the long campaign runs (:mod:`fuzz.targets`, ``make
fuzz``): each feeds bytes to a decoder and lets only the decoder's documented
typed error through as "refused"; anything else escaping is a bug. Inputs are
arbitrary bytes and mutations of valid samples (so the deep checks are reached,
not only the first length test). Runs are derandomized: the same examples every
time. Known bugs are pinned below with their reproducer as strict xfails naming
the bug, so fixing it turns the test green (then delete the mark).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]

#: examples per target (the expensive ones verify signatures or run a handshake)
EXAMPLES = {"session": 40, "identity_records": 60, "control_messages": 60, "api_bodies": 150}
DEFAULT_EXAMPLES = 250

#: Bugs found by fuzzing, in files this test does not own: (bug, reproducer). The
#: nesting is far deeper than needed (about 500 levels for YAML, 1000 for JSON
#: crash a plain call) because hypothesis raises the recursion limit while it runs.
#: Every reproducer stays here as an explicit example once fixed (a regression
#: test); the bug text only matters while it still fails.
#: Crashes the first campaign found, fixed since; each stays as an explicit
#: example of its target so the bug cannot come back unseen.
REGRESSIONS: dict[str, tuple[str, bytes]] = {
    "tor_control": (
        "55 base32 characters and one '=' decoded to 34 bytes and raised IndexError, "
        "not OnionAddressError (tor client auth parse_auth_private)",
        b"a" * 55 + b"=:descriptor:x25519:B"),
    "config_yaml": (
        "deeply nested YAML raised RecursionError from PyYAML, not ConfigError",
        b"[" * 50_000),
    "key_files": (
        "a key file of deeply nested JSON raised RecursionError, not KeyFileError",
        b"[" * 50_000),
}


def _mutations(seeds: list[bytes], max_len: int) -> st.SearchStrategy[bytes]:
    """A valid sample with a few bytes replaced, inserted, deleted, or cut short."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        buf = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 3))
            pos = draw(st.integers(0, len(buf)))
            if op == 0 and buf:
                buf[min(pos, len(buf) - 1)] = draw(st.integers(0, 255))
            elif op == 1:
                buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif op == 2:
                del buf[pos:pos + draw(st.integers(1, 16))]
            else:
                del buf[pos:]
        return bytes(buf[:max_len])

    return build()


def _inputs(name: str) -> st.SearchStrategy[bytes]:
    target = TARGETS[name]
    seeds = target.seeds()
    return st.one_of(st.binary(max_size=600), st.sampled_from(seeds),
                     _mutations(seeds, target.max_len))


def _fuzz_test(name: str) -> Callable[[], None]:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES), deadline=None, derandomize=True,
              database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=_inputs(name))
    def test(data: bytes) -> None:
        target.run(data)

    if name in REGRESSIONS:
        test = example(data=REGRESSIONS[name][1])(test)
    test.__name__ = f"test_{name}_returns_or_raises_only_its_typed_error"
    test.__doc__ = f"{name}: {target.contract}."
    return test


# One named test per target (the same set the campaign runs).
test_cells_returns_or_raises_only_its_typed_error = _fuzz_test("cells")
test_handshake_messages_returns_or_raises_only_its_typed_error = _fuzz_test("handshake_messages")
test_session_returns_or_raises_only_its_typed_error = _fuzz_test("session")
test_envelopes_returns_or_raises_only_its_typed_error = _fuzz_test("envelopes")
test_control_messages_returns_or_raises_only_its_typed_error = _fuzz_test("control_messages")
test_sam_replies_returns_or_raises_only_its_typed_error = _fuzz_test("sam_replies")
test_tor_control_returns_or_raises_only_its_typed_error = _fuzz_test("tor_control")
test_socks_returns_or_raises_only_its_typed_error = _fuzz_test("socks")
test_api_bodies_returns_or_raises_only_its_typed_error = _fuzz_test("api_bodies")
test_config_yaml_returns_or_raises_only_its_typed_error = _fuzz_test("config_yaml")
test_identity_records_returns_or_raises_only_its_typed_error = _fuzz_test("identity_records")
test_i2p_bindings_returns_or_raises_only_its_typed_error = _fuzz_test("i2p_bindings")
test_key_files_returns_or_raises_only_its_typed_error = _fuzz_test("key_files")
test_pubsub_rpcs_returns_or_raises_only_its_typed_error = _fuzz_test("pubsub_rpcs")


def test_every_target_has_a_test_here() -> None:
    names = {n.removeprefix("test_").removesuffix("_returns_or_raises_only_its_typed_error")
             for n in globals() if n.endswith("_returns_or_raises_only_its_typed_error")}
    assert names == set(TARGETS)


def test_every_seed_is_accepted_or_refused_cleanly() -> None:
    """The seeds themselves (valid samples, and the deep-nesting one) pass each target."""
    for target in TARGETS.values():
        for seed in target.seeds():
            target.run(seed)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_reproducer(name: str) -> None:
    TARGETS[name].run(REGRESSIONS[name][1])


def test_the_campaign_driver_counts_inputs_and_prints_one_line_per_target(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "--engine", "random", "--runs", "300",
         "--out", str(tmp_path), "socks", "cells"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split() == ["target", "inputs", "seconds", "crashes"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["socks"][1] == "300" and rows["socks"][3] == "0"
    assert rows["cells"][1] == "300" and rows["cells"][3] == "0"
    assert "no crashes" in lines[-1]
