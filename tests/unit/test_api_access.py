"""API access: token file, operator client keys, the client-authorized API onion, wiring."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from aegis_hidden._listen import local_server_endpoint as server_endpoint
from aegis_hidden.api import (
    ApiOnionService,
    ClientKeyError,
    TokenChecker,
    TokenFileError,
    add_client_key,
    api_onion_address,
    authorized_client_keys,
    load_client_keys,
    load_or_create_api_onion_key,
    load_or_create_token,
    make_api_service,
    read_token,
    remove_client_key,
    rotate_token,
)
from aegis_hidden.config import Config, PrivacyError, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import expanded_secret_key, is_onion_v3
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import result_of
from aegis_hidden.tor import parse_auth_private


def test_token_created_once_0600_and_rotated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "api_token"
    token, created = load_or_create_token(path)
    assert created and len(token) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(path) == (token, False)
    new = rotate_token(path)
    assert new != token and read_token(path) == new
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("content", "mode", "message"), [
    ("short\n", 0o600, "too short"), ("x" * 40, 0o644, "readable by other users")])
def test_bad_token_files_refused(tmp_path: Path, content: str, mode: int,
                                 message: str) -> None:
    path = tmp_path / "api_token"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(TokenFileError, match=message):
        read_token(path)
    assert not TokenChecker(token="x" * 40).check(None)
    with pytest.raises(TokenFileError, match="does not exist"):
        read_token(tmp_path / "missing")


def test_checker_locks_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    token, _ = load_or_create_token(path)
    checker = TokenChecker(path)
    assert checker.check(token) and not checker.check(token + "x")
    path.unlink()
    assert not checker.check(token)


def test_client_keys_add_list_remove(tmp_path: Path) -> None:
    key, pair = add_client_key(tmp_path, "laptop")
    assert key.public.startswith("descriptor:x25519:") and key.public == \
        pair.public.descriptor_line()
    assert (tmp_path / "api_client_keys.json").stat().st_mode & 0o777 == 0o600
    assert _private_not_stored(tmp_path, pair.auth_private_line(
        api_onion_address(os.urandom(32))))
    with pytest.raises(ClientKeyError, match="exists"):
        add_client_key(tmp_path, "laptop")
    with pytest.raises(ClientKeyError, match="client name"):
        add_client_key(tmp_path, "bad name!")
    add_client_key(tmp_path, "phone")
    assert [k.name for k in load_client_keys(tmp_path)] == ["laptop", "phone"]
    cfg = parse_config({"api": {"authorized_clients": ["descriptor:x25519:" + "A" * 52]}})
    assert len(authorized_client_keys(cfg, tmp_path)) == 3
    remove_client_key(tmp_path, "laptop")
    with pytest.raises(ClientKeyError, match="no client key"):
        remove_client_key(tmp_path, "laptop")
    assert [k.name for k in load_client_keys(tmp_path)] == ["phone"]
    (tmp_path / "api_client_keys.json").write_text("{broken")
    with pytest.raises(ClientKeyError, match="cannot read"):
        load_client_keys(tmp_path)


def _private_not_stored(data_dir: Path, auth_private_line: str) -> bool:
    private_b32 = auth_private_line.rsplit(":", 1)[1]
    return private_b32 not in (data_dir / "api_client_keys.json").read_text()


class FakeTor:
    """Records what the API onion service asks of the Tor provider."""

    def __init__(self) -> None:
        self.added: list[tuple[bytes, int, str, Sequence[str]]] = []
        self.removed: list[str] = []

    def when_ready(self) -> Deferred[None]:
        return succeed(None)

    async def add_onion(self, expanded_key: bytes, virtual_port: int, target: str, *,
                        client_auth: Sequence[str] = (), detach: bool = False) -> str:
        self.added.append((expanded_key, virtual_port, target, tuple(client_auth)))
        return "ignored"

    async def remove_onion(self, onion: str) -> None:
        self.removed.append(onion)


def test_api_onion_refused_without_client_keys(tmp_path: Path) -> None:
    cfg = parse_config({"api": {"onion": True}})
    service = ApiOnionService(FakeTor(), cfg, tmp_path)
    with pytest.raises(PrivacyError, match="client-key add"):
        service.client_keys()


def test_api_onion_published_with_its_own_key_and_removed(tmp_path: Path) -> None:
    cfg = parse_config({"api": {"onion": True, "onion_virtual_port": 81,
                                "listen_address": "127.0.0.1:9999"}})
    key, pair = add_client_key(tmp_path, "op")
    tor = FakeTor()
    service = ApiOnionService(tor, cfg, tmp_path)
    service.startService()
    result_of(service.when_published())
    seed = load_or_create_api_onion_key(tmp_path)
    assert (tmp_path / "api_onion_key").stat().st_mode & 0o777 == 0o600
    assert tor.added == [(expanded_secret_key(seed), 81, "127.0.0.1:9999", (key.public,))]
    assert service.onion == api_onion_address(seed) and is_onion_v3(service.onion)
    onion, parsed = parse_auth_private(pair.auth_private_line(service.onion))
    assert onion == service.onion and parsed.public == pair.public
    result_of(service.stopService())
    assert tor.removed == [api_onion_address(seed)]


def _core(tmp_path: Path, clock: Any) -> NodeCore:
    return NodeCore(Config(), None, str(tmp_path), EventBus(), clock,
                    db=InlineSQLite(), local_address=api_onion_address(os.urandom(32)))


def test_make_api_service_listens_on_start_only(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    cfg = parse_config({"api": {"listen_address": "127.0.0.1:8555"}})
    api = make_api_service(reactor, cfg, _core(tmp_path, reactor), tmp_path)
    assert (tmp_path / "api_token").exists()
    assert reactor.tcpServers == []  # built in makeService, listening only once started
    api.startService()
    port, _factory, _backlog, interface = reactor.tcpServers[0]
    assert (port, interface) == (8555, "127.0.0.1")
    api.stopService()


def test_make_api_service_refuses_onion_without_keys_or_tor(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    cfg = parse_config({"api": {"onion": True}})
    with pytest.raises(ValueError, match="Tor is not enabled"):
        make_api_service(reactor, cfg, _core(tmp_path, reactor), tmp_path)
    with pytest.raises(PrivacyError):
        make_api_service(reactor, cfg, _core(tmp_path, reactor), tmp_path, tor=FakeTor())
    add_client_key(tmp_path, "op")
    api = make_api_service(reactor, cfg, _core(tmp_path, reactor), tmp_path, tor=FakeTor())
    assert api.onion is not None


def test_server_endpoints() -> None:
    clock = Clock()
    assert type(server_endpoint(clock, "127.0.0.1:1")).__name__ == "TCP4ServerEndpoint"
    assert type(server_endpoint(clock, "[::1]:1")).__name__ == "TCP6ServerEndpoint"
    assert type(server_endpoint(clock, "unix:/tmp/x.sock")).__name__ == "UNIXServerEndpoint"


def test_makeservice_tree_has_core_and_api(tmp_path: Path) -> None:
    from aegis_hidden import tap

    opts = tap.Options()
    opts.parseOptions(["--data-dir", str(tmp_path), "--api-listen", "127.0.0.1:8556"])
    node: Any = tap.makeService(opts)
    core = node.getServiceNamed("core")
    api = node.getServiceNamed("api")
    assert isinstance(core, NodeCore) and api.token_path == tmp_path / "api_token"
    assert [t.name for t in core.transports] == ["tor"]
    status = core.status()
    assert status["identity"]["onion"] == opts.identity.onion
    assert status["identity"]["post_quantum_signature"] is True
    assert "tor" in status["transports"] and status["session_layer"] is True
    assert (tmp_path / "api_token").stat().st_mode & 0o777 == 0o600
    none = tap.Options()
    none.parseOptions(["--data-dir", str(tmp_path), "--no-api"])
    assert "api" not in tap.makeService(none).namedServices  # type: ignore[attr-defined]
