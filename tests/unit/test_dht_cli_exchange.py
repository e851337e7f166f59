"""``aegis-hidden dht stats`` shows peer exchange and reachability checks."""

from __future__ import annotations

import pytest

from aegis_hidden.cli import main
from aegis_hidden.testing import FakeDHT

from .test_cli_dht import fake  # noqa: F401  (the fixture)


def test_stats_show_exchange_and_candidates(fake: FakeDHT,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    plain = fake.stats()
    exchange = {"offers_sent": 6, "records_offered": 15, "offers_taken": 5, "records_taken": 12,
                "offers_refused": 1, "offers_received": 4, "records_accepted": 9,
                "records_refused": 2, "offers_over_rate": 1, "refused": {"ForgedEntry": 2},
                "i2p_learnt": 0}
    candidates = {"waiting": 3, "checking": 1, "queued": 20, "trusted": 11,
                  "checked_by_lookup": 4, "unreachable": 1, "dropped": 0, "max": 256,
                  "checks_per_tick": 4}
    monkeypatch.setattr(fake, "stats", lambda: {**plain, "exchange": exchange,
                                                "candidates": candidates})
    assert main(["dht", "stats"]) == 0
    out = capsys.readouterr().out
    assert ("exchange    sent 6 offers (15 records, 12 taken, 1 offers refused); received 4 "
            "offers: 9 records accepted, 2 refused, 1 offers over the rate") in out
    assert ("candidates  3 waiting, 1 being checked; 11 trusted after a PING, 4 by a lookup "
            "answer, 1 unreachable, 0 dropped") in out
