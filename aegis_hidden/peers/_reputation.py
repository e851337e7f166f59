"""Reputation: a score in [0, 1] that moves on observed behaviour (docs/reputation.md).

Each observation pulls the score a fixed fraction of the way towards 1 (good
behaviour) or 0 (bad behaviour): ``score += weight * (target - score)``. The
update is bounded, monotone in each direction and needs no history. A peer
whose score falls below :data:`AUTO_BLOCK_BELOW` is blacklisted for
:data:`AUTO_BLOCK_SECONDS`; when that expires it comes back at its old score,
so one more bad observation blocks it again.
"""

from __future__ import annotations

import enum

INITIAL_REPUTATION = 0.5
AUTO_BLOCK_BELOW = 0.1
AUTO_BLOCK_SECONDS = 3600.0


class Behaviour(enum.Enum):
    SESSION_OK = "session_ok"
    MESSAGE_ACKED = "message_acked"
    HANDSHAKE_FAILED = "handshake_failed"
    TIMEOUT = "timeout"
    PROTOCOL_VIOLATION = "protocol_violation"
    INVALID_SIGNATURE = "invalid_signature"
    LOOP_LOST = "loop_lost"
    DHT_TIMEOUT = "dht_timeout"
    DHT_REFUSED = "dht_refused"
    DHT_BAD_ANSWER = "dht_bad_answer"
    DHT_BAD_CONTACTS = "dht_bad_contacts"
    DHT_BAD_RECORD = "dht_bad_record"


# behaviour -> (target, weight)
WEIGHTS: dict[Behaviour, tuple[float, float]] = {
    Behaviour.SESSION_OK: (1.0, 0.05),
    Behaviour.MESSAGE_ACKED: (1.0, 0.01),
    Behaviour.HANDSHAKE_FAILED: (0.0, 0.10),
    Behaviour.TIMEOUT: (0.0, 0.05),
    Behaviour.PROTOCOL_VIOLATION: (0.0, 0.25),
    Behaviour.INVALID_SIGNATURE: (0.0, 0.50),
    Behaviour.LOOP_LOST: (0.0, 0.05),
    # the DHT (node/_dht.py): a contact that answers wrongly or not at all
    Behaviour.DHT_TIMEOUT: (0.0, 0.05),
    Behaviour.DHT_REFUSED: (0.0, 0.10),
    Behaviour.DHT_BAD_ANSWER: (0.0, 0.25),
    Behaviour.DHT_BAD_CONTACTS: (0.0, 0.25),
    Behaviour.DHT_BAD_RECORD: (0.0, 0.50),
}


def updated_reputation(score: float, behaviour: Behaviour) -> float:
    """The score after one observation of ``behaviour``; always in [0, 1]."""
    target, weight = WEIGHTS[behaviour]
    new = score + weight * (target - score)
    return min(1.0, max(0.0, new))


def is_good(behaviour: Behaviour) -> bool:
    return WEIGHTS[behaviour][0] > 0.5
