"""Offline mailboxes on the private Tor network: 5 ``twistd aegis-hidden`` nodes.

A message to a peer that is stopped is left in its DHT mailbox; the sender
stops too; the recipient comes back, collects it from the other nodes and
delivers it; the sender comes back and its retry is acknowledged as a copy:
the message reaches the recipient exactly once. Driven through the REST API
and ``/metrics`` on loopback (no reactor in this file).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from aegis_hidden.cli._common import CLIError
from aegis_hidden.testing import TorNetwork, start_node, wait_for

from .test_dht import Api, _published, dht_nodes

pytestmark = pytest.mark.integration

N = 5


def counter(api: Api, name: str) -> int:
    try:
        code, text = api.call("GET", "/metrics", timeout=10)
    except (CLIError, OSError):
        return -1
    if code != 200 or not isinstance(text, str):
        return -1
    for line in text.splitlines():
        if line.startswith(f"aegis_{name}_total "):
            return int(float(line.split()[1]))
    return -1


@pytest.fixture(scope="module")
def nodes(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[list[Api]]:
    root = tmp_path_factory.mktemp("mailbox")
    with dht_nodes(tor_network, root, "m", N, dht={"mailbox_after": 15},
                   check_logs=False) as apis:
        yield apis


def test_a_message_to_an_offline_peer_arrives_once_through_its_mailbox(
        nodes: list[Api]) -> None:
    procs = [a.node for a in nodes]
    for api in nodes[1:]:
        wait_for(lambda api=api: _published(api), 300, f"{api.node.name} to publish its record",
                 procs, interval=2)
    sender, recipient = nodes[1], nodes[2]
    others = [a.node for a in nodes if a not in (sender, recipient)]

    recipient.node.stop()
    t0 = time.monotonic()
    code, sent = sender.call("POST", "/api/network/send", {
        "target": recipient.node.onion, "message": {"type": "chat", "data": "while you were out"}})
    assert code == 202, sent
    wait_for(lambda: counter(sender, "mailbox_deposited") >= 1, 300,
             "the message to be left in the recipient's mailbox", [sender.node, *others],
             interval=2)
    deposited = time.monotonic() - t0
    code, state = sender.call("GET", f"/api/network/messages/{sent['id']}", timeout=10)
    assert code == 200 and state["state"] != "acknowledged", state

    sender.node.stop()  # the sender is away when the recipient comes back
    t1 = time.monotonic()
    start_node(recipient.node, api=True)
    wait_for(lambda: counter(recipient, "mailbox_collected") >= 1, 300,
             "the recipient to collect its mailbox", [recipient.node, *others], interval=2)
    collected = time.monotonic() - t1
    # one letter, handed to messaging as a new message: the sender is away, so no copy
    # came another way (messages_received also counts the pongs of the bootstrap node)
    assert counter(recipient, "mailbox_collected") == 1
    duplicates = counter(recipient, "messages_duplicate")

    start_node(sender.node, api=True)  # its outbox resends; the copy is acknowledged
    t2 = time.monotonic()

    def acknowledged() -> bool:
        try:
            code, state = sender.call("GET", f"/api/network/messages/{sent['id']}", timeout=10)
        except (CLIError, OSError):
            return False
        return code == 200 and state["state"] == "acknowledged"

    wait_for(acknowledged, 400, "the sender's retry to be acknowledged", procs, interval=2)
    acked = time.monotonic() - t2
    # the copy from the outbox was acknowledged as a duplicate, not delivered again
    assert counter(recipient, "messages_duplicate") > duplicates
    assert counter(recipient, "mailbox_collected") == 1
    print(f"\nmailbox on the private Tor network: left after {deposited:.0f}s "
          f"(dht.mailbox_after 15 s), collected {collected:.0f}s after the recipient was "
          f"started again, the sender's copy acknowledged {acked:.0f}s after it was back; "
          f"delivered once")
