"""Counters and a latency histogram, rendered as Prometheus text (``GET /metrics``)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def sample(value: float) -> str:
    """A sample value in Prometheus text, exact: an integer stays whole (a record's
    expiry in Unix seconds keeps its last digit, which ``:g`` would round away), a
    float keeps every digit ``repr`` gives, and the specials are Prometheus' own."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class Histogram:
    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        """The sample lines; ``labels`` (``'kind="warm"'``) go before ``le``."""
        out = []
        cumulative = 0
        pre = f"{labels}," if labels else ""
        tail = f"{{{labels}}}" if labels else ""
        for bound, n in zip(self.buckets, self.counts, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{{pre}le="{bound:g}"}} {cumulative}')
        out.append(f'{name}_bucket{{{pre}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{tail} {self.total:.6f}")
        out.append(f"{name}_count{tail} {self.count}")
        return out


class Metrics:
    """What ``/metrics`` shows. Counters only go up; gauges are read at render time."""

    COUNTERS = {
        "connection_attempts_ok": "Outgoing sessions established.",
        "connection_attempts_failed": "Outgoing session attempts that failed.",
        "connections_accepted": "Incoming sessions accepted.",
        "connections_refused": "Incoming sessions refused (blacklist or pool full).",
        "bytes_in": "Application bytes received over sessions.",
        "bytes_out": "Application bytes sent over sessions.",
        "messages_sent": "Message transmissions (first tries and retries).",
        "messages_acked": "Messages acknowledged by their peer.",
        "messages_received": "Messages delivered to the application (after de-duplication).",
        "messages_duplicate": "Duplicate messages acknowledged and dropped.",
        "sends_refused_backpressure": "Sends refused because the session to the peer "
                                      "still held too many unsent cells (API 503).",
        "peer_churn": "Session openings plus closings.",
        "sessions_closed_idle": "Stale sessions the pool closed: unused for the idle timeout, "
                                "or idle beyond the pool's keep-idle size.",
        "auth_failures": "API requests or WebSocket upgrades with a wrong or missing token.",
        "session_auth_failures": "Sessions that failed the handshake or a signature check.",
        "protocol_errors": "Malformed messages received from peers.",
        "identity_mismatches": "Sessions refused: the verified record is another peer's "
                               "(e.g. a failover address bound to someone else).",
        "revoked_refused": "Sessions refused at dial or accept: the peer's identity is revoked.",
        "mldsa_pin_mismatches": "Peer records refused: the ML-DSA-65 key differs from the "
                                "pinned one without a rotation signed by the pinned key.",
        "records_pushed": "Record push control messages sent to peers.",
        "records_received": "Peer records (and revocations) accepted from record pushes.",
        "records_refused": "Record pushes refused (bad signature, rollback, wrong peer...).",
        "records_refreshed": "Times this node re-signed its record before half its lifetime.",
        "control_unknown": "Control messages of an unknown kind, ignored.",
        "loops_answered": "Loop messages of peers returned to them (loop cover).",
        "frames_unknown_channel": "Frames for a channel this node does not know, ignored "
                                  "(a newer peer's; never a protocol violation).",
        "rpc_requests_sent": "Requests sent on the rpc channel.",
        "rpc_requests_received": "Requests received on the rpc channel.",
        "rpc_timeouts": "Requests on the rpc channel that got no answer in time.",
        "rpc_unmatched": "Answers on the rpc channel that no request waited for (late...).",
        "rpc_busy": "Requests on the rpc channel answered busy: the peer had too many "
                    "being answered.",
        "pubsub_unhandled": "Frames on the pubsub channel dropped: no pub/sub layer runs.",
        "pubsub_published": "Messages this node published on pub/sub topics.",
        "pubsub_delivered": "New pub/sub messages delivered to this node's application "
                            "(event message_received with a topic).",
        "pubsub_rpcs_out": "Pub/sub RPC frames sent to peers.",
        "pubsub_rpcs_in": "Pub/sub RPC frames received from peers.",
        "pubsub_unreadable": "Pub/sub messages not delivered here: sealed to a group key "
                             "this node does not hold, or refused on a private topic.",
        "pubsub_invitations_sent": "Private-topic invitations sent (messaging path).",
        "pubsub_invitations_received": "Private-topic invitations received and held "
                                       "(event topic_invitation).",
        "pubsub_invitations_refused": "Private-topic invitations refused: malformed, or not "
                                      "opening for this node (event network_error).",
        "pubsub_broadcast_dropped": "Broadcast messages dropped: over a publisher's or a "
                                    "forwarding peer's rate, or too large (a behaviour "
                                    "penalty each).",
        "dht_lookups_ok": "DHT lookups that ended well (a contact answered; a value lookup: "
                          "a verified value found).",
        "dht_lookups_failed": "DHT lookups that found nothing (event dht_lookup_failed).",
        "dht_records_refused": "DHT records refused: STOREs not taken, values that did not "
                               "verify (event dht_record_refused).",
        "mailbox_deposited": "Messages left in an unreachable peer's DHT mailbox (event "
                             "mailbox_deposited).",
        "mailbox_collected": "Letters collected from this node's DHT mailbox and handed to "
                             "messaging (event mailbox_collected).",
        "mailbox_accepted": "Letters this node took to hold for another node's DHT mailbox.",
        "mailbox_refused": "Mailbox deposits and collects this node refused (by reason in "
                           "GET /api/network/dht, mailbox.refused).",
        "dht_misbehaviour": "DHT answers held against a contact's reputation: timeouts, "
                            "malformed or unfitting answers, unsolved contacts, forged records, "
                            "refusals without a reason (docs/reputation.md).",
        "dht_contacts_evicted": "DHT contacts evicted from the routing table for reputation "
                                "below 0.2 or a blacklisting.",
        "dht_exchange_accepted": "Contacts' identity records taken from peers' DHT peer-exchange "
                                 "offers (as candidates).",
        "dht_exchange_refused": "Peer-exchange records refused (forged, unsolved, revoked, "
                                "refused by the record keeper), and offers over a peer's rate.",
        "dht_candidates_trusted": "DHT candidates that answered their reachability check and "
                                  "entered the routing table.",
        "dht_candidates_unreachable": "DHT candidates that did not answer their reachability "
                                      "check (never trusted).",
        "audits_passed": "Audits of the node's own traffic (POST /api/network/audit) "
                         "that passed every check.",
        "audits_failed": "Audits of the node's own traffic that failed a check.",
        "audits_incomplete": "Audits that could not be completed (the analysis failed).",
    }

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self.latency = Histogram()
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        #: Gauges with one label: name -> (help, label name, read() -> {label value: value}).
        self.labelled: dict[str, tuple[str, str, Callable[[], Mapping[str, float]]]] = {}
        #: Histograms with one label: name -> (help, label name, {label value: histogram}).
        self.histograms: dict[str, tuple[str, str, dict[str, Histogram]]] = {}
        #: Read at render time: the mixing layer's snapshot (see :func:`mixing_lines`).
        self.mixing: Callable[[], dict[str, Any]] | None = None

    def inc(self, name: str, amount: int = 1) -> None:
        if name not in self.counters:
            raise KeyError(f"unknown counter {name!r}")
        self.counters[name] += amount

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (doc, read)

    def labelled_gauge(self, name: str, doc: str, label: str,
                       read: Callable[[], Mapping[str, float]]) -> None:
        """``aegis_<name>{<label>="<value>"}``, one line per key of ``read()``."""
        self.labelled[name] = (doc, label, read)

    def labelled_histogram(self, name: str, doc: str, label: str, value: str,
                           buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        """The histogram ``aegis_<name>{<label>="<value>"}`` (made on first use)."""
        entry = self.histograms.setdefault(name, (doc, label, {}))
        return entry[2].setdefault(value, Histogram(buckets))

    def render(self) -> str:
        out: list[str] = []
        for name, doc in self.COUNTERS.items():
            full = f"aegis_{name}_total"
            out += [f"# HELP {full} {doc}", f"# TYPE {full} counter",
                    f"{full} {self.counters[name]}"]
        for name, (doc, read) in sorted(self.gauges.items()):
            full = f"aegis_{name}"
            out += [f"# HELP {full} {doc}", f"# TYPE {full} gauge", f"{full} {sample(read())}"]
        for name, (doc, label, read_all) in sorted(self.labelled.items()):
            full = f"aegis_{name}"
            out += [f"# HELP {full} {doc}", f"# TYPE {full} gauge"]
            out += [f'{full}{{{label}="{value}"}} {sample(n)}'
                    for value, n in sorted(read_all().items())]
        name = "aegis_message_ack_latency_seconds"
        out += [f"# HELP {name} Time from first send to the peer's acknowledgement.",
                f"# TYPE {name} histogram", *self.latency.lines(name)]
        for short, (doc, label, by_value) in sorted(self.histograms.items()):
            full = f"aegis_{short}"
            out += [f"# HELP {full} {doc}", f"# TYPE {full} histogram"]
            for value, histogram in sorted(by_value.items()):
                out += histogram.lines(full, f'{label}="{value}"')
        if self.mixing is not None:
            out += mixing_lines(self.mixing())
        return "\n".join(out) + "\n"


#: (snapshot key, metric name, help) of the mixing layer's counters.
MIXING_COUNTERS = (
    ("cover_cells_sent", "mixing_cover_cells_sent",
     "Cover cells this node sent in empty slots of its link schedule."),
    ("cover_cells_received", "mixing_cover_cells_received",
     "Cover cells received from peers (opened and dropped)."),
    ("cells_sent", "mixing_cells_sent", "Cells sent on established sessions, real and cover."),
    ("cells_received", "mixing_cells_received",
     "Cells received on established sessions, real and cover."),
    ("slots", "mixing_slots", "Scheduler slots (writes) on all links."),
    ("late_slots", "mixing_late_slots",
     "Slots skipped because the reactor ran late past them (not sent in a clump)."),
    ("loops_sent", "mixing_loops_sent", "Loop messages sent through connected peers."),
    ("loops_returned", "mixing_loops_returned", "Loop messages back within the loop timeout."),
    ("loops_lost", "mixing_loops_lost",
     "Loop messages not back within the loop timeout (counted against the peer)."),
    ("loops_late", "mixing_loops_late", "Loop messages back after they were counted lost."),
    ("pool_added", "mixing_forwarded",
     "Items relayed for others (rpc answers, pub/sub forwards) taken into the mix pool."),
    ("pool_released", "mixing_forwarded_released",
     "Items relayed for others sent on after their mix delay."),
)

#: (snapshot key, metric name, help) of the mixing layer's rates and levels.
MIXING_GAUGES = (
    ("loop_rate", "mixing_loop_rate",
     "Loop messages per second, node-wide (lambda_L; 0: no loop cover)."),
    ("mix_rate", "mixing_mix_rate",
     "Mix rate mu of forwarded traffic: it waits Exp(mu), mean 1/mu s (0: no delay)."),
    ("loops_outstanding", "mixing_loops_outstanding", "Loop messages sent and not yet back."),
    ("pool_waiting", "mixing_forwarded_waiting", "Items relayed for others waiting their delay."),
)


def mixing_lines(snap: dict[str, Any]) -> list[str]:
    """The mixing layer's profile, rates, counters and queue-delay histogram, as
    Prometheus text (``snap``: :meth:`aegis_hidden.mixing.MixingLayer.snapshot`)."""
    out: list[str] = []
    name = "aegis_mixing_profile_info"
    out += [f"# HELP {name} The mixing profile the node runs (label), always 1.",
            f"# TYPE {name} gauge", f'{name}{{profile="{snap["profile"]}"}} 1']
    name = "aegis_mixing_cover_rate"
    out += [f"# HELP {name} Slots per second on each link (lambda; 0: no schedule, no cover).",
            f"# TYPE {name} gauge", f"{name} {sample(snap['cover_rate'])}"]
    for key, metric, doc in MIXING_GAUGES:
        if key in snap:
            full = f"aegis_{metric}"
            out += [f"# HELP {full} {doc}", f"# TYPE {full} gauge", f"{full} {sample(snap[key])}"]
    for key, metric, doc in MIXING_COUNTERS:
        if key in snap:
            full = f"aegis_{metric}_total"
            out += [f"# HELP {full} {doc}", f"# TYPE {full} counter", f"{full} {snap[key]}"]
    for key, name, doc in (
            ("queue_delay", "aegis_mixing_queue_delay_seconds",
             "How long real cells waited for their slot."),
            ("loop_rtt", "aegis_mixing_loop_rtt_seconds",
             "Round trips of the loop messages back within the loop timeout.")):
        buckets = snap.get(f"{key}_buckets")
        if buckets is None:
            continue
        out += [f"# HELP {name} {doc}", f"# TYPE {name} histogram"]
        for bound, count in buckets:
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{le="{le}"}} {count}')
        out += [f"{name}_sum {snap[f'{key}_sum']:.6f}", f"{name}_count {buckets[-1][1]}"]
    return out
