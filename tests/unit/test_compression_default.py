"""Compression is off by default: padding must hide sizes, not compressed sizes."""

from __future__ import annotations

import pytest

from aegis_hidden.config import Config, parse_config
from aegis_hidden.session import SessionParams
from aegis_hidden.wire import prepare_message


@pytest.mark.parametrize("max_message_size", [None, 64 * 1024 * 1024])
def test_default_config_never_compresses(max_message_size: int | None) -> None:
    raw = {} if max_message_size is None else {
        "performance": {"max_message_size": max_message_size}}
    config = parse_config(raw) if raw else Config()
    params = SessionParams.from_config(config)
    size = params.max_message_size
    for data in (b"a" * size, b"secret=hunter2&" * 100, b"x" * 2000):
        data = data[:size]
        flags, payload = prepare_message(data, params.compression_threshold, size)
        assert flags == 0 and payload == data


def test_compression_still_works_when_asked_for() -> None:
    params = SessionParams.from_config(parse_config(
        {"performance": {"compression_threshold": 1024}}))
    flags, payload = prepare_message(b"a" * 4096, params.compression_threshold,
                                     params.max_message_size)
    assert flags != 0 and len(payload) < 4096
