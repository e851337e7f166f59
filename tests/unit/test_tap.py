"""``twistd aegis-hidden`` options and the service tree they build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from twisted.application.service import IService, MultiService
from twisted.python import usage

from aegis_hidden import tap
from aegis_hidden.node import NodeService


def test_options_create_identity_and_service(tmp_path: Path) -> None:
    opts = tap.Options()
    opts.parseOptions(["--data-dir", str(tmp_path)])
    assert opts.created
    service = tap.makeService(opts)
    assert IService.providedBy(service)
    assert isinstance(service, NodeService) and isinstance(service, MultiService)
    assert service.identity.onion.endswith(".onion")
    again = tap.Options()
    again.parseOptions(["--data-dir", str(tmp_path)])
    assert not again.created and again.identity.onion == opts.identity.onion


def test_sessions_share_the_core_record_cache_and_pins(tmp_path: Path) -> None:
    """Every session checks records against the node's one cache."""
    opts = tap.Options()
    opts.parseOptions(["--data-dir", str(tmp_path), "--no-api"])
    service = tap.makeService(opts)
    assert isinstance(service, NodeService)
    core = service.getServiceNamed("core")
    sessions = core.session_factory
    assert sessions.record_cache is core.record_cache
    assert sessions.mldsa_pin == core.mldsa_pin
    # a new record from the identity service (its one owner) reaches every layer:
    # the sessions hold the service itself, the core is told by its subscription
    ids = service.identity_service
    assert sessions._source is ids and core.records.identity_service is ids
    assert service.getServiceNamed("identity") is ids
    refreshed = replace(opts.identity, record=replace(opts.identity.record, sequence=9))
    ids.adopt(refreshed)
    assert service.identity is refreshed and sessions.identity is refreshed
    assert core.identity is refreshed and core.records.identity is refreshed


def test_overrides_are_applied(tmp_path: Path) -> None:
    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path), "--tor-control-port", "127.0.0.1:9999",
                       "--api-listen", "127.0.0.1:1234", "--log-level", "debug"])
    assert opts.config.tor.mode == "connect"
    assert opts.config.tor.control_port == "127.0.0.1:9999"
    assert opts.config.api.listen_address == "127.0.0.1:1234"
    assert opts.config.log_level == "debug"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-listen", "0.0.0.0:80"], "privacy: api.listen_address"),
        (["--no-tor"], "privacy: security.enable_tor"),
        (["--listen-address", "bad"], "network.listen_address"),
        (["--log-level", "loud"], "log_level"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    opts = tap.Options()
    with pytest.raises(usage.UsageError, match=message):
        opts.parseOptions(["-d", str(tmp_path), *argv])
    assert not (tmp_path / "identity").exists()  # nothing written for a refused config


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("network:\n  listen_address: 0.0.0.0:7701\n")
    with pytest.raises(usage.UsageError, match=str(cfg)):
        tap.Options().parseOptions(["-c", str(cfg), "-d", str(tmp_path)])


def test_corrupted_key_is_a_usage_error_and_kept(tmp_path: Path) -> None:
    tap.Options().parseOptions(["-d", str(tmp_path)])
    key = tmp_path / "identity" / "master_key.json"
    key.write_bytes(key.read_bytes()[:40])
    with pytest.raises(usage.UsageError, match=r"identity: .*truncated or corrupted"):
        tap.Options().parseOptions(["-d", str(tmp_path)])
    assert len(key.read_bytes()) == 40
