"""``aegis-hidden doctor``: check what a node needs, say in plain words what is
wrong and how to fix it.

Each check is a function of the configuration and a :class:`Probes` object
that does the looking (files, executables, tor's control port, the SAM bridge,
the clock). The command passes :class:`SystemProbes`; tests pass fakes. A
check returns :class:`Finding` s; the command exits 1 when any of them failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import Config, ConfigError, load_config
from ..i2p import SAMError, sam_hello
from ..tor import ControlReport, ProbeError, plugin_binaries, query_control, reach_onion
from ._common import CLIError, add_node_args
from ._status import fetch

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

#: Below this much free space in the data dir the node may fail to write its state.
MIN_FREE = 100 * 1024 * 1024
LOW_FREE = 1024 * 1024 * 1024
#: The clock may be this far outside the live consensus's validity before it is wrong.
CLOCK_OK = 5 * 60
CLOCK_FAIL = 60 * 60
#: status.json older than this means the node is not running any more.
STATUS_FRESH = 60.0


@dataclass(frozen=True)
class Finding:
    """One check's result: ``status`` (ok, warn, fail, skip), what was found, the fix."""

    check: str
    status: str
    text: str
    fix: str = ""


class Probes(Protocol):
    """What the checks may look at; every method fails with the exception named."""

    def which(self, name: str) -> str | None: ...

    def version(self, exe: str) -> str:
        """The first line ``exe --version`` prints (OSError, subprocess errors)."""

    def control(self, address: str, password_file: str | None) -> ControlReport:
        """tor's control port after authenticating (ProbeError)."""

    def sam(self, address: str) -> str:
        """The SAM version agreed in HELLO (SAMError)."""

    def mode(self, path: Path) -> int | None:
        """Permission bits of ``path``, None if it does not exist."""

    def listdir(self, path: Path) -> list[Path]: ...

    def read_text(self, path: Path) -> str | None: ...

    def free_bytes(self, path: Path) -> int: ...

    def now(self) -> float: ...

    def node_state(self) -> dict[str, Any] | None:
        """The running node's status (API or status.json), None if it is not running."""

    def reach(self, socks: str, onion: str, port: int) -> float:
        """Seconds to open a stream to ``onion:port`` through ``socks`` (ProbeError)."""


class SystemProbes:
    """The real machine: files, ``PATH``, loopback sockets with short timeouts."""

    def __init__(self, state: Callable[[], dict[str, Any] | None], *, timeout: float = 5.0,
                 onion_timeout: float = 60.0) -> None:
        self._state = state
        self.timeout = timeout
        self.onion_timeout = onion_timeout

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def version(self, exe: str) -> str:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True,
                              timeout=self.timeout, stdin=subprocess.DEVNULL, check=False)
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if lines else f"(no output, exit status {done.returncode})"

    def control(self, address: str, password_file: str | None) -> ControlReport:
        return query_control(address, password_file=password_file, timeout=self.timeout)

    def sam(self, address: str) -> str:
        return sam_hello(address, timeout=self.timeout)

    def mode(self, path: Path) -> int | None:
        try:
            return stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            return None

    def listdir(self, path: Path) -> list[Path]:
        try:
            return sorted(p for p in path.iterdir() if p.is_file())
        except OSError:
            return []

    def read_text(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return None

    def free_bytes(self, path: Path) -> int:
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    def now(self) -> float:
        return time.time()

    def node_state(self) -> dict[str, Any] | None:
        return self._state()

    def reach(self, socks: str, onion: str, port: int) -> float:
        return reach_onion(socks, onion, port, timeout=self.onion_timeout)


# ---------------------------------------------------------------- the checks


def _version_number(line: str) -> str:
    """``Tor version 0.4.9.11.`` -> ``0.4.9.11``; ``i2pd version 2.45.1 (0.9.57)`` -> 2.45.1."""
    words = line.replace("version", " ").split()
    for word in words:
        if word[:1].isdigit():
            return word.rstrip(".")
    return line.strip()


def check_tor_binary(cfg: Config, probes: Probes) -> Finding:
    name = "tor installed"
    if not cfg.security.enable_tor:
        return Finding(name, SKIP, "Tor is off (security.enable_tor: false)")
    exe = probes.which(cfg.tor.tor_binary or "tor")
    needed = cfg.tor.mode == "launch"
    if exe is None:
        if not needed:
            return Finding(name, SKIP, "no tor executable here; not needed in connect mode "
                           "(the node uses the running tor at tor.control_port)")
        return Finding(
            name, FAIL, f"the tor executable {cfg.tor.tor_binary or 'tor'!r} is not installed, "
            "and the node launches its own tor (tor.mode: launch)",
            "install it (Debian: apt install tor), set tor.tor_binary to its path, or "
            "use a running tor: tor.mode: connect with tor.control_port")
    try:
        version = _version_number(probes.version(exe))
    except (OSError, subprocess.SubprocessError) as e:
        return Finding(name, FAIL, f"{exe} does not run ({e})",
                       "reinstall tor (Debian: apt install --reinstall tor)")
    return Finding(name, OK, f"tor {version} at {exe}")


def check_transports(cfg: Config, probes: Probes) -> list[Finding]:
    if not cfg.security.enable_tor or not cfg.tor.bridges or cfg.tor.mode != "launch":
        return []
    found = plugin_binaries(cfg, probes.which)
    out = []
    for transport, binary in sorted(found.items()):
        if binary is None:
            out.append(Finding(
                f"{transport} plugin", FAIL,
                f"tor.bridges use {transport}, but its pluggable-transport program is missing",
                "install it (Debian: obfs4proxy for obfs4/meek_lite, snowflake-client for "
                "snowflake) or give its path in tor.transports as NAME=/path"))
        else:
            out.append(Finding(f"{transport} plugin", OK, f"{transport} at {binary}"))
    return out


def check_i2pd_binary(cfg: Config, probes: Probes) -> Finding:
    name = "i2pd installed"
    if not cfg.i2p.enabled:
        return Finding(name, SKIP, "I2P is off (i2p.enabled: false)")
    exe = probes.which(cfg.i2p.i2pd_binary or "i2pd")
    if exe is None:
        if not cfg.i2p.launch:
            return Finding(name, SKIP, "no i2pd executable here; not needed: the node uses "
                           f"the SAM bridge at {cfg.i2p.sam_address} (i2p.launch: false)")
        return Finding(name, FAIL, "i2pd is not installed, and i2p.launch asks the node to "
                       "start its own", "install it (Debian: apt install i2pd) or set "
                       "i2p.i2pd_binary to its path")
    try:
        version = _version_number(probes.version(exe))
    except (OSError, subprocess.SubprocessError) as e:
        return Finding(name, FAIL, f"{exe} does not run ({e})",
                       "reinstall i2pd (Debian: apt install --reinstall i2pd)")
    return Finding(name, OK, f"i2pd {version} at {exe}")


def control_address(cfg: Config, data_dir: Path, probes: Probes) -> str | None:
    """Where the node's tor listens for control: tor.control_port in connect mode,
    else the port its launched tor wrote to its data directory (None: not found)."""
    if cfg.tor.mode == "connect":
        return cfg.tor.control_port
    tor_dir = Path(cfg.tor.data_directory) if cfg.tor.data_directory else data_dir / "tor"
    text = probes.read_text(tor_dir / "control_port")
    if text is None or not text.strip().startswith("PORT="):
        return None
    return text.strip().removeprefix("PORT=")


def check_control(cfg: Config, data_dir: Path, probes: Probes, running: bool
                  ) -> tuple[Finding, ControlReport | None]:
    name = "tor control"
    if not cfg.security.enable_tor:
        return Finding(name, SKIP, "Tor is off"), None
    address = control_address(cfg, data_dir, probes)
    if cfg.tor.mode == "launch" and not running:
        return Finding(name, SKIP, "the node launches its own tor when it starts, and no "
                       "running node was found: nothing to ask yet"), None
    if address is None:
        return Finding(name, WARN, "the node runs, but its tor has not written its control "
                       "port (control_port in tor's data directory) yet",
                       "run doctor again in a minute; if it stays, see the node log"), None
    password = cfg.tor.control_password_file if cfg.tor.mode == "connect" else None
    try:
        report = probes.control(address, password)
    except ProbeError as e:
        if e.kind == "auth":
            fix = ("give the node read access to tor's auth cookie (add its user to tor's "
                   "group, Debian: debian-tor) or set tor.control_password_file to a file "
                   "holding the password whose hash is HashedControlPassword in the torrc")
        elif e.kind == "unreachable" and cfg.tor.mode == "connect":
            fix = (f"start tor with \"ControlPort {address.removeprefix('unix:')}\" (plus "
                   "CookieAuthentication 1) in its torrc, or correct tor.control_port to "
                   "where it listens (Debian's tor: see /etc/tor/torrc)")
        elif e.kind == "unreachable":
            fix = ("the node's own tor is not answering: look at the node log and "
                   f"{data_dir / 'tor' / 'notice.log'}, then restart the node")
        else:
            fix = "check that this address is tor's control port, not another service"
        return Finding(name, FAIL, f"tor's control port at {address}: {e}", fix), None
    return Finding(name, OK, f"tor {report.version} answers at {address}, "
                   f"authenticated ({report.auth_method})"), report


def check_sam(cfg: Config, probes: Probes, running: bool) -> Finding:
    name = "i2p SAM"
    if not cfg.i2p.enabled:
        return Finding(name, SKIP, "I2P is off")
    if cfg.i2p.launch and not running:
        return Finding(name, SKIP, "the node starts its own i2pd if nothing answers; no "
                       "running node was found")
    try:
        version = probes.sam(cfg.i2p.sam_address)
    except SAMError as e:
        return Finding(name, FAIL, f"the SAM bridge at {cfg.i2p.sam_address}: {e}",
                       "start i2pd with SAM enabled ([sam] enabled = true, address "
                       "127.0.0.1 and this port in i2pd.conf), set i2p.sam_address to where "
                       "it listens, or set i2p.launch: true")
    return Finding(name, OK, f"SAM {version} answers at {cfg.i2p.sam_address}")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def check_clock(report: ControlReport | None, now: float) -> Finding:
    name = "clock"
    if report is None or report.valid_after is None or report.valid_until is None:
        return Finding(name, SKIP, "cannot check: no tor with a consensus to compare with "
                       "(the node's records and tor both need a correct clock)")
    if now < report.valid_after:
        off, how = report.valid_after - now, "behind"
    elif now > report.valid_until:
        off, how = now - report.valid_until, "ahead of (or tor's consensus is older than)"
    else:
        return Finding(name, OK, "within the validity of tor's live consensus")
    text = f"this machine's clock is {_minutes(off)} {how} the Tor consensus"
    fix = ("set the clock: enable time sync (timedatectl set-ntp true, or chrony); identity "
           "records expire and tor refuses consensuses by the clock")
    return Finding(name, WARN if off <= CLOCK_FAIL else FAIL, text, fix) \
        if off > CLOCK_OK else Finding(name, OK, text + " (within 5 min)")


def check_permissions(cfg: Config, data_dir: Path, probes: Probes) -> list[Finding]:
    out: list[Finding] = []
    mode = probes.mode(data_dir)
    if mode is None:
        return [Finding("data dir", SKIP, f"{data_dir} does not exist yet (created at first "
                        "start, mode 0700)")]
    if mode & 0o077:
        out.append(Finding("data dir", FAIL, f"{data_dir} is mode {mode:04o}: other users "
                           "can look into the node's state", f"chmod 700 {data_dir}"))
    else:
        out.append(Finding("data dir", OK, f"{data_dir} is mode {mode:04o}"))
    identity = cfg.identity_dir(data_dir)
    secret = [*probes.listdir(identity), data_dir / cfg.api.token_file]
    loose = []
    for path in secret:
        m = probes.mode(path)
        if m is not None and m & 0o077:
            loose.append(f"{path} ({m:04o})")
    id_mode = probes.mode(identity)
    if id_mode is not None and id_mode & 0o077:
        loose.insert(0, f"{identity} ({id_mode:04o})")
    if loose:
        out.append(Finding("key files", FAIL, "readable by other users: " + ", ".join(loose),
                           f"chmod 700 {identity}; chmod 600 {identity}/* "
                           f"{data_dir / cfg.api.token_file}"))
    elif id_mode is None:
        out.append(Finding("key files", SKIP, f"no identity in {identity} yet (created 0600 "
                           "at first start or by: aegis-hidden identity init)"))
    else:
        out.append(Finding("key files", OK, f"identity key files in {identity} are 0600"))
    return out


def check_free_space(data_dir: Path, probes: Probes) -> Finding:
    free = probes.free_bytes(data_dir)
    text = f"{free / 1024 ** 3:.1f} GiB free for {data_dir}"
    if free < MIN_FREE:
        return Finding("disk space", FAIL, text + ": the node may fail to save its state",
                       "free some space on that file system or move the data dir "
                       "(--data-dir) to one with room")
    if free < LOW_FREE:
        return Finding("disk space", WARN, text, "free some space soon (the state database, "
                       "logs and tor's cache grow)")
    return Finding("disk space", OK, text)


def check_bootstrap(report: ControlReport | None) -> Finding:
    name = "tor bootstrap"
    if report is None:
        return Finding(name, SKIP, "no tor control connection")
    b = report.bootstrap
    if b is None:
        return Finding(name, FAIL, "tor did not say how far it has bootstrapped",
                       "check the tor log")
    if b.done:
        return Finding(name, OK, f"{b.progress}%: {b.summary or b.tag}")
    why = f" (tor warns: {b.warning})" if b.warning else ""
    return Finding(name, FAIL, f"only {b.progress}%: {b.summary or b.tag}{why}",
                   "give it a minute after start; if it stays here: check the clock, that "
                   "this machine can reach the Tor network, or use bridges where Tor is "
                   "blocked (tor.bridges, docs/tor.md)")


def check_own_onion(cfg: Config, report: ControlReport | None, state: dict[str, Any] | None,
                    probes: Probes) -> Finding:
    name = "own onion"
    if state is None:
        return Finding(name, SKIP, "no running node found (start it, then run doctor again)")
    onion = state.get("onion") or state.get("identity", {}).get("onion")
    if not isinstance(onion, str) or not onion:
        return Finding(name, SKIP, "the running node did not report its onion address")
    socks = cfg.tor.socks_port or (report.socks[0] if report and report.socks else None)
    if socks is None:
        return Finding(name, SKIP, "no SOCKS port of the node's tor to dial through")
    port = cfg.tor.onion_virtual_port
    try:
        seconds = probes.reach(socks, onion, port)
    except ProbeError as e:
        return Finding(name, FAIL, f"{onion}:{port} cannot be reached from the node's own "
                       f"tor: {e}", "a freshly started node needs a minute to publish its "
                       "onion service; if it stays unreachable, check tor bootstrap above "
                       "and the node log (aegis-hidden status)")
    return Finding(name, OK, f"{onion}:{port} reached through its own tor in {seconds:.1f}s")


def node_running(state: dict[str, Any] | None, now: float) -> bool:
    if not state or state.get("running") is False:
        return False
    updated = state.get("updated")
    return not isinstance(updated, int | float) or now - updated < STATUS_FRESH


def run_checks(cfg: Config, data_dir: Path, probes: Probes) -> list[Finding]:
    """Every check, in the order a person would fix them."""
    state = probes.node_state()
    running = node_running(state, probes.now())
    findings = [check_tor_binary(cfg, probes), *check_transports(cfg, probes),
                check_i2pd_binary(cfg, probes)]
    control, report = check_control(cfg, data_dir, probes, running)
    findings += [control, check_sam(cfg, probes, running), check_clock(report, probes.now()),
                 *check_permissions(cfg, data_dir, probes), check_free_space(data_dir, probes),
                 check_bootstrap(report),
                 check_own_onion(cfg, report, state if running else None, probes)]
    return findings


def render(findings: list[Finding]) -> list[str]:
    lines = []
    for f in findings:
        lines.append(f"{f.status.upper():5} {f.check:15} {f.text}")
        if f.fix and f.status in (FAIL, WARN):
            lines.append(f"{'':5} {'':15} fix: {f.fix}")
    failed = sum(f.status == FAIL for f in findings)
    lines.append(f"{failed} check(s) failed." if failed else "No problem found.")
    return lines


# ---------------------------------------------------------------- the command


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check tor, i2pd, keys, clock and disk; explain each "
                       "problem and its fix")
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for tor's control port or the SAM bridge")
    p.add_argument("--onion-timeout", type=float, default=60.0,
                   help="seconds to wait for the node's own onion to answer")
    p.add_argument("--json", action="store_true", help="the findings as one JSON object")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(Path(args.config) if args.config else None)
    except ConfigError as e:
        raise CLIError(f"the configuration has problems (aegis-hidden config check):\n{e}",
                       1) from None
    data_dir = cfg.resolve_data_dir(args.data_dir)

    def state() -> dict[str, Any] | None:
        try:
            return fetch(args)[1]
        except CLIError:
            return None

    findings = run_checks(cfg, data_dir, SystemProbes(state, timeout=args.timeout,
                                                     onion_timeout=args.onion_timeout))
    failed = any(f.status == FAIL for f in findings)
    if args.json:
        doc: Mapping[str, Any] = {"ok": not failed, "findings": [asdict(f) for f in findings]}
        print(json.dumps(doc))
    else:
        print("\n".join(render(findings)))
    return 1 if failed else 0
