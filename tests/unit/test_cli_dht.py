"""``aegis-hidden dht stats|get|put|crawl`` against the real API tree over the fake IDHT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_hidden.cli import main
from aegis_hidden.cli._api import ApiClient
from aegis_hidden.dht import SignedRecord, record_key
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.testing import FakeDHT

from .test_api import Api
from .test_api_cli import StubClient


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDHT:
    harness = Api(tmp_path)
    dht = FakeDHT()
    harness.a.attach_dht(dht)
    monkeypatch.setattr(ApiClient, "from_args", classmethod(lambda cls, args: StubClient(
        harness)))
    return dht


def test_stats(fake: FakeDHT, capsys: pytest.CaptureFixture[str]) -> None:
    fake.contact_list = ["a.onion", "b.onion"]
    fake.lookups_ok = 5
    assert main(["dht", "stats"]) == 0
    out = capsys.readouterr().out
    assert "contacts    2 in 0 buckets" in out and "lookups     5 ok, 0 failed" in out
    assert main(["dht", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["contacts"] == ["a.onion", "b.onion"]


def test_stats_show_mailbox_figures(fake: FakeDHT, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    plain = fake.stats()
    mail = {"letters_held": 3, "bytes_held": 6144, "accepted": 4, "deposited": 1,
            "collected": 2, "refused": {"MailboxFull": 1}}
    monkeypatch.setattr(fake, "stats", lambda: {
        **plain, "mailbox": mail, "misbehaviour": {"dht_timeout": 2}, "evicted": 1,
        "paths": {"tor": 5, "i2p": 3}})
    assert main(["dht", "stats"]) == 0
    out = capsys.readouterr().out
    assert ("mailbox     3 letters (6144 bytes) held for others, 4 accepted; 1 deposited, "
            "2 collected") in out
    assert "  refused   MailboxFull 1" in out
    assert "judged      dht_timeout 2; 1 contacts evicted" in out
    assert "paths       5 queries over Tor, 3 over I2P" in out


def test_put_then_get(fake: FakeDHT, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dht", "put", "topic", "hello world", "--lifetime", "600"]) == 0
    assert "stored at 1 nodes" in capsys.readouterr().out
    key = record_key(fake.publisher, b"topic").hex()
    assert main(["dht", "get", key, "--network"]) == 0
    out = capsys.readouterr().out
    assert "value      hello world" in out and "name       topic" in out
    assert fake.calls[-1] == ("get-network", bytes.fromhex(key))
    assert main(["dht", "put", "identity", "x"]) == 1
    assert "API said 400" in capsys.readouterr().err


def test_get_by_onion_and_missing(fake: FakeDHT, capsys: pytest.CaptureFixture[str]) -> None:
    publisher = bytes(range(5, 37))
    onion = onion_address_from_public_key(publisher)
    fake.add(SignedRecord(b"identity", b"", 3, 1_800_003_600, bytes(10) + publisher))
    assert main(["dht", "get", onion]) == 0
    assert f"publisher  {onion}" in capsys.readouterr().out
    assert main(["dht", "get", "ab" * 32]) == 1
    assert "API said 404" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dht", "get", "not-a-key"])


def test_crawl(fake: FakeDHT, capsys: pytest.CaptureFixture[str]) -> None:
    fake.crawled = {"reachable": 2, "unreachable": 1, "seen": 3, "not_asked": 0,
                    "seconds": 4.2, "nodes": ["a.onion", "b.onion"]}
    assert main(["dht", "crawl", "--max-nodes", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == ["a.onion", "b.onion"]
    assert "2 reachable, 1 unreachable, 3 seen" in out
    assert fake.calls[-1] == ("crawl", (10, 8))
    assert main(["dht", "crawl", "--max-nodes", "0"]) == 1
