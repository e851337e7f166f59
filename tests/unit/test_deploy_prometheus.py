"""deploy/prometheus and deploy/grafana: the alert rules pass ``promtool check rules``
and their own ``promtool test rules`` file, and every expression, in the rules and in the
Grafana dashboard, names metrics that a node's ``/metrics`` really shows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from random import Random
from typing import Any

import pytest
import yaml
from twisted.internet.task import Clock

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.mixing import MixingLayer
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, memory_identity

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "aegis-hidden.rules.yml"
RULES_TEST = PROM / "aegis-hidden.rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aegis-hidden.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")
METRIC = re.compile(r"\baegis_[a-z0-9_]+")


class _Transport:
    def __init__(self, name: str) -> None:
        self.name = name

    def state(self) -> Mapping[str, Any]:
        return {"ready": True}


def node_metric_names() -> set[str]:
    """Every series name a node's /metrics shows: a core with tor and i2p, a session
    layer with its counters, and the default mixing layer with its loop cover
    (histograms expanded)."""
    clock = Clock()
    identity = memory_identity(clock.seconds())
    core = NodeCore(Config(), identity, "/nonexistent", EventBus(now=clock.seconds), clock,
                    db=InlineSQLite(), local_address=identity.onion)
    for name in ("tor", "i2p"):
        core.add_transport(_Transport(name))  # type: ignore[arg-type]
    sessions = FakeNetwork().node(identity.onion)
    for counter in ("handshakes_rate_limited", "revoked_refused"):  # the real factory's
        setattr(sessions, counter, 0)
    core.attach_session_factory(sessions)
    core.attach_mixing(MixingLayer.from_config(Config(), clock, Random(1)))
    names = set()
    for line in core.metrics.render().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_catches_a_bad_rule_and_a_wrong_expectation(tmp_path: Path) -> None:
    broken = RULES.read_text().replace("expr: aegis_tor_bootstrap_percent and",
                                       "expr: aegis_tor_bootstrap_percent and and")
    (tmp_path / RULES.name).write_text(broken)
    assert _promtool("check", "rules", RULES.name, cwd=tmp_path).returncode != 0
    (tmp_path / RULES.name).write_text(RULES.read_text())
    wrong = RULES_TEST.read_text().replace("(bootstrap 45%)", "(bootstrap 46%)")
    assert wrong != RULES_TEST.read_text()
    (tmp_path / RULES_TEST.name).write_text(wrong)
    result = _promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"]
              if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if not case["exp_alerts"]}
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == firing, "an alert with no test that makes it fire"
    assert alerts <= quiet, "an alert with no test that keeps it quiet"


def test_rule_expressions_use_metrics_the_node_shows() -> None:
    known = node_metric_names()
    for rule in _rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, f"{rule['alert']}: no aegis_ metric in {rule['expr']!r}"
        assert used <= known, f"{rule['alert']}: unknown {sorted(used - known)}"


def test_the_metric_check_knows_an_unknown_name() -> None:
    known = node_metric_names()
    assert {"aegis_tor_ready", "aegis_sessions", "aegis_outbox_messages",
            "aegis_message_ack_latency_seconds_bucket", "aegis_mixing_loops_lost_total",
            "aegis_audits_failed_total"} <= known
    assert "aegis_loops_lost_total" not in known and "aegis_audit_failed" not in known


def _dashboard() -> dict[str, Any]:
    def refuse(value: str) -> float:
        raise ValueError(f"{value} in the dashboard JSON")

    doc = json.loads(DASHBOARD.read_text(), parse_constant=refuse)
    assert isinstance(doc, dict)
    return doc


def _targets(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def test_dashboard_expressions_use_metrics_the_node_shows() -> None:
    doc = _dashboard()
    known = node_metric_names()
    targets = _targets(doc)
    assert len(targets) >= 20
    for title, expr in targets:
        used = set(METRIC.findall(expr))
        assert used, f"{title}: no aegis_ metric in {expr!r}"
        assert used <= known, f"{title}: unknown {sorted(used - known)}"
    variables = [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    assert all(set(METRIC.findall(v)) <= known for v in variables)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))


def test_peer_distribution_is_by_transport_never_geography() -> None:
    doc = _dashboard()
    (panel,) = [p for p in doc["panels"] if p["title"] == "Peer distribution by transport"]
    (target,) = panel["targets"]
    assert target["expr"].startswith("sum by (transport) (aegis_sessions")
    # What the dashboard queries and draws (descriptions may say why not).
    text = json.dumps([[p["type"], p["title"], p.get("targets")] for p in doc["panels"]]
                      + [doc["templating"]]).lower()
    geography = re.compile(r"\b(geo\w*|country|countries|city|cities|latitude|longitude|asn|"
                           r"worldmap|region|location)\b")
    assert geography.findall(text) == []
    assert geography.findall('{"type": "geomap", "expr": "by (country)"}') == ["geomap", "country"]
