"""deploy/k8s: every manifest valid for Kubernetes (kubernetes-validate, offline), and what
the deployment must be: one StatefulSet with a volume per node, tor and i2pd in the pod,
nothing exposed, probes that run ``aegis-hidden status``, compose's configuration."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from aegis_hidden import tap
from aegis_hidden.cli import _status
from aegis_hidden.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes whose published schema no longer requires
#: StatefulSet.spec.serviceName (this deployment has no Service), and the newest
#: kubernetes-validate knows.
VERSIONS = ("1.33.0", kubernetes_validate.latest_version())


def _kustomization() -> dict[str, Any]:
    doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _resources() -> list[dict[str, Any]]:
    out = []
    for name in _kustomization()["resources"]:
        out += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return out


def _generated_configmaps() -> list[dict[str, Any]]:
    """The ConfigMaps kustomize's configMapGenerator makes (before the hash suffix)."""
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
             "data": {Path(f).name: (K8S / f).read_text() for f in gen["files"]}}
            for gen in _kustomization().get("configMapGenerator", [])]


def _statefulset() -> dict[str, Any]:
    (sts,) = [r for r in _resources() if r["kind"] == "StatefulSet"]
    return sts


def _containers() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _statefulset()["spec"]["template"]["spec"]["containers"]}


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_kustomization_lists_every_manifest_and_nothing_missing() -> None:
    kust = _kustomization()
    assert kust["kind"] == "Kustomization"
    listed = set(kust["resources"])
    generated = {f for gen in kust.get("configMapGenerator", []) for f in gen["files"]}
    on_disk = {p.name for p in K8S.iterdir() if p.is_file()} - {"kustomization.yaml"}
    assert listed | generated == on_disk, "a file in deploy/k8s that kustomize ignores"
    assert all((K8S / name).is_file() for name in listed | generated)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates(version: str) -> None:
    docs = _resources() + _generated_configmaps()
    assert {d["kind"] for d in docs} == {"StatefulSet", "NetworkPolicy", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_broken_manifest() -> None:
    sts = _statefulset()
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "root"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, VERSIONS[0], strict=True)
    sts = _statefulset()
    sts["spec"]["volumeClaimTemplate"] = sts["spec"].pop("volumeClaimTemplates")  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, VERSIONS[0], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) not installed")
def test_kustomize_build_validates() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    volumes = sts["spec"]["template"]["spec"]["volumes"]
    assert {"name": cm["metadata"]["name"]} == next(
        v["configMap"] for v in volumes if "configMap" in v)  # the hashed name, rewritten
    node = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "node")
    assert node["image"] == "aegis-hidden:latest"


def test_one_statefulset_with_a_volume_per_node() -> None:
    kinds = [r["kind"] for r in _resources()]
    assert "Deployment" not in kinds and kinds.count("StatefulSet") == 1
    spec = _statefulset()["spec"]
    claims = {t["metadata"]["name"]: t["spec"] for t in spec["volumeClaimTemplates"]}
    assert set(claims) == {"node-data", "tor-data", "i2pd-data"}
    assert all(c["accessModes"] == ["ReadWriteOnce"] for c in claims.values())
    # Deleting or scaling down keeps the identities.
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                           "whenScaled": "Retain"}
    # The node's --data-dir is its own persistent volume, not the pod's scratch space.
    node = _containers()["node"]
    data_dir = node["command"][node["command"].index("--data-dir") + 1]
    mounts = {m["mountPath"]: m for m in node["volumeMounts"]}
    assert mounts[data_dir]["name"] == "node-data" and not mounts[data_dir].get("readOnly")
    pod_volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert not pod_volumes & set(claims)  # claims are not shadowed by pod volumes


def test_tor_and_i2pd_share_the_pods_loopback() -> None:
    assert set(_containers()) == {"node", "tor", "i2pd"}
    pod = _statefulset()["spec"]["template"]["spec"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_nothing_exposed() -> None:
    assert not [r for r in _resources() if r["kind"] in ("Service", "Ingress", "Route")]
    assert "serviceName" not in _statefulset()["spec"]
    for name, c in _containers().items():
        assert not c.get("ports"), f"{name} declares ports"
    (policy,) = [r for r in _resources() if r["kind"] == "NetworkPolicy"]
    labels = _statefulset()["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert "Ingress" in policy["spec"]["policyTypes"]
    assert policy["spec"].get("ingress", []) == []  # no rule: every ingress refused


def test_security_context() -> None:
    pod = _statefulset()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for name, c in _containers().items():
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
    node = _containers()["node"]["securityContext"]
    assert node["runAsNonRoot"] is True and node["runAsUser"] != 0
    assert node["readOnlyRootFilesystem"] is True and "add" not in node["capabilities"]
    # tor and i2pd start as root only to install their package, then run as the
    # package's user with no capabilities.
    for name, user in (("tor", "debian-tor"), ("i2pd", "i2pd")):
        script = _containers()[name]["command"][-1]
        assert f"exec setpriv --reuid={user} " in script
        assert "--inh-caps=-all" in script


def test_resources_set_for_every_container() -> None:
    for name, c in _containers().items():
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        assert {"cpu", "memory"} <= requests.keys() and "memory" in limits, name
        assert _mebibytes(requests["memory"]) <= _mebibytes(limits["memory"]), name


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def _status_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aegis-hidden")
    _status.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_probes_run_aegis_hidden_status() -> None:
    node = _containers()["node"]
    cmd = node["command"]
    config, data_dir = cmd[cmd.index("--config") + 1], cmd[cmd.index("--data-dir") + 1]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        argv = node[probe]["exec"]["command"]
        assert argv[:2] == ["aegis-hidden", "status"], probe
        args = _status_args(argv[1:])  # the options exist: argparse would exit otherwise
        assert (args.config, args.data_dir) == (config, data_dir), probe
        assert args.ready is (probe == "readinessProbe"), probe
        assert not args.watch and not args.json
        # Shorter than the CLI's 30 s API timeout: a hung API fails the probe
        # instead of passing on the fallback, status.json.
        assert node[probe]["timeoutSeconds"] < 30


def test_same_configuration_as_compose(tmp_path: Path) -> None:
    compose = _compose()["services"]
    node_yaml = yaml.safe_load((K8S / "node.yaml").read_text())
    assert node_yaml == yaml.safe_load((ROOT / "docs" / "compose-node.yaml").read_text())
    cfg = load_config(K8S / "node.yaml")
    assert cfg.tor.mode == "connect" and cfg.i2p.enabled
    # The node runs the same twistd command as in compose, and its options parse.
    node = _containers()["node"]
    assert node["command"] == shlex.split(compose["node"]["command"])
    twistd_args = node["command"][node["command"].index("aegis-hidden") + 1:]
    twistd_args[twistd_args.index("--data-dir") + 1] = str(tmp_path)
    twistd_args[twistd_args.index("--config") + 1] = str(K8S / "node.yaml")
    tap.Options().parseOptions(twistd_args)
    # Compose's mounts, at the same paths: config, data, tor's cookie read-only.
    mounts = {m["mountPath"]: m for m in node["volumeMounts"]}
    for volume in compose["node"]["volumes"]:
        _source, target, *mode = volume.split(":")
        assert target in mounts, target
        assert bool(mounts[target].get("readOnly")) == (mode == ["ro"]), target
    # tor: compose's torrc and image; its ports are the ones node.yaml connects to.
    compose_torrc = _directives(ROOT / "torrc.d" / "compose.torrc")
    k8s_torrc = _directives(K8S / "torrc")
    assert k8s_torrc - compose_torrc == {"DataDirectoryGroupReadable 1"}
    assert compose_torrc <= k8s_torrc
    tor = _containers()["tor"]
    assert tor["image"] == compose["tor"]["image"]
    assert "tor -f /etc/aegis-hidden/tor/torrc" in tor["command"][-1]
    assert any(m["mountPath"] == "/etc/aegis-hidden/tor/torrc" and m["subPath"] == "torrc"
               for m in tor["volumeMounts"])
    assert f"ControlPort {cfg.tor.control_port}" in k8s_torrc
    assert any(d.startswith(f"SocksPort {cfg.tor.socks_port} ") for d in k8s_torrc)
    # i2pd: compose's image and flags; SAM where node.yaml looks for it.
    i2pd = _containers()["i2pd"]
    assert i2pd["image"] == compose["i2pd"]["image"]
    compose_flags = {w.strip('"') for w in compose["i2pd"]["command"].split()
                     if w.startswith("--")}
    k8s_flags = {w for w in i2pd["command"][-1].split() if w.startswith("--")}
    assert compose_flags <= k8s_flags
    host, port = cfg.i2p.sam_address.rsplit(":", 1)
    assert {f"--sam.address={host}", f"--sam.port={port}"} <= k8s_flags


def _directives(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")}
