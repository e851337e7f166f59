"""Every problem of a configuration in one run: unknown keys, wrong types, refused
values and cross-key checks, each with its key path and fix; the seed spec's example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from aegis_hidden import tap
from aegis_hidden.cli._main import main
from aegis_hidden.config import ConfigError, ConfigProblems, PrivacyError, load_config, parse_config

SEED = Path(__file__).resolve().parent / "data" / "seed-example.yaml"

# The six things the seed spec's example asks for that this node refuses, by key.
SEED_PROBLEMS = {
    "network.listen_address",    # 0.0.0.0
    "network.external_address",  # a clearnet address
    "network.bootstrap_nodes",   # host names
    "security.key_exchange",     # ECDH
    "security.private_key_file",  # key.pem
    "security.certificate_file",  # TLS certificate
}


def _problems(raw: Any) -> tuple[ConfigError, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "node.yaml")
    return info.value.problems


def test_every_kind_of_problem_in_one_pass() -> None:
    raw = {
        "bogus_top": 1,
        "network": {"max_connections": "many", "listen_address": "0.0.0.0:7701",
                    "typo_key": 2},
        "security": {"key_exchange": "ECDH"},
        "tor": {"mode": "connect"},
        "performance": [1],
    }
    with pytest.raises(ConfigProblems) as info:
        parse_config(raw, "node.yaml")
    err = info.value
    paths = [p.path for p in err.problems]
    assert sorted(paths) == sorted([
        "bogus_top", "network.max_connections", "network.listen_address", "network.typo_key",
        "security.key_exchange", "tor.control_port", "performance"])
    assert err.privacy and isinstance(err, ConfigError)
    lines = str(err).splitlines()
    assert lines[0] == "node.yaml: 7 problems; fix them all, then check again:"
    assert len(lines) == 8
    for problem, line in zip(err.problems, lines[1:], strict=True):
        assert problem.path in line and problem.source == "node.yaml"
        assert str(problem) == f"node.yaml: {line.removeprefix('  - ')}"
    # each carries its own fix
    by_path = {p.path: p for p in err.problems}
    assert "loopback" in by_path["network.listen_address"].allowed
    assert "integer from 1" in by_path["network.max_connections"].allowed
    assert "known keys here are" in by_path["network.typo_key"].allowed
    assert isinstance(by_path["network.listen_address"], PrivacyError)


def test_problems_are_listed_in_documented_key_order() -> None:
    problems = _problems({"security": {"key_exchange": "ECDH"}, "zzz": 1,
                          "network": {"max_connections": 0, "listen_address": "0.0.0.0:1"}})
    assert [p.path for p in problems] == [
        "network.listen_address", "network.max_connections", "security.key_exchange", "zzz"]


def test_every_bad_list_item_is_named() -> None:
    problems = _problems({"network": {"bootstrap_nodes": ["a.example:1", "b.example:2"]}})
    assert [p.path for p in problems] == ["network.bootstrap_nodes[0]",
                                          "network.bootstrap_nodes[1]"]


def test_a_misspelt_key_gets_a_suggestion() -> None:
    (problem,) = _problems({"network": {"max_conections": 5}})
    assert problem.path == "network.max_conections"
    assert "did you mean max_connections?" in problem.allowed
    (problem,) = _problems({"netwrk": {}})
    assert "did you mean network?" in problem.allowed


def test_one_problem_is_raised_as_itself() -> None:
    with pytest.raises(PrivacyError) as info:
        parse_config({"network": {"listen_address": "0.0.0.0:7701"}}, "node.yaml")
    assert not isinstance(info.value, ConfigProblems)
    assert info.value.problems == (info.value,)


def test_cross_check_skipped_when_its_key_failed_alone() -> None:
    """i2p.enabled: "yes" is one problem; the no-anonymous-network check would read
    the default (false) in its place and report a second, wrong one."""
    problems = _problems({"security": {"enable_tor": False}, "i2p": {"enabled": "yes"}})
    assert [p.path for p in problems] == ["i2p.enabled"]


def test_seed_example_all_six_problems_in_one_run() -> None:
    with pytest.raises(ConfigProblems) as info:
        load_config(SEED)
    problems = info.value.problems
    assert {p.path.split("[")[0] for p in problems} == SEED_PROBLEMS
    by_path = {p.path: p for p in problems}
    assert "onion address" in by_path["security.certificate_file"].allowed
    assert "X-Wing" in by_path["security.key_exchange"].allowed
    assert "master_key.json" in by_path["security.private_key_file"].allowed
    assert ".onion" in by_path["network.bootstrap_nodes[0]"].allowed


def test_config_check_prints_all_six(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(SEED)]) == 3
    err = capsys.readouterr().err
    for key in SEED_PROBLEMS:
        assert key in err, key
    assert "7 problems" in err  # two bootstrap host names, one line each


def test_twistd_start_up_shows_every_problem(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError) as info:
        tap.Options().parseOptions(["-c", str(SEED), "-d", str(tmp_path)])
    for key in SEED_PROBLEMS:
        assert key in str(info.value), key
