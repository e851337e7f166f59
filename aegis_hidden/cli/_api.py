"""``aegis-hidden api token|client-key|openapi``, and the HTTP client the CLI shares.

The client talks to a running node's API on ``api.listen_address`` (TCP on
loopback or a unix socket) with the bearer token from the data dir.

The client side (:class:`ApiClient`, used by ``status``, ``peers``, ``stream``...)
imports nothing of the API server: ``aegis_hidden.api`` (twisted.web, autobahn, the
OpenAPI document) costs about half a CPU second to import, so only the ``api``
sub-commands below import it, when they run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
from pathlib import Path
from typing import Any

from .._secrets import TokenFileError, read_token
from ..addresses import split_host_port
from ..config import Config
from ._common import CLIError, add_node_args, node_config


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ApiClient:
    """Blocking JSON calls to the node's API (a CLI is an entry point: it may block)."""

    def __init__(self, listen_address: str, token: str, timeout: float = 30.0) -> None:
        self.listen_address = listen_address
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ApiClient:
        cfg, data_dir = node_config(args)
        address = getattr(args, "api", None) or cfg.api.listen_address
        try:
            token = read_token(data_dir / cfg.api.token_file)
        except TokenFileError as e:
            raise CLIError(f"API token: {e}") from None
        return cls(address, token)

    def _connection(self) -> http.client.HTTPConnection:
        if self.listen_address.startswith("unix:"):
            return _UnixConnection(self.listen_address[5:], self.timeout)
        host, port = split_host_port(self.listen_address, allow_unix=False)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = self._connection()
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except OSError as e:
            raise CLIError(f"cannot reach the node's API at {self.listen_address} ({e}); is "
                           "the node running?") from None
        finally:
            conn.close()
        ctype = response.getheader("content-type", "")
        return response.status, json.loads(raw) if "json" in ctype else raw.decode()

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON reply of a 2xx, or a :class:`CLIError` with the API's message."""
        code, reply = self.call(method, path, body)
        if 200 <= code < 300:
            return reply
        message = reply.get("error") if isinstance(reply, dict) else str(reply)
        raise CLIError(f"API said {code}: {message}", 1 if code != 401 else 3)


def register(sub: Any) -> None:
    p = sub.add_parser("api", help="the management API: token, operator keys, OpenAPI")
    asub = p.add_subparsers(dest="api_command", metavar="ACTION")
    asub.required = True

    token = asub.add_parser("token", help="print the API bearer token (or rotate it)")
    add_node_args(token)
    token.add_argument("--rotate", action="store_true",
                       help="replace the token (a running node accepts the new one at once)")
    token.set_defaults(func=_token)

    ck = asub.add_parser("client-key", help="operators allowed to reach the API onion")
    cksub = ck.add_subparsers(dest="client_key_command", metavar="ACTION")
    cksub.required = True
    add = cksub.add_parser("add", help="new x25519 key: prints the private line once")
    add_node_args(add)
    add.add_argument("name")
    add.set_defaults(func=_client_add)
    ls = cksub.add_parser("list", help="list authorized operator keys")
    add_node_args(ls)
    ls.set_defaults(func=_client_list)
    rm = cksub.add_parser("remove", help="revoke an operator key (restart the node)")
    add_node_args(rm)
    rm.add_argument("name")
    rm.set_defaults(func=_client_remove)

    spec = asub.add_parser("openapi", help="print the OpenAPI 3.1 document")
    spec.set_defaults(func=_openapi)


def _paths(args: argparse.Namespace) -> tuple[Config, Path]:
    return node_config(args)


def _token(args: argparse.Namespace) -> int:
    from ..api import rotate_token

    cfg, data_dir = _paths(args)
    path = data_dir / cfg.api.token_file
    try:
        token = rotate_token(path) if args.rotate else read_token(path)
    except (TokenFileError, OSError) as e:
        raise CLIError(f"API token: {e}") from None
    print(token)
    return 0


def _client_add(args: argparse.Namespace) -> int:
    from ..api import ClientKeyError, add_client_key, api_onion_address, load_or_create_api_onion_key

    cfg, data_dir = _paths(args)
    try:
        key, pair = add_client_key(data_dir, args.name)
        onion = api_onion_address(load_or_create_api_onion_key(data_dir))
    except (ClientKeyError, OSError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(f"authorized {key.name}: {key.public}")
    print(f"API onion: {onion}:{cfg.api.onion_virtual_port}")
    print("Put this line in a file ending in .auth_private in the ClientOnionAuthDir of the "
          "operator's tor (it is shown only once and not stored here):")
    print(pair.auth_private_line(onion))
    if not cfg.api.onion:
        print("note: api.onion is false in the configuration; set it to true to publish")
    return 0


def _client_list(args: argparse.Namespace) -> int:
    from ..api import ClientKeyError, load_client_keys

    cfg, data_dir = _paths(args)
    try:
        keys = load_client_keys(data_dir)
    except ClientKeyError as e:
        raise CLIError(str(e)) from None
    for key in keys:
        print(f"{key.name}\t{key.public}")
    for public in cfg.api.authorized_clients:
        print(f"(config)\t{public}")
    return 0


def _client_remove(args: argparse.Namespace) -> int:
    from ..api import ClientKeyError, remove_client_key

    _, data_dir = _paths(args)
    try:
        key = remove_client_key(data_dir, args.name)
    except ClientKeyError as e:
        raise CLIError(str(e)) from None
    print(f"removed {key.name}; restart the node to republish the API onion without it")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from ..api import openapi_json

    print(openapi_json(), end="")
    return 0
