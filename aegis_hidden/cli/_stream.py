"""``aegis-hidden stream send|receive|list``: byte streams of the running node, through its API.

``send PEER FILE`` opens a stream to PEER (``POST /api/network/streams``),
writes FILE over the stream's WebSocket (``/network/streams/{id}``) as fast
as the stream takes it (the node stops reading the socket while the peer's
credit is used up), closes its side and waits until the receiver has read
everything and closed. ``receive FILE`` waits for a stream from a peer (or
takes ``--stream ID``), writes what arrives to FILE and closes at the end.
Both print the bytes, seconds and throughput, and the SHA-256 of the data.
``list`` shows the open streams with their credit and buffered bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from ._api import ApiClient
from ._common import CLIError, add_node_args

CHUNK = 64 * 1024
#: the most bytes the sender leaves unsent in its socket before it waits
SOCKET_BACKLOG = 512 * 1024


def _client_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")


def register(sub: Any) -> None:
    p = sub.add_parser("stream", help="byte streams to a peer: send a file, receive to a file")
    ssub = p.add_subparsers(dest="stream_command", metavar="ACTION")
    ssub.required = True
    s = ssub.add_parser("send", help="send FILE to PEER over a new stream")
    s.add_argument("peer", help="the peer's onion address")
    s.add_argument("file", type=Path)
    s.add_argument("--stream", help="send over this stream, opened already (to PEER), "
                                    "instead of a new one")
    s.add_argument("--label", default="", help="what the stream is (at most 200 characters; "
                                               "default: the file's name)")
    _client_args(s)
    s.set_defaults(func=_send)
    r = ssub.add_parser("receive", help="write the next incoming stream to FILE")
    r.add_argument("file", type=Path)
    r.add_argument("--stream", help="the incoming stream's id (default: the first one "
                                    "that no socket reads yet)")
    r.add_argument("--from", dest="peer", help="only a stream from this peer")
    r.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for the stream and its end (default 600)")
    _client_args(r)
    r.set_defaults(func=_receive)
    lst = ssub.add_parser("list", help="open streams: credit, buffered bytes, high-water")
    _client_args(lst)
    lst.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    print(json.dumps(ApiClient.from_args(args).ok("GET", "/api/network/streams"), indent=2))
    return 0


def _send(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CLIError(f"{args.file}: not a file")
    client = ApiClient.from_args(args)
    label = args.label or args.file.name[:200]
    if args.stream is None:
        opened = client.ok("POST", "/api/network/streams", {"peer": args.peer, "label": label})
        path = opened["websocket"]
    else:
        stream = client.ok("GET", f"/api/network/streams/{args.stream}")
        if stream["peer"] != args.peer:
            raise CLIError(f"stream {args.stream} is with {stream['peer']}, not {args.peer}")
        path = f"/network/streams/{args.stream}"
    with args.file.open("rb") as f:
        result = _run_socket(client, path, source=f, sink=None, timeout=None)
    _report("sent", result)
    return 0


def _receive(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    deadline = time.monotonic() + args.timeout
    sid = args.stream
    while sid is None:
        for s in client.ok("GET", "/api/network/streams")["streams"]:
            if not s["outgoing"] and not s["attached"] and args.peer in (None, s["peer"]):
                sid = s["id"]
                break
        else:
            if time.monotonic() > deadline:
                raise CLIError("no incoming stream before the timeout")
            time.sleep(0.5)
    with args.file.open("wb") as f:
        result = _run_socket(client, f"/network/streams/{sid}", source=None, sink=f,
                             timeout=max(1.0, deadline - time.monotonic()))
    _report("received", result)
    return 0


def _report(what: str, result: dict[str, Any]) -> None:
    seconds = max(result["seconds"], 1e-9)
    print(json.dumps({what: result["bytes"], "seconds": round(seconds, 2),
                      "mbit_per_s": round(result["bytes"] * 8 / seconds / 1e6, 3),
                      "sha256": result["sha256"], "end": result["end"]}))
    if result["end"] != "closed":
        raise CLIError(f"the stream did not end cleanly: {result['end']}")


def _run_socket(client: ApiClient, path: str, *, source: BinaryIO | None,
                sink: BinaryIO | None, timeout: float | None) -> dict[str, Any]:
    """Drive one stream's WebSocket on the reactor until the stream ends."""
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
    from twisted.internet import reactor as _reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint

    from ..addresses import split_host_port

    reactor: Any = _reactor
    result: dict[str, Any] = {"bytes": 0, "seconds": 0.0, "sha256": "", "end": "lost"}
    digest = hashlib.sha256()
    started = time.monotonic()

    class Socket(WebSocketClientProtocol):
        _closing = False

        def onOpen(self) -> None:
            if source is not None:
                self._pump()

        def _pump(self) -> None:
            assert source is not None
            transport: Any = self.transport
            while not self._closing:
                unsent = len(getattr(transport, "dataBuffer", b"")) + \
                    getattr(transport, "_tempDataLen", 0)
                if unsent >= SOCKET_BACKLOG:
                    reactor.callLater(0.01, self._pump)
                    return
                data = source.read(CHUNK)
                if not data:
                    self._closing = True
                    self.sendMessage(b'{"type": "close"}')
                    return
                digest.update(data)
                result["bytes"] += len(data)
                self.sendMessage(data, isBinary=True)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if isBinary:
                if sink is not None:
                    sink.write(payload)
                    digest.update(payload)
                    result["bytes"] += len(payload)
                return
            msg = json.loads(payload)
            kind = msg.get("type")
            if kind == "eof":
                self.sendMessage(b'{"type": "close"}')
            elif kind == "closed":
                result["end"] = "closed"
            elif kind == "reset":
                result["end"] = f"reset: {msg.get('error')}"
            elif kind == "error":
                print(f"aegis-hidden: node said: {msg.get('error')}", file=sys.stderr)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            result["seconds"] = time.monotonic() - started
            if result["end"] == "lost" and reason:
                result["end"] = f"lost: {reason}"
            if reactor.running:
                reactor.stop()

    address = client.listen_address
    if address.startswith("unix:"):
        endpoint: Any = UNIXClientEndpoint(reactor, address[5:])
        url = f"ws://localhost{path}"
    else:
        host, port = split_host_port(address, allow_unix=False)
        endpoint = TCP4ClientEndpoint(reactor, host, port)
        url = f"ws://{host}:{port}{path}"
    factory = WebSocketClientFactory(url, headers={"Authorization": f"Bearer {client.token}"})
    factory.protocol = Socket
    failure: list[str] = []

    def failed(f: Any) -> None:
        failure.append(f.getErrorMessage())
        reactor.stop()

    endpoint.connect(factory).addErrback(failed)
    if timeout is not None:
        reactor.callLater(timeout, lambda: (result.update(end="timeout"), reactor.stop()))
    reactor.run(installSignalHandlers=False)
    if failure:
        raise CLIError(f"cannot open the stream's socket at {address}: {failure[0]}")
    result["sha256"] = digest.hexdigest()
    if not result["seconds"]:
        result["seconds"] = time.monotonic() - started
    return result
