"""S/Kademlia's dynamic puzzle: solving, checking, and where contacts are refused."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.dht import (
    MAX_NONCE,
    Contact,
    DhtCore,
    DhtPersistence,
    FindNode,
    Nodes,
    Ping,
    Refused,
    RoutingTable,
    Store,
    check_puzzle,
    decode_request_nonce,
    decode_response,
    encode,
    solve_puzzle,
)
from aegis_hidden.dht._puzzle import leading_zero_bits, puzzle_digest
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import result_of

BITS = 10


def contact(rng: random.Random, bits: int = BITS, solved: bool = True) -> Contact:
    key = rng.randbytes(32)
    c = Contact(key)
    nonce = solve_puzzle(c.id, bits)
    if not solved:  # the next nonce that does not solve it
        nonce = next(n for n in range(nonce + 1, nonce + 10_000)
                     if not check_puzzle(c.id, n, bits))
    return Contact(key, nonce=nonce)


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(0, 12))
def test_a_solution_checks_and_is_the_first(node_id: bytes, bits: int) -> None:
    nonce = solve_puzzle(node_id, bits)
    assert check_puzzle(node_id, nonce, bits)
    assert leading_zero_bits(puzzle_digest(node_id, nonce)) >= bits or bits == 0
    assert all(not check_puzzle(node_id, n, bits) for n in range(nonce)) or bits == 0


def test_limits() -> None:
    assert check_puzzle(bytes(32), 12345, 0)  # no puzzle
    assert not check_puzzle(bytes(32), MAX_NONCE + 1, 1)
    assert not check_puzzle(bytes(32), -1, 1)
    with pytest.raises(ValueError, match="0 to 32 bits"):
        solve_puzzle(bytes(32), 33)
    assert leading_zero_bits(bytes(32)) == 256 and leading_zero_bits(b"\x01" + bytes(31)) == 7


def test_the_table_admits_only_solved_contacts() -> None:
    rng = random.Random(1)
    table = RoutingTable(contact(rng), puzzle_bits=BITS)
    good, bad = contact(rng), contact(rng, solved=False)
    table.observe(good, 0.0)
    table.observe(bad, 0.0)
    assert good in table and bad not in table
    assert table.puzzle_refused == 1
    assert Contact(good.ed25519_public) in table  # a contact is its key; the nonce rides along
    table.load([bad], 0.0)
    assert bad not in table


def test_the_nonce_travels_on_the_wire() -> None:
    rng = random.Random(2)
    c = contact(rng)
    answer = decode_response(encode(Nodes((c,))))
    assert isinstance(answer, Nodes) and answer.contacts[0].nonce == c.nonce
    request, nonce = decode_request_nonce(encode(FindNode(bytes(32)), 77))
    assert isinstance(request, FindNode) and nonce == 77
    assert decode_request_nonce(encode(Ping()))[1] == 0


def test_an_unsolved_asker_is_answered_but_not_learnt_and_cannot_store() -> None:
    rng = random.Random(3)
    core = DhtCore(contact(rng), puzzle_bits=BITS)
    solved, unsolved = contact(rng), contact(rng, solved=False)
    handled = core.handle(Contact(unsolved.ed25519_public),
                          encode(FindNode(bytes(32)), unsolved.nonce), 0.0)
    assert isinstance(decode_response(handled.answer), Nodes)
    assert unsolved not in core.table and core.refused["puzzle"] == 1
    core.handle(Contact(solved.ed25519_public), encode(Ping(), solved.nonce), 0.0)
    assert solved in core.table and core.table.contacts()[0].nonce == solved.nonce
    from aegis_hidden.dht import SignedRecord

    record = SignedRecord(b"n", b"v", 1, 100, bytes(42))
    refused = decode_response(core.handle(Contact(unsolved.ed25519_public),
                                          encode(Store(record), unsolved.nonce), 0.0).answer)
    assert isinstance(refused, Refused) and refused.reason == "puzzle not solved"


def test_a_lookup_never_asks_a_contact_that_did_not_solve_its_puzzle() -> None:
    rng = random.Random(4)
    core = DhtCore(contact(rng), puzzle_bits=BITS)
    first = contact(rng)
    good, bad = contact(rng), contact(rng, solved=False)
    lookup = core.lookup(bytes(32), seeds=[first])
    [query] = lookup.next_queries()
    assert core.feed(lookup, query.contact, encode(Nodes((good, bad))), 0.0)
    asked = {q.contact.id for q in lookup.next_queries()}
    assert good.id in asked and bad.id not in asked
    assert core.refused["puzzle"] == 1


def test_requests_carry_the_own_nonce() -> None:
    rng = random.Random(5)
    own = contact(rng)
    core = DhtCore(own, puzzle_bits=BITS)
    assert decode_request_nonce(core.find_node(bytes(32)))[1] == own.nonce
    assert decode_request_nonce(core.request(Ping()))[1] == own.nonce


def test_the_nonce_is_persisted_and_an_older_table_gets_the_column(tmp_path: Path) -> None:
    db = InlineSQLite(str(tmp_path / "d.db"))

    def old_schema(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE dht_contacts (ed25519_public BLOB PRIMARY KEY, i2p TEXT "
                     "NOT NULL, replacement INTEGER NOT NULL, position INTEGER NOT NULL)")

    result_of(db.run(old_schema))
    rng = random.Random(6)
    table = RoutingTable(contact(rng), puzzle_bits=BITS)
    c = contact(rng)
    table.observe(c, 0.0)
    store = DhtPersistence(db)
    result_of(store.open())
    result_of(store.save_table(table))
    again = RoutingTable(table.own, puzzle_bits=BITS)
    assert result_of(store.load_table(again, 0.0)) == 1
    assert again.contacts()[0].nonce == c.nonce and c in again
