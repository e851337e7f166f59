"""One peer, one name: every entry point takes only the canonical address form."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from aegis_hidden.cli._main import build_parser
from aegis_hidden.config import ConfigError, load_config
from aegis_hidden.identity import (
    OnionAddressError,
    canonical_address,
    is_canonical_address,
    onion_address_from_public_key,
)
from aegis_hidden.peers import InlineSQLite, PeerAddressError, PeerStore, check_peer_address
from aegis_hidden.testing import result_of

ONION = onion_address_from_public_key(bytes(range(32)))
B32 = base64.b32encode(bytes(range(32))).decode().rstrip("=").lower() + ".b32.i2p"

ALIASES = [
    "www." + ONION,
    "192.168.1.100." + ONION,
    ONION[:-6] + ".onion.",                      # trailing dot
    ONION + ":7701",                             # a port is not part of a name
    " " + ONION,
    ONION.replace(".onion", "====.onion"),        # base32 padding
    ONION.replace("k", "\u212a", 1) if "k" in ONION else "\u212a" + ONION[1:],  # KELVIN SIGN
    ONION.replace("s", "\u017f", 1) if "s" in ONION else "\u017f" + ONION[1:],  # LONG S
    "x." + B32,
    B32[:51] + "b.b32.i2p",                       # non-zero unused trailing bits
    "a" * 56 + ".b32.i2p",                        # b33-length
    "a" * 56 + ".onion",                          # bad version / checksum
    "example.com",
    "",
]


def test_canonical_forms_are_accepted_and_upper_case_ascii_lowered() -> None:
    assert is_canonical_address(ONION) and is_canonical_address(B32)
    assert canonical_address(ONION.upper()) == ONION
    assert canonical_address(B32.upper()) == B32
    assert not is_canonical_address(ONION.upper())


@pytest.mark.parametrize("alias", ALIASES)
def test_aliases_are_refused_with_a_message(alias: str) -> None:
    assert not is_canonical_address(alias)
    with pytest.raises(OnionAddressError) as info:
        canonical_address(alias)
    assert str(info.value)
    with pytest.raises(PeerAddressError):
        check_peer_address(alias)


def test_label_in_front_is_named_in_the_message() -> None:
    with pytest.raises(PeerAddressError, match="label in front"):
        check_peer_address("www." + ONION)
    with pytest.raises(PeerAddressError, match="non-ASCII"):
        check_peer_address("\u212a" + ONION[1:])


def _store() -> PeerStore:
    store = PeerStore(InlineSQLite(), Clock().seconds)
    result_of(store.load())
    return store


@pytest.mark.parametrize("alias", ["www." + ONION, "192.168.1.100." + ONION])
def test_peer_store_refuses_aliases(alias: str) -> None:
    store = _store()
    result_of(store.add(ONION))
    with pytest.raises(PeerAddressError):
        result_of(store.add(alias))
    with pytest.raises(PeerAddressError):
        result_of(store.block(alias, "x"))
    assert [p.peer_id for p in store.all()] == [ONION]


def test_peer_store_lookup_does_not_fold_unicode() -> None:
    store = _store()
    onion = next(o for o in (onion_address_from_public_key(os.urandom(32)) for _ in range(200))
                 if "k" in o)
    result_of(store.add(onion))
    assert store.get(onion.upper()) is not None
    assert store.get(onion.replace("k", "\u212a")) is None


def test_peer_store_load_skips_stored_aliases(tmp_path: Path) -> None:
    db = InlineSQLite(str(tmp_path / "n.db"))

    def insert(conn: Any) -> None:
        conn.execute("INSERT INTO peers (peer_id, added) VALUES (?, 0)", ("www." + ONION,))
        conn.execute("INSERT INTO peers (peer_id, added) VALUES (?, 0)", (ONION,))

    result_of(db.run(insert))
    store = PeerStore(db, Clock().seconds)
    result_of(store.load())
    assert [p.peer_id for p in store.all()] == [ONION]


@pytest.mark.parametrize("alias", ["www." + ONION, "192.168.1.100." + ONION + ":7701"])
def test_config_bootstrap_nodes_refuse_aliases(tmp_path: Path, alias: str) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(f"network:\n  bootstrap_nodes: ['{alias}']\n")
    with pytest.raises(ConfigError, match="label in front"):
        load_config(path)


def test_config_bootstrap_nodes_are_canonicalised(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(f"network:\n  bootstrap_nodes: ['{ONION.upper()}:7701', '{B32}']\n")
    assert load_config(path).network.bootstrap_nodes == (f"{ONION}:7701", B32)


@pytest.mark.parametrize("argv", [
    ["peers", "add", "www." + ONION],
    ["peers", "remove", "192.168.1.100." + ONION],
    ["peers", "block", "\u212a" + ONION[1:]],
    ["peers", "add", ONION, "--i2p", "x." + B32],
    ["send", "www." + ONION, "hi"],
])
def test_cli_refuses_aliases(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert "argument" in err and ("label in front" in err or "non-ASCII" in err)


def test_cli_canonicalises() -> None:
    args = build_parser().parse_args(["peers", "add", ONION.upper()])
    assert args.address == ONION


@pytest.mark.parametrize("alias", ["www." + ONION, "192.168.1.100." + ONION])
def test_api_refuses_aliases(tmp_path: Path, alias: str) -> None:
    from tests.unit.test_api import Api

    api = Api(tmp_path)
    assert api.call("POST", "/api/network/peers", {"action": "add", "peer_address": ONION}
                    )[0] == 200
    for body in ({"action": "add", "peer_address": alias},
                 {"action": "block", "peer_address": alias}):
        code, reply, _ = api.call("POST", "/api/network/peers", body)
        assert code == 400
        assert "label in front" in reply["error"]
    code, reply, _ = api.call("POST", "/api/network/send",
                              {"target": alias, "message": {"type": "t", "data": 1}})
    assert code == 400
    assert [p["id"] for p in api.call("GET", "/api/network/peers")[1]["peers"]] == [ONION]


@pytest.mark.parametrize("label", ["a" * 55 + "=", "a" * 54 + "==", "a" * 55 + "!"])
def test_public_key_parser_refuses_padding_with_its_typed_error(label: str) -> None:
    from aegis_hidden.identity import public_key_from_onion_address

    with pytest.raises(OnionAddressError, match="not base32"):
        public_key_from_onion_address(label + ".onion")
    with pytest.raises(OnionAddressError, match="not base32"):
        public_key_from_onion_address(label)
