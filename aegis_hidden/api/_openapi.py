"""The OpenAPI 3.1 document the server serves at ``/api/openapi.json``.

``docs/openapi.json`` is this document as written by
``aegis-hidden api openapi > docs/openapi.json``; a unit test checks
that the two are equal.
"""

from __future__ import annotations

import json
from typing import Any

from .. import __version__ as _version
from ..mixing import MAX_BYTES_PER_SECOND, MIN_BYTES_PER_SECOND


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {
    "400": _json(_ref("Error"), "The body is not valid; `field` names the culprit."),
    "405": _json(_ref("Error"), "Method not allowed here; `Allow` lists the ones that are."),
    "401": _json(_ref("Error"), "Missing or wrong bearer token."),
    "404": _json(_ref("Error"), "Unknown peer, message or path."),
    "413": _json(_ref("Error"), "The body is larger than api.max_body_size."),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: _ERR[c] for c in ("401", *codes)}


EMERGENCY = {
    "type": "object", "required": ["isolated", "throttle"],
    "description": "The emergency controls (docs/operations.md): isolation and the node-wide "
                   "bandwidth cap, both kept across restarts in the data dir's emergency.json.",
    "properties": {
        "isolated": {"type": "boolean",
                     "description": "true: no sessions, no dialing, no accepting; the outbox "
                                    "is kept"},
        "isolated_since": {"type": ["number", "null"]},
        "isolation_reason": {"type": ["string", "null"]},
        "throttle": {"type": "object", "required": ["bytes_per_second"], "properties": {
            "bytes_per_second": {"type": ["integer", "null"],
                                 "description": "the cap on all links together; null: none"},
            "refused_writes": {"type": "integer",
                               "description": "scheduler writes held back by the cap"},
            "admitted_bytes": {"type": "integer"}}}}}
_EMPTY_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False}}}}


def _emergency_paths() -> dict[str, Any]:
    changed = {"allOf": [EMERGENCY, {"type": "object", "required": ["changed"], "properties": {
        "changed": {"type": "boolean", "description": "false: it was so already"}}}]}
    return {
        "/api/node/emergency": {"get": {
            "summary": "Emergency state: isolated or not, the bandwidth cap",
            "operationId": "emergencyState",
            "responses": {"200": _json(EMERGENCY, "The emergency state."), **_errors()}}},
        "/api/node/isolate": {"post": {
            "summary": "Isolate the node: close every session, refuse new ones both ways",
            "description": (
                "Live sessions are closed, nobody is dialled, incoming streams are closed "
                "before any handshake; queued messages stay in the outbox (and new sends "
                "are queued). Kept across restarts until `POST /api/node/resume`. "
                "Event `node_isolated`."),
            "operationId": "isolate",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "reason": {"type": "string", "maxLength": 200,
                               "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
                               "description": "kept in the state and the log"}}}}}},
            "responses": {"200": _json(changed, "Isolated."), **_errors("400", "413")}}},
        "/api/node/resume": {"post": {
            "summary": "End the isolation; the outbox is sent at once",
            "operationId": "resume", "requestBody": _EMPTY_BODY,
            "responses": {"200": _json(changed, "Dialing and accepting again (event "
                                       "`node_resumed`)."), **_errors("400", "413")}}},
        "/api/node/throttle": {"post": {
            "summary": "Cap what the cell scheduler sends, all links together (bytes/s)",
            "description": (
                "`bytes_per_second`: 1024 to 10000000000, or 0 or null to lift the cap. "
                "A Poisson slot over the budget sends nothing, not even cover: while the "
                "cap binds, a link's writes depart from its schedule (docs/operations.md). "
                "Kept across restarts. Event `node_throttled`."),
            "operationId": "throttle",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "required": ["bytes_per_second"], "properties": {
                    # exactly what the node accepts: null or 0 lift the cap
                    "bytes_per_second": {"anyOf": [
                        {"type": "null"}, {"type": "integer", "enum": [0]},
                        {"type": "integer", "minimum": MIN_BYTES_PER_SECOND,
                         "maximum": MAX_BYTES_PER_SECOND}]}}}}}},
            "responses": {"200": _json(EMERGENCY, "The cap is in force (or lifted)."),
                          "409": _json(_ref("Error"), "The node has no cell scheduler."),
                          **_errors("400", "413")}}},
        "/api/node/transports/{transport}/restart": {"post": {
            "summary": "Restart one transport (tor or i2p) without restarting the node",
            "description": (
                "The sessions over it are closed; tor is restarted (connect mode: the "
                "control connection is made again) and the onion published again, or "
                "i2p's SAM sessions are made again. Queued messages are kept and sent "
                "once the transport is ready. Event `transport_restarting`, then tor's "
                "`tor_restarted`."),
            "operationId": "restartTransport",
            "parameters": [{"name": "transport", "in": "path", "required": True,
                            "schema": {"enum": ["tor", "i2p"]}}],
            "requestBody": _EMPTY_BODY,
            "responses": {
                "202": _json({"type": "object", "required": ["transport", "restarting"],
                              "properties": {"transport": {"enum": ["tor", "i2p"]},
                                             "restarting": {"const": True}}},
                             "The restart has begun; watch /api/network/status."),
                "404": _json(_ref("Error"), "No such transport runs on this node."),
                "409": _json(_ref("Error"), "This transport cannot be restarted now."),
                **_errors("400", "413")}}},
    }


BASE64 = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_NO_PUBSUB = _json(_ref("Error"), "The node runs no pub/sub (`pubsub.enabled` is false).")
_NO_STREAMS = _json(_ref("Error"), "The node runs no streams.")
STREAM: dict[str, Any] = {"type": "object", "required": ["id", "peer", "outgoing", "credit", "send_buffered",
                                         "recv_buffered", "room"], "properties": {
    "id": {"type": "string", "description": "the stream's id for /network/streams/{id}"},
    "peer": {"type": "string"},
    "outgoing": {"type": "boolean", "description": "this node opened it"},
    "number": {"type": "integer"},
    "label": {"type": "string"},
    "credit": {"type": "integer", "description": "bytes the peer still lets this node send"},
    "send_buffered": {"type": "integer",
                      "description": "bytes taken from the application, not sent yet"},
    "recv_buffered": {"type": "integer", "description": "bytes received, not read yet"},
    "granted": {"type": "integer", "description": "bytes this node still lets the peer send"},
    "room": {"type": "integer", "description": "bytes a write would take now (0: "
                                               "backpressure)"},
    "bytes_sent": {"type": "integer"}, "bytes_received": {"type": "integer"},
    "high_water": {"type": "integer", "description": "most bytes the stream held at once"},
    "local_closed": {"type": "boolean"}, "remote_closed": {"type": "boolean"},
    "attached": {"type": "boolean", "description": "a WebSocket reads it"}}}
STREAMS = {"type": "object", "required": ["streams", "buffered", "high_water", "limits"],
           "properties": {
               "streams": {"type": "array", "items": STREAM},
               "buffered": {"type": "integer", "description": "bytes all streams hold now"},
               "high_water": {"type": "integer",
                              "description": "most bytes all streams held at once"},
               "limits": {"type": "object", "properties": {
                   "window": {"type": "integer"}, "send_buffer": {"type": "integer"},
                   "chunk": {"type": "integer"}, "max_streams": {"type": "integer"}}}}}
TOPIC_NAME = {"type": "string", "minLength": 1, "maxLength": 128,
              "pattern": "^[^\\x00-\\x1f]+$",
              "description": "at most 128 bytes of UTF-8, no control characters"}
ONION = {"type": "string", "format": "aegis-peer-address", "minLength": 62, "maxLength": 62,
         "pattern": "^[a-zA-Z2-7]{54}[aeimquyAEIMQUY4][dD]\\.(onion|ONION)$",
         "description": "a v3 onion address (checksum and version checked)"}
GROUP_KEY_ID = {"type": ["string", "null"], "pattern": "^[0-9a-f]{16}$",
                "description": "a private topic's current group key id (null: not private)"}
TOPIC_ACTION = {
    "type": "object", "required": ["action", "topic"], "additionalProperties": False,
    "allOf": [
        {"if": {"anyOf": [{"required": ["anonymous"]}, {"required": ["private"]},
                          {"required": ["key"]}]},
         "then": {"properties": {"action": {"const": "subscribe"}}}},
        {"if": {"required": ["peer"]},
         "then": {"properties": {"action": {"const": "invite"}}}},
        {"if": {"properties": {"action": {"const": "invite"}}},
         "then": {"required": ["peer"]}},
        {"if": {"required": ["key"]}, "then": {"properties": {"private": {"const": True}}}}],
    "properties": {
        "action": {"enum": ["subscribe", "unsubscribe", "invite", "rotate"],
                   "description": "invite: send `peer` the private topic's group key, "
                   "sealed to its X-Wing key, over the reliable messaging path (it arrives "
                   "there as a `topic_invitation` event and is accepted by subscribing with "
                   "`private`); rotate: a new group key (older ones kept to read; members "
                   "must be invited again)"},
        "topic": TOPIC_NAME,
        "anonymous": {"type": "boolean", "description": "subscribe: messages carry no "
                      "author and are stemmed before they spread (docs/pubsub.md); default "
                      "false (accepting an invitation: the invitation's kind)"},
        "private": {"type": "boolean", "description": "subscribe: a private topic, with "
                    "this node's key for it, else the key of an invitation received for it, "
                    "else a new key"},
        "key": {"type": "string", "pattern": "^[A-Za-z0-9+/_-]{43}=?$",
                "description": "subscribe: a private topic's group key shared out of band "
                "(32 bytes, base64 or base64url); never shown by the API"},
        "peer": {**ONION, "description": "invite: the invitee's onion address"}}}
CONFIRMATIONS = {"type": "array", "description": "the last 20 messages published here with "
                 "`confirm_from`", "items": {
                     "type": "object", "required": ["id", "subscribers"],
                     "properties": {"id": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
                                    "subscribers": {"type": "object", "additionalProperties": {
                                        "enum": ["pending", "acknowledged", "expired"]}}}}}
TOPICS = {"type": "object", "required": ["topics", "invitations", "broadcast"], "properties": {
    "topics": {"type": "array", "items": {
        "type": "object",
        "required": ["topic", "anonymous", "private", "key_id", "broadcast", "mesh", "peers",
                     "messages_in", "messages_out", "caught_up", "unreadable", "refused",
                     "confirmations"],
        "properties": {
            "topic": {"type": "string"}, "anonymous": {"type": "boolean"},
            "private": {"type": "boolean"}, "key_id": GROUP_KEY_ID,
            "broadcast": {"type": "boolean", "description": "the network-wide broadcast topic"},
            "mesh": {"type": "array", "items": {
                "type": "object", "required": ["peer", "score"],
                "properties": {"peer": {"type": "string"}, "score": {"type": "number"}}}},
            "peers": {"type": "integer", "description": "connected peers subscribed to it"},
            "messages_in": {"type": "integer", "description": "delivered here"},
            "messages_out": {"type": "integer", "description": "published here"},
            "caught_up": {"type": "integer", "description": "of messages_in, delivered by "
                          "catch-up (asked automatically after subscribing or starting)"},
            "unreadable": {"type": "integer", "description": "sealed to a group key not held "
                           "here: relayed, not delivered"},
            "refused": {"type": "integer", "description": "private topic: plaintext, or an "
                        "envelope that did not open; not delivered"},
            "confirmations": CONFIRMATIONS}}},
    "invitations": {"type": "array", "description": "invitations received, not accepted yet",
                    "items": {"type": "object",
                              "required": ["topic", "peer", "anonymous", "key_id", "received"],
                              "properties": {"topic": {"type": "string"},
                                             "peer": {"type": "string"},
                                             "anonymous": {"type": "boolean"},
                                             "key_id": {"type": "string"},
                                             "received": {"type": "integer"}}}},
    "broadcast": {"type": ["string", "null"], "description": "the broadcast topic's name "
                  "(null: pubsub.broadcast is off)"}}}
_NO_DHT = _json(_ref("Error"), "The node runs no DHT (`dht.enabled` is false).")
DHT_RECORD = {"type": "object", "required": ["key", "name", "value", "sequence", "expires",
                                             "publisher"],
              "properties": {"key": {"type": "string"}, "name": {"type": "string"},
                             "value": {"type": "string", "description": "base64"},
                             "sequence": {"type": "integer"}, "expires": {"type": "integer"},
                             "publisher": {"type": "string"}}}
DHT_STATS = {"type": "object", "required": ["routing_table", "records", "lookups", "contacts"],
             "properties": {
                 "enabled": {"type": "boolean"}, "node_id": {"type": "string"},
                 "parameters": {"type": "object"},
                 "routing_table": {"type": "object", "properties": {
                     "contacts": {"type": "integer"},
                     "buckets": {"type": "array", "items": {"type": "object"}}}},
                 "records": {"type": "object", "properties": {
                     "held": {"type": "integer"}, "own_key": {"type": ["string", "null"]},
                     "own_sequence": {"type": ["integer", "null"]},
                     "own_stored_at": {"type": "integer"}}},
                 "lookups": {"type": "object", "properties": {
                     "ok": {"type": "integer"}, "failed": {"type": "integer"},
                     "last_seconds": {"type": ["number", "null"]},
                     "recent": {"type": "array", "items": {"type": "object"}}}},
                 "requests_answered": {"type": "integer"}, "rpc_failures": {"type": "integer"},
                 "rpc_seconds": {
                     "type": "object",
                     "description": "round trips of answered DHT requests this node sent: "
                                    "warm over a session already open, cold when the pool "
                                    "dialled first; p50, p95 and the log-normal fit (mean, "
                                    "sd of ln seconds) over the newest 512 samples",
                     "properties": {kind: {"type": "object", "properties": {
                         "count": {"type": "integer"}, "p50": {"type": ["number", "null"]},
                         "p95": {"type": ["number", "null"]},
                         "ln_mean": {"type": ["number", "null"]},
                         "ln_sd": {"type": ["number", "null"]},
                         "samples": {"type": "array", "items": {"type": "number"}}}}
                         for kind in ("warm", "cold")}},
                 "refused": {"type": "object", "additionalProperties": {"type": "integer"}},
                 "misbehaviour": {
                     "type": "object", "additionalProperties": {"type": "integer"},
                     "description": "answers held against contacts' reputation, by behaviour "
                                    "(docs/reputation.md)"},
                 "evicted": {"type": "integer",
                             "description": "contacts evicted for reputation below 0.2"},
                 "paths": {"type": "object", "description": "lookup queries sent per network "
                           "(disjoint paths spread over Tor and I2P)", "properties": {
                               "tor": {"type": "integer"}, "i2p": {"type": "integer"}}},
                 "exchange": {
                     "type": "object", "description": "peer exchange of signed identity "
                     "records (docs/dht.md): offers this node sent and how they were taken, "
                     "offers it received, records accepted and refused (by reason)",
                     "properties": {**{n: {"type": "integer"} for n in (
                         "offers_sent", "records_offered", "offers_taken", "records_taken",
                         "offers_refused", "offers_received", "records_accepted",
                         "records_refused", "offers_over_rate", "i2p_learnt")},
                         "refused": {"type": "object",
                                     "additionalProperties": {"type": "integer"}}}},
                 "candidates": {
                     "type": "object", "description": "contacts waiting for a reachability "
                     "check before they enter the routing table, and the checks' outcomes",
                     "properties": {n: {"type": "integer"} for n in (
                         "waiting", "checking", "queued", "trusted", "checked_by_lookup",
                         "unreachable", "dropped", "max", "checks_per_tick")}},
                 "revoked": {"type": "boolean",
                             "description": "this node publishes its own revocation"},
                 "mailbox": {"type": "object", "description": "offline mailboxes", "properties": {
                     "letters_held": {"type": "integer",
                                      "description": "letters held for other nodes"},
                     "bytes_held": {"type": "integer"},
                     "accepted": {"type": "integer",
                                  "description": "deposits taken to hold for others"},
                     "deposited": {"type": "integer",
                                   "description": "messages this node left in mailboxes"},
                     "collected": {"type": "integer",
                                   "description": "letters collected from this node's mailbox"},
                     "refused": {"type": "object", "additionalProperties": {"type": "integer"},
                                 "description": "deposits and collects refused, by reason"}}},
                 "contacts": {"type": "array", "items": {"type": "string"}}}}


PEER_ID = {"type": "string", "description": "v3 .onion address (or .b32.i2p for I2P-only peers)",
           "examples": ["vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion"]}
MAX_SINCE = 10 ** 18 - 1  # ``?since=``: at most 18 digits

#: What a body's address field accepts: the two canonical forms (upper case is
#: accepted too and folded). The pattern cannot express the onion's checksum and
#: version byte: a 56-character name that fails them is a 400 naming the field.
ADDRESS = {"type": "string", "format": "aegis-peer-address", "minLength": 60,
           "maxLength": 62,
           "pattern": ("^([a-zA-Z2-7]{54}[aeimquyAEIMQUY4][dD]\\.(onion|ONION)"
                       "|[a-zA-Z2-7]{51}[aqAQ]\\.(b32\\.i2p|B32\\.I2P))$"),
           "description": "the canonical `<56 base32>.onion` (checksum and version "
                          "checked) or `<52 base32>.b32.i2p`",
           "examples": ["vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion"]}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "aegis-hidden management API",
        "version": _version,
        "description": (
            "Manage a node's peers, send messages and follow its events. Listens on "
            "127.0.0.1 (and optionally a client-authorized onion). Every request, and the "
            "WebSocket upgrade at /network, needs `Authorization: Bearer <token>` (the "
            "token is in the data dir, see `aegis-hidden api token`)."),
    },
    "servers": [{"url": "http://127.0.0.1:8470"}],
    "security": [{"bearer": []}],
    "paths": {
        "/api/network/peers": {
            "get": {
                "summary": "List known peers",
                "operationId": "listPeers",
                "description": (
                    "One page of peers in address order. Pass the reply's `next_cursor` as "
                    "`cursor` for the next page; it is null on the last page. `status` and "
                    "`transport` filter (`tor`: peers with an onion address, `i2p`: peers "
                    "with an I2P address)."),
                "parameters": [
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 500}},
                    {"name": "cursor", "in": "query", "required": False,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 100}},
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"enum": ["new", "connected", "disconnected", "blocked"]}},
                    {"name": "transport", "in": "query", "required": False,
                     "schema": {"enum": ["tor", "i2p"]}}],
                "responses": {"200": _json({"type": "object",
                                            "required": ["peers", "next_cursor"],
                                            "properties": {
                                                "peers": {"type": "array",
                                                          "items": _ref("Peer")},
                                                "next_cursor": {"type": ["string", "null"]}}},
                                           "A page of peers."),
                              **_errors("400")},
            },
            "post": {
                "summary": "Add, remove, block or unblock a peer",
                "operationId": "changePeer",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("PeerAction")}}},
                "responses": {"200": _json({"type": "object", "properties": {
                    "ok": {"const": True}, "action": {"type": "string"},
                    "peer": _ref("Peer")}}, "The peer after the change."),
                    **_errors("400", "404", "413")},
            },
        },
        "/api/network/peers/{peer_id}": {
            "get": {
                "summary": "One peer",
                "operationId": "getPeer",
                "parameters": [{"name": "peer_id", "in": "path", "required": True,
                                "schema": PEER_ID}],
                "responses": {"200": _json(_ref("Peer"), "The peer."), **_errors("404")},
            },
        },
        "/api/network/send": {
            "post": {
                "summary": "Send a message reliably (outbox, acknowledgement, retries), or "
                           "publish it on a topic",
                "description": (
                    "A `target` of `topic:NAME` publishes the message on the topic "
                    "(docs/pubsub.md): no outbox, no acknowledgement; `state` is "
                    "`published` and `id` is the topic message's id (40 hex digits). "
                    "Subscribers get it as a `message_received` event with `topic`. "
                    "`confirm_from` names subscribers asked to confirm delivery: each "
                    "answer (or its absence after 120 s) is a `delivery_state` event with "
                    "`id`, `topic`, `subscriber` and `state` (`acknowledged`, `expired`), "
                    "and is listed under the topic in GET /api/network/topics. On a "
                    "private topic the message is sealed to the group key; on the "
                    "broadcast topic it is rate-limited (`pubsub.broadcast_rate`)."),
                "operationId": "send",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("SendRequest")}}},
                "responses": {
                    "202": _json(_ref("Delivery"), "Stored in the outbox; `state` is where "
                                 "delivery stands now. Follow `delivery_state` events."),
                    "409": _json(_ref("Error"), "The target is blacklisted (a topic: the "
                                 "pub/sub layer refused to publish on it, or a subscriber "
                                 "in `confirm_from` has no identity record here)."),
                    "429": {**_json(_ref("Error"), "A broadcast over this node's "
                                    "`pubsub.broadcast_rate`: try again after "
                                    "`Retry-After` seconds."),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
                    "503": {**_json(_ref("Error"), "Backpressure: the session to the target "
                                    "still holds more unsent cells than it sends in an ack "
                                    "timeout. Nothing was stored; try again after "
                                    "`Retry-After` seconds. A topic: the node runs no "
                                    "pub/sub (`pubsub.enabled` false)."),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
                    **_errors("400", "404", "413")},
            },
        },
        "/api/network/messages/{message_id}": {
            "get": {
                "summary": "Delivery state of a message sent by this node",
                "operationId": "getMessage",
                "parameters": [{"name": "message_id", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                "responses": {"200": _json(_ref("Delivery"), "The message's state."),
                              **_errors("404")},
            },
        },
        "/api/network/status": {
            "get": {
                "summary": "Identity, transports (Tor/I2P state, bootstrap progress), counts",
                "operationId": "status",
                "responses": {"200": _json(_ref("Status"), "The node's status."),
                              **_errors()},
            },
        },
        "/api/network/audit": {
            "post": {
                "summary": "Record the node's own cell traces for N seconds, then audit them",
                "description": (
                    "Every cell the node's sessions send or receive for `seconds` is "
                    "recorded in memory as the mixing layer's trace sink writes it (times "
                    "since the start, salted link ids, direction, size, kind), then judged "
                    "by the audit engine against the node's mixing profile, with the default "
                    "thresholds (docs/audit.md). "
                    "One recording at a time; the last 8 audits are kept. Poll "
                    "`GET /api/network/audit/{id}` until `state` is `done` or `failed`."),
                "operationId": "startAudit",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("AuditRequest")}}},
                "responses": {
                    "202": _json(_ref("Audit"), "Recording; `id` names the audit."),
                    "409": _json(_ref("Error"), "Another audit is recording, or the node "
                                 "has no mixing layer (no cell traces to record)."),
                    **_errors("400", "413")},
            },
        },
        "/api/network/audit/{audit_id}": {
            "get": {
                "summary": "An audit's state, and its JSON report once done",
                "operationId": "getAudit",
                "parameters": [{"name": "audit_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Audit"), "The audit."),
                              **_errors("404")},
            },
        },
        "/api/network/audit/{audit_id}/report.html": {
            "get": {
                "summary": "An audit's report as one self-contained HTML page",
                "operationId": "getAuditReport",
                "parameters": [{"name": "audit_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The report (plots inline; no "
                                      "network needed to read it).",
                                      "content": {"text/html": {"schema": {
                                          "type": "string"}}}},
                              "409": _json(_ref("Error"), "The audit is not done (still "
                                           "recording or analysing, or failed)."),
                              **_errors("404")},
            },
        },
        **_emergency_paths(),
        "/api/node/wipe": {
            "post": {
                "summary": "Emergency wipe: destroy keys, logs and database, stop the node",
                "description": (
                    "Overwrites and deletes the database key, the identity's key files, "
                    "the API token and the logs in the data dir, deletes the encrypted "
                    "database, then stops the node. Cannot be undone. `confirm` must be "
                    "`wipe` followed by a space and this node's onion address."),
                "operationId": "wipe",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["confirm"],
                               "additionalProperties": False,
                               "properties": {"confirm": {
                                   "type": "string",
                                   "pattern": "^wipe [a-z2-7]{56}\\.onion$"}}}}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["ok"], "properties": {
                        "ok": {"const": True}, "overwritten": {"type": "integer"},
                        "deleted": {"type": "integer"}, "failed": {"type": "integer"}}},
                        "Wiped; the node stops a moment later."),
                    "409": _json(_ref("Error"), "`confirm` names another node: nothing "
                                 "was changed."),
                    **_errors("400", "413")},
            },
        },
        "/api/network/topics": {
            "get": {
                "summary": "Subscribed topics: kind, mesh peers and scores, messages in/out",
                "operationId": "listTopics",
                "responses": {"200": _json(TOPICS, "The topics this node subscribes to."),
                              "503": _NO_PUBSUB, **_errors()},
            },
            "post": {
                "summary": "Subscribe to a topic (normal, anonymous, private) or "
                           "unsubscribe; invite a peer to a private topic; rotate its key",
                "operationId": "changeTopic",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": TOPIC_ACTION}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["ok", "action", "topic",
                                                                 "changed"],
                                  "properties": {"ok": {"const": True},
                                                 "action": {"enum": ["subscribe",
                                                                     "unsubscribe",
                                                                     "rotate"]},
                                                 "topic": {"type": "string"},
                                                 "anonymous": {"type": "boolean"},
                                                 "private": {"type": "boolean"},
                                                 "key_id": GROUP_KEY_ID,
                                                 "accepted": {"type": "boolean",
                                                              "description": "an invitation "
                                                              "was accepted"},
                                                 "created": {"type": "boolean",
                                                             "description": "a new key was "
                                                             "made"},
                                                 "changed": {"type": "boolean"}}},
                                 "Done; `changed` false: not subscribed (unsubscribe)."),
                    "202": _json({"type": "object", "required": ["ok", "action", "topic",
                                                                 "peer", "id", "state"],
                                  "properties": {"ok": {"const": True},
                                                 "action": {"const": "invite"},
                                                 "topic": {"type": "string"},
                                                 "peer": {"type": "string"},
                                                 "changed": {"type": "boolean"},
                                                 "id": {"type": "string",
                                                        "pattern": "^[0-9a-f]{32}$"},
                                                 "state": {"type": "string"}}},
                                 "invite: the invitation is in the outbox; follow "
                                 "`delivery_state` events of `id`."),
                    "404": _json(_ref("Error"), "invite: unknown peer (add it first)."),
                    "409": _json(_ref("Error"), "Subscribed already with the other kind, "
                                 "`pubsub.max_topics` reached, not a private topic here "
                                 "(invite, rotate), no identity record of the invitee, or "
                                 "the invitee is blacklisted."),
                    "503": _NO_PUBSUB, **_errors("400", "413")},
            },
        },
        "/api/network/streams": {
            "get": {
                "summary": "Open byte streams with their backpressure (credit, buffered bytes)",
                "operationId": "listStreams",
                "responses": {"200": _json(STREAMS, "Every open stream."),
                              "503": _NO_STREAMS, **_errors()},
            },
            "post": {
                "summary": "Open a byte stream to a peer (the bytes go over "
                           "/network/streams/{id})",
                "operationId": "openStream",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["peer"],
                               "additionalProperties": False, "properties": {
                                   "peer": ONION,
                                   "label": {"type": "string", "maxLength": 200}}}}}},
                "responses": {
                    "201": _json({**STREAM, "properties": {
                        **STREAM["properties"], "websocket": {"type": "string"}}},
                        "Opened; connect to `websocket` for its bytes."),
                    "404": _json(_ref("Error"), "Unknown peer (add it first)."),
                    "409": _json(_ref("Error"), "The peer is blocked."),
                    "429": _json(_ref("Error"), "The peer has as many open streams as "
                                 "allowed."),
                    "502": _json(_ref("Error"), "The peer could not be reached."),
                    "503": _NO_STREAMS, **_errors("400", "413")},
            },
        },
        "/api/network/streams/{id}": {
            "get": {
                "summary": "One open stream",
                "operationId": "getStream",
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(STREAM, "The stream."),
                              "404": _json(_ref("Error"), "No such stream (or it is over)."),
                              "503": _NO_STREAMS, **_errors()},
            },
        },
        "/api/network/dht": {
            "get": {
                "summary": "The DHT: routing table, records held, lookups ok/failed, contacts",
                "operationId": "dhtStats",
                "responses": {"200": _json(DHT_STATS, "The DHT's state and counters."),
                              "503": _NO_DHT, **_errors()},
            },
        },
        "/api/network/dht/records/{key}": {
            "get": {
                "summary": "The DHT record at a key (held here, else looked up in the network)",
                "description": (
                    "`key` is 64 hex digits, or a peer's .onion address for the key of its "
                    "identity record. Signatures and expiry were checked before it was kept."),
                "operationId": "dhtRecord",
                "parameters": [{"name": "key", "in": "path", "required": True, "schema": {
                    "anyOf": [{"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                              {"type": "string", "format": "aegis-peer-address",
                               "description": "a peer's .onion (a .b32.i2p address has no "
                                              "identity record key: 404)"}]}},
                               {"name": "source", "in": "query", "required": False,
                                "schema": {"enum": ["any", "network"], "default": "any"},
                                "description": "`network`: look it up even if held here."}],
                "responses": {"200": _json(DHT_RECORD, "The newest record found."),
                              "503": _NO_DHT, **_errors("400", "404")},
            },
        },
        "/api/network/dht/records": {
            "post": {
                "summary": "Sign a record of this node and STORE it at the k closest nodes",
                "operationId": "dhtPut",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["name"],
                               "additionalProperties": False,
                               "oneOf": [{"required": ["value"]},
                                         {"required": ["value_base64"]}],
                               "properties": {
                                   "name": {"type": "string", "pattern": "^[ -~]{1,64}$",
                                            "not": {"const": "identity"},
                                            "description": "Printable ASCII; not `identity` "
                                                           "(the node's own identity record)."},
                                   "value": {"type": "string", "maxLength": 8192,
                                             "description": "UTF-8 text, at most 8192 bytes "
                                                            "encoded."},
                                   "value_base64": {"type": "string", "maxLength": 10924,
                                                    "pattern": BASE64},
                                   "lifetime": {"type": "number", "minimum": 60,
                                                "maximum": 604800, "default": 3600}}}}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["stored_at", "key"],
                                  "properties": {"stored_at": {"type": "integer"},
                                                 "key": {"type": ["string", "null"]}}},
                                 "How many of the closest nodes took it, and its key."),
                    "503": _NO_DHT, **_errors("400", "413")},
            },
        },
        "/api/network/dht/crawl": {
            "post": {
                "summary": "Walk the DHT from this node's contacts; count reachable nodes",
                "operationId": "dhtCrawl",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "additionalProperties": False, "properties": {
                        "max_nodes": {"type": "integer", "minimum": 1, "maximum": 100000,
                                      "default": 1000},
                        "parallel": {"type": "integer", "minimum": 1, "maximum": 64,
                                     "default": 8}}}}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["reachable", "unreachable",
                                                                 "seen", "nodes"],
                                  "properties": {
                                      "reachable": {"type": "integer"},
                                      "unreachable": {"type": "integer"},
                                      "seen": {"type": "integer"},
                                      "not_asked": {"type": "integer"},
                                      "seconds": {"type": "number"},
                                      "nodes": {"type": "array", "items": {"type": "string"}}}},
                                 "Nodes that answered (onion addresses), and counts."),
                    "503": _NO_DHT, **_errors("400", "413")},
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text format 0.0.4",
                                      "content": {"text/plain": {"schema": {
                                          "type": "string"}}}},
                              **_errors()},
            },
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_errors()},
            },
        },
        "/network": {
            "get": {
                "summary": "WebSocket of live events (JSON text frames with a `type` field)",
                "description": (
                    "Upgrade to a WebSocket. The bearer token goes in the Authorization "
                    "header, or (for browsers, which cannot set headers) in the "
                    "`access_token` query parameter. Events: `hello`, `peer_connected`, "
                    "`peer_disconnected`, `message_received`, `delivery_state`, "
                    "`network_error`, `peer_changed`, `dht_lookup_failed`, `dht_record_refused`, "
                    "`mailbox_deposited`, `mailbox_collected`, `topic_invitation`, "
                    "`stream_opened`, `stream_closed`, `stream_reset`, and "
                    "what other layers emit "
                    "(`tor_restarted`...). Every event has `seq`; one that names a peer has "
                    "it as `peer` and `peer_id`. `?since=SEQ` first replays the kept events "
                    "after SEQ (the last 1000, at most 32 MiB). Send `{\"type\": \"ping\"}` "
                    "to get a `pong`. A GET without `Upgrade: websocket` is 426."),
                "operationId": "events",
                "parameters": [{"name": "Upgrade", "in": "header", "required": True,
                                "schema": {"const": "websocket"}},
                               {"name": "Connection", "in": "header", "required": True,
                                "schema": {"const": "Upgrade"}},
                               {"name": "Sec-WebSocket-Version", "in": "header",
                                "required": True, "schema": {"const": "13"}},
                               {"name": "Sec-WebSocket-Key", "in": "header", "required": True,
                                "schema": {"type": "string",
                                           "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"}},
                               {"name": "access_token", "in": "query", "required": False,
                                "schema": {"type": "string"}},
                               {"name": "since", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 0,
                                           "maximum": MAX_SINCE}}],
                "responses": {"101": {"description": "Switching to the WebSocket protocol"},
                              "400": _json(_ref("Error"), "`since` is not a non-negative "
                                           "integer."),
                              "426": _json(_ref("Error"), "Not a WebSocket upgrade."),
                              **_errors()},
            },
        },
        "/network/streams/{id}": {
            "get": {
                "summary": "WebSocket of one stream's bytes (binary messages both ways)",
                "description": (
                    "Upgrade to a WebSocket (token as for /network). Binary messages from "
                    "the client are written to the stream; binary messages to the client "
                    "are the peer's bytes. Text messages are JSON: to the node "
                    "`{\"type\": \"close\"}` (no more bytes) or `{\"type\": \"reset\"}`; "
                    "from the node `open` (the stream), `eof` (the peer closed and all was "
                    "read), then `closed` or `reset` (with `error`). Backpressure: when the "
                    "stream takes no more, the node stops reading the socket; it reads the "
                    "stream only while the socket has less than 256 KiB unsent. Incoming "
                    "streams are announced by `stream_opened` events on /network."),
                "operationId": "streamSocket",
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               {"name": "Upgrade", "in": "header", "required": True,
                                "schema": {"const": "websocket"}},
                               {"name": "Connection", "in": "header", "required": True,
                                "schema": {"const": "Upgrade"}},
                               {"name": "Sec-WebSocket-Version", "in": "header",
                                "required": True, "schema": {"const": "13"}},
                               {"name": "Sec-WebSocket-Key", "in": "header", "required": True,
                                "schema": {"type": "string",
                                           "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"}},
                               {"name": "access_token", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"101": {"description": "Switching to the WebSocket protocol"},
                              "404": _json(_ref("Error"), "No such stream (or it is over)."),
                              "409": _json(_ref("Error"), "The stream has a socket already."),
                              "426": _json(_ref("Error"), "Not a WebSocket upgrade."),
                              **_errors()},
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string", "description": "what was wrong, for a person"},
                "field": {"type": ["string", "null"],
                          "description": "the body field at fault, when there is one"}}},
            "Peer": {"type": "object",
                     "required": ["id", "address", "status", "last_seen", "reputation"],
                     "properties": {
                         "id": PEER_ID,
                         "address": {"type": "string",
                                     "description": "where the peer is dialed: its I2P "
                                                    "destination if it has one, else its "
                                                    "onion address"},
                         "status": {"enum": ["new", "connected", "disconnected", "blocked"]},
                         "last_seen": {"type": ["number", "null"],
                                       "description": "unix time of the last session change"},
                         "reputation": {"type": "number", "minimum": 0, "maximum": 1},
                         "onion": {"type": ["string", "null"]},
                         "i2p_destination": {"type": ["string", "null"]},
                         "blocked": {"type": "object", "properties": {
                             "reason": {"type": "string"},
                             "until": {"type": ["number", "null"]}}}}},
            "PeerAction": {
                "type": "object", "required": ["action"], "additionalProperties": False,
                "oneOf": [{"required": ["peer_address"], "not": {"required": ["peer_id"]}},
                          {"required": ["peer_id"], "not": {"required": ["peer_address"]}}],
                # keep_messages: true only with remove
                "if": {"required": ["keep_messages"],
                       "properties": {"keep_messages": {"const": True}}},
                "then": {"properties": {"action": {"const": "remove"}}},
                "properties": {
                    "action": {"enum": ["add", "remove", "block", "unblock"]},
                    "peer_address": {**ADDRESS,
                                     "description": "the peer's .onion (or .b32.i2p) address"},
                    "peer_id": {**ADDRESS,
                                "description": "same as peer_address (give one of the two)"},
                    "i2p_destination": {
                        "type": "string", "minLength": 60, "maxLength": 60,
                        "pattern": "^[a-zA-Z2-7]{51}[aqAQ]\\.(b32\\.i2p|B32\\.I2P)$",
                        "description": "add: the peer's .b32.i2p address for failover "
                                       "(leave it out rather than null)"},
                    "keep_messages": {
                        "type": "boolean",
                        "description": "remove: keep the peer's queued messages parked (no "
                                       "retries) until it is added again; default false: "
                                       "they expire at once (delivery_state expired)"},
                    "reason": {"type": "string", "minLength": 1, "maxLength": 500,
                               "description": "block: why (kept with the blacklist entry)"},
                    "duration": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                 "maximum": 3153600000,
                                 "description": "block: seconds (at most 100 years); null "
                                                "or absent = for ever"}}},
            "SendRequest": {
                "type": "object", "required": ["target", "message"],
                "additionalProperties": False,
                "if": {"required": ["confirm_from"]},
                "then": {"properties": {"target": {"type": "string",
                                                   "pattern": "^topic:"}}},
                "properties": {
                    "target": {"anyOf": [
                        {**ADDRESS, "description": "the peer (added first)"},
                        {"type": "string", "pattern": "^topic:[^\\x00-\\x1f]{1,128}$",
                         "description": "`topic:NAME`: publish on the topic"}]},
                    "confirm_from": {"type": "array", "minItems": 1, "maxItems": 16,
                                     "items": ONION,
                                     "description": "topic targets only: onions of "
                                     "subscribers asked to confirm delivery (their identity "
                                     "records must be known here)"},
                    "message": {"type": "object", "required": ["type"],
                                "additionalProperties": False,
                                "properties": {"type": {"type": "string", "minLength": 1,
                                                        "maxLength": 200},
                                               "data": {}}}}},
            "AuditRequest": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "seconds": {"type": "integer", "minimum": 1, "maximum": 600,
                                "default": 60, "description": "how long to record"}}},
            "Audit": {
                "type": "object", "required": ["id", "state", "seconds", "cells", "truncated"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                    "state": {"enum": ["recording", "analysing", "done", "failed"]},
                    "seconds": {"type": "integer"},
                    "cells": {"type": "integer", "description": "cells recorded so far"},
                    "truncated": {"type": "boolean", "description": "the recording "
                                  "stopped at its bound of 500,000 cells"},
                    "report": {"type": "object", "description": "the JSON report (`passed`, "
                               "`failed`, `checks`: every figure and threshold), when done"},
                    "report_html": {"type": "string", "description": "the HTML report's "
                                    "path, when done"},
                    "error": {"type": "string", "description": "why it failed"}}},
            "Delivery": {"type": "object", "required": ["id", "state"], "properties": {
                "id": {"type": "string", "pattern": "^([0-9a-f]{32}|[0-9a-f]{40})$",
                       "description": "40 hex digits: a topic message"},
                "target": {"type": "string"},
                "state": {"enum": ["queued", "sent", "acknowledged", "expired",
                                   "published"]}}},
            "Status": {"type": "object", "properties": {
                "identity": {"type": "object"},
                "transports": {
                    "type": "object", "additionalProperties": {"type": "object"},
                    "description": "each provider's state, by name (`tor`, `i2p`): `ready`, "
                                   "and `bootstrap` (`progress` 0-100, `tag`, `summary`; "
                                   "tor: tor's own, null until it reports; i2p: `step` "
                                   "of `steps` on the way to a SAM session)"},
                "session_layer": {"type": "boolean"},
                "counts": {"type": "object", "properties": {
                    "peers": {"type": "integer"}, "connected": {"type": "integer"},
                    "blacklisted": {"type": "integer"}, "outbox": {"type": "integer"}}},
                "sessions": {"type": "array", "description": "the live peer sessions",
                             "items": {"type": "object", "required": ["peer", "transport"],
                                       "properties": {
                                           "peer": PEER_ID,
                                           "transport": {"type": "string", "examples": [
                                               "tor", "i2p"]}}}},
                "emergency": EMERGENCY,
                "dht": {"type": "object", "required": ["running"], "properties": {
                    "running": {"type": "boolean",
                                "description": "false: /api/network/dht answers 503"}}},
                # what the node runs (docs/mixing.md): the link schedule, loop
                # cover through peers (λ_L), the mix pool for relayed traffic (μ)
                "mixing": {"type": "object", "properties": {
                    "profile": {"enum": ["off", "low-data", "balanced", "paranoid"]},
                    "cover_traffic": {"type": "boolean"}, "cover_rate": {"type": "number"},
                    "constant_rate": {"type": "boolean"},
                    "burst": {"type": ["integer", "null"]},
                    "bytes_per_second_per_link": {"type": "number"},
                    "loop_cover": {"type": "boolean"}, "loop_rate": {"type": "number"},
                    "mix_pool": {"type": "boolean"}, "mix_rate": {"type": "number"},
                    "batch_interval": {"type": "number"},
                    "batch_size": {"type": ["integer", "null"]},
                    "trace": {"type": "boolean"}}}}},
        },
    },
}


def openapi_json() -> str:
    """The document as served and as kept in docs/ (stable key order, trailing newline)."""
    return json.dumps(DOCUMENT, indent=2, sort_keys=True) + "\n"
