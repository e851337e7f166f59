"""The layer rules of docs/architecture.md, checked.

The import-linter contracts live in setup.cfg (``[importlinter...]``) and run in
``make lint``; this test runs them too, so ``pytest tests/unit`` alone catches a
broken layer. The other tests check what import-linter cannot: what importing a
package does at run time (the global reactor), and the leaves' own promises.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports() -> Path | None:
    if LINT_IMPORTS.exists():
        return LINT_IMPORTS
    found = shutil.which("lint-imports")
    return Path(found) if found else None


def test_import_linter_contracts_are_kept() -> None:
    tool = _lint_imports()
    if tool is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    result = subprocess.run([str(tool), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _contracts() -> dict[str, configparser.SectionProxy]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {name.split(":", 2)[2]: cfg[name] for name in cfg.sections()
            if name.startswith("importlinter:contract:")}


def test_the_contracts_name_the_rules_of_the_design() -> None:
    """The rules the design promises are the ones the contracts check (no silent drop)."""
    contracts = _contracts()
    assert {"layers", "no-cycles", "pure", "sans-io-session", "no-sockets-above-transports",
            "transports-behind-interface", "test-harness-private"} <= set(contracts)
    assert contracts["layers"]["exhaustive"] == "True"
    layers = contracts["layers"]["layers"].split()
    # the leaves sit at the bottom: they import nothing of the package
    bottom = contracts["layers"]["layers"].strip().splitlines()[-1]
    assert "crypto" in bottom and "addresses" in bottom
    assert layers[0] == "tap"
    pure = contracts["pure"]["source_modules"].split()
    assert {"aegis_hidden.config", "aegis_hidden.identity", "aegis_hidden.wire",
            "aegis_hidden.crypto", "aegis_hidden.addresses"} <= set(pure)
    assert "twisted" in contracts["pure"]["forbidden_modules"].split()
    assert "twisted.internet" in contracts["sans-io-session"]["forbidden_modules"].split()
    above = contracts["no-sockets-above-transports"]
    assert {"socket", "txtorcon"} <= set(above["forbidden_modules"].split())
    assert not {"aegis_hidden.tor", "aegis_hidden.i2p", "aegis_hidden.testing"} & set(
        above["source_modules"].split())


def _fresh_import(module: str) -> dict[str, bool]:
    code = (f"import sys, json; import {module}; "
            "print(json.dumps({m: m in sys.modules for m in "
            "('twisted.internet.reactor', 'txtorcon')}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    loaded: dict[str, bool] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("module", ["aegis_hidden.tor", "aegis_hidden.i2p", "aegis_hidden.session",
                                    "aegis_hidden.node", "aegis_hidden.identity", "aegis_hidden.config",
                                    "aegis_hidden.crypto", "aegis_hidden.addresses"])
def test_importing_a_library_package_installs_no_global_reactor(module: str) -> None:
    """Library code takes the reactor as an argument; txtorcon (which installs the
    default reactor when imported) is imported only when tor is actually used."""
    loaded = _fresh_import(module)
    assert not loaded["twisted.internet.reactor"], f"importing {module} installed the global reactor"
    assert not loaded["txtorcon"], f"importing {module} imported txtorcon"


def test_client_auth_keys_are_reached_without_tor() -> None:
    """The API keeps operators' client-auth keys without importing the Tor transport."""
    from aegis_hidden import identity, tor

    assert tor.ClientAuthKey is identity.ClientAuthKey
    assert tor.ClientAuthError is identity.ClientAuthError
    key = identity.ClientAuthKey.generate()
    assert identity.parse_public_key(key.public.descriptor_line()) == key.public
