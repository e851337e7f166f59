"""``aegis-hidden api ...``, ``peers ...`` and ``send``: the CLI against the real API tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.api import openapi_json, read_token
from aegis_hidden.cli import main
from aegis_hidden.cli._api import ApiClient
from aegis_hidden.tor import parse_auth_private

from .test_api import Api

REPO = Path(__file__).resolve().parents[2]


def test_api_token_print_and_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "token", "-d", str(tmp_path)]) == 1  # no node started yet
    assert "does not exist" in capsys.readouterr().err
    assert main(["api", "token", "-d", str(tmp_path), "--rotate"]) == 0
    first = capsys.readouterr().out.strip()
    assert first == read_token(tmp_path / "api_token")
    assert main(["api", "token", "-d", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == first
    assert main(["api", "token", "-d", str(tmp_path), "--rotate"]) == 0
    assert capsys.readouterr().out.strip() != first


def test_client_key_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert main(["api", "client-key", "add", "laptop", "-d", d]) == 0
    out = capsys.readouterr().out
    private_line = out.strip().splitlines()[-2]
    onion, key = parse_auth_private(private_line)
    assert f"API onion: {onion}:80" in out and "api.onion is false" in out
    assert key.private.hex() not in (tmp_path / "api_client_keys.json").read_text()
    assert main(["api", "client-key", "list", "-d", d]) == 0
    assert capsys.readouterr().out.startswith(f"laptop\t{key.public.descriptor_line()}")
    assert main(["api", "client-key", "add", "laptop", "-d", d]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["api", "client-key", "remove", "laptop", "-d", d]) == 0
    assert main(["api", "client-key", "remove", "laptop", "-d", d]) == 1


def test_openapi_command_matches_docs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "openapi"]) == 0
    out = capsys.readouterr().out
    assert out == openapi_json() == (REPO / "docs" / "openapi.json").read_text()


class StubClient(ApiClient):
    """ApiClient whose HTTP goes to the in-memory API harness."""

    def __init__(self, api: Api) -> None:
        super().__init__("127.0.0.1:8470", api.token)
        self.api = api

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        code, reply, _ = self.api.call(method, path, body, token=self.token)
        return code, reply


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Api:
    harness = Api(tmp_path)
    monkeypatch.setattr(ApiClient, "from_args", classmethod(lambda cls, args: StubClient(
        harness)))
    return harness


def test_peers_and_send_commands(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    b = api.b.local_address
    assert main(["peers", "list"]) == 0
    assert "no peers" in capsys.readouterr().out
    assert main(["peers", "add", b]) == 0
    assert capsys.readouterr().out.strip() == f"add: {b} (new)"
    assert main(["send", b, '{"type": "chat", "data": "hi"}']) == 0
    assert capsys.readouterr().out.strip().endswith(": acknowledged")
    assert main(["send", b, "plain words"]) == 0
    received = [e["message"] for e in api.b_events if e["type"] == "message_received"]
    assert received == [{"type": "chat", "data": "hi"}, {"type": "text", "data": "plain words"}]
    capsys.readouterr()
    assert main(["peers", "list"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(b) and "connected" in line
    assert main(["peers", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peers"][0]["id"] == b
    assert main(["peers", "block", b, "--duration", "30", "--reason", "noisy"]) == 0
    assert "(blocked)" in capsys.readouterr().out
    assert api.a.store.require(b).blocked_reason == "noisy"
    assert main(["peers", "unblock", b]) == 0
    assert main(["peers", "remove", b]) == 0
    capsys.readouterr()
    assert main(["peers", "remove", b]) == 1
    assert "API said 404" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before the API is asked (not a canonical address)
        main(["peers", "add", "example.com"])
    assert "clearnet hosts are refused" in capsys.readouterr().err


def test_wrong_token_exit_code(api: Api, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = StubClient(api)
    client.token = "wrong-wrong-wrong-wrong"
    monkeypatch.setattr(ApiClient, "from_args", classmethod(lambda cls, args: client))
    assert main(["peers", "list"]) == 3
    assert "401" in capsys.readouterr().err


def test_peers_list_follows_every_page(api: Api, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The API pages its peer list; the CLI shows all of it, not the first page."""
    from aegis_hidden.api import _web
    from aegis_hidden.identity import onion_address_from_public_key

    monkeypatch.setattr(_web, "DEFAULT_PAGE", 2)
    added = sorted(onion_address_from_public_key(bytes([i]) * 32) for i in range(1, 6))
    for onion in added:
        assert main(["peers", "add", onion]) == 0
    capsys.readouterr()
    assert main(["peers", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(listed) == added
    assert main(["peers", "list", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert sorted(p["id"] for p in reply["peers"]) == added and reply["next_cursor"] is None
