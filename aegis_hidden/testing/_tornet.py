"""A private Tor network on 127.0.0.1: 3 directory authorities, relays, clients, bridges.

Used by the integration tests (a session fixture), ``aegis-hidden devnet`` and
``aegis-hidden demo``. It is a synchronous harness (``subprocess``): it runs
outside the node's reactor, like any other daemon the node talks to.

The shape and options, as measured with Debian 12's tor 0.4.9.11: every instance runs with
``TestingTorNetwork 1``; authorities vote every 10 s; relays and authorities
refuse exits (onion services need none); clients open a SOCKS and a control
port with cookie authentication. Keys are made with ``tor-gencert`` and
``tor --list-fingerprint``. The network's state (ports, pids, DirAuthority
lines) is kept in ``<directory>/network.json`` so another process can read or
stop it; each instance's notice log stays in its data directory.

Bridges (``bridges=N``, or :meth:`TorNetwork.add_bridge` on a running network)
are unlisted relays (``BridgeRelay 1``, ``PublishServerDescriptor 0``: no bridge
authority needed, the client fetches the descriptor from the bridge itself) that
serve obfs4 through Debian's ``obfs4proxy`` (``ServerTransportPlugin``), the
shape of chutney's ``bridge-obfs4`` template. :meth:`TorNetwork.bridge_line`
reads the line a client needs from obfs4proxy's ``pt_state/obfs4_bridgeline.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "network.json"

#: Options every instance of the private network carries.
COMMON_OPTIONS = (
    "TestingTorNetwork 1",
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.25",
    "TestingDirAuthVoteExit *",
    "TestingDirAuthVoteGuard *",
    "TestingDirAuthVoteHSDir *",
    "TestingMinExitFlagThreshold 0",
    "V3AuthNIntervalsValid 2",
    "GeoIPFile /nonexistent",
    "GeoIPv6File /nonexistent",
    "SafeLogging 0",
)

#: What a *client* of the network (a node's own tor) needs besides the DirAuthority lines.
CLIENT_OPTIONS = (
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.25",
    "GeoIPFile /nonexistent",
    "GeoIPv6File /nonexistent",
)

_AUTHORITY_OPTIONS = (
    "AuthoritativeDirectory 1",
    "V3AuthoritativeDirectory 1",
    "TestingV3AuthInitialVotingInterval 10",
    "TestingV3AuthInitialVoteDelay 2",
    "TestingV3AuthInitialDistDelay 2",
    "V3AuthVotingInterval 10",
    "V3AuthVoteDelay 2",
    "V3AuthDistDelay 2",
)

_PLACEHOLDER_AUTHORITY = "x 127.0.0.1:1 " + "0" * 40


#: Where Debian's obfs4proxy lives (the bridge's ServerTransportPlugin).
OBFS4PROXY = "/usr/bin/obfs4proxy"


class TorNetworkError(Exception):
    """The private network could not be set up, started or reached."""


def free_ports(count: int, avoid: Sequence[int] = (9050, 9051, 7656)) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (the kernel picks them)."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = s.getsockname()[1]
            if port not in avoid and port not in ports:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


@dataclass
class Instance:
    """One tor process of the network."""

    name: str
    role: str  # "authority", "relay", "client" or "bridge"
    data_dir: str
    or_port: int = 0
    dir_port: int = 0
    socks_port: int = 0
    control_port: int = 0
    fingerprint: str = ""
    v3ident: str = ""
    pid: int = 0
    pt_port: int = 0  # bridges: where obfs4 listens

    @property
    def log_file(self) -> Path:
        return Path(self.data_dir) / "notice.log"

    @property
    def torrc(self) -> Path:
        return Path(self.data_dir) / "torrc"

    def dir_authority_line(self) -> str:
        return (f"{self.name} orport={self.or_port} no-v2 v3ident={self.v3ident} "
                f"127.0.0.1:{self.dir_port} {self.fingerprint}")


@dataclass
class TorNetwork:
    """A private Tor network rooted at ``directory`` (created if missing)."""

    directory: Path
    authorities: int = 3
    relays: int = 2
    clients: int = 1
    bridges: int = 0
    tor_binary: str = "tor"
    obfs4proxy: str = OBFS4PROXY
    gencert_binary: str = "tor-gencert"
    instances: list[Instance] = field(default_factory=list)
    started_at: float = 0.0

    # -- state file ----------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return Path(self.directory) / STATE_FILE

    def save(self) -> None:
        data = {
            "authorities": self.authorities, "relays": self.relays, "clients": self.clients,
            "bridges": len(self.by_role("bridge")),
            "started_at": self.started_at,
            "instances": [asdict(i) for i in self.instances],
            "dir_authorities": self.dir_authority_lines(),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: Path) -> TorNetwork:
        path = Path(directory) / STATE_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TorNetworkError(f"no private network in {directory} (no {STATE_FILE})"
                                  ) from None
        except (OSError, ValueError) as e:
            raise TorNetworkError(f"cannot read {path}: {e}") from None
        net = cls(Path(directory), data["authorities"], data["relays"], data["clients"],
                  int(data.get("bridges", 0)))
        net.started_at = float(data.get("started_at", 0.0))
        net.instances = [Instance(**i) for i in data["instances"]]
        return net

    # -- views -----------------------------------------------------------------
    def by_role(self, role: str) -> list[Instance]:
        return [i for i in self.instances if i.role == role]

    @property
    def client(self) -> Instance:
        clients = self.by_role("client")
        if not clients:
            raise TorNetworkError("the network has no client instance")
        return clients[0]

    def dir_authority_lines(self) -> list[str]:
        return [a.dir_authority_line() for a in self.by_role("authority")]

    def node_tor_config(self, *, bridge: Instance | None = None,
                        timeout: float = 60.0) -> dict[str, Any]:
        """The ``tor`` config section that makes a node's own tor join this network.

        With ``bridge``, that tor reaches the network only through the bridge's obfs4.
        """
        section: dict[str, Any] = {"testing_network": True,
                                   "dir_authorities": self.dir_authority_lines()}
        if bridge is not None:
            section["bridges"] = [self.bridge_line(bridge, timeout)]
            section["transports"] = [f"obfs4={self.obfs4proxy}"]
        return section

    def bridge_line(self, bridge: Instance, timeout: float = 60.0) -> str:
        """``obfs4 127.0.0.1:PORT FINGERPRINT cert=... iat-mode=0`` of a running bridge.

        obfs4proxy writes its cert when the bridge starts it: waits up to ``timeout``.
        """
        path = Path(bridge.data_dir) / "pt_state" / "obfs4_bridgeline.txt"
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                text = ""
            for line in text.splitlines():
                words = line.split()
                if words[:2] == ["Bridge", "obfs4"]:
                    args = [w for w in words if w.startswith(("cert=", "iat-mode="))]
                    return (f"obfs4 127.0.0.1:{bridge.pt_port} {bridge.fingerprint} "
                            + " ".join(args))
            if not self.is_running(bridge) or time.monotonic() > deadline:
                raise TorNetworkError(
                    f"{bridge.name} wrote no obfs4 bridge line ({path}); its log:\n"
                    f"{self.log_tail(bridge.name)}")
            time.sleep(0.2)

    def bridge_lines(self, timeout: float = 60.0) -> list[str]:
        return [self.bridge_line(b, timeout) for b in self.by_role("bridge")]

    def is_running(self, inst: Instance) -> bool:
        if inst.pid <= 0:
            return False
        try:
            os.kill(inst.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie of ours counts as dead.
        try:
            stat = Path(f"/proc/{inst.pid}/stat").read_text()
        except OSError:
            return True
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"

    # -- set-up ------------------------------------------------------------------
    def setup(self) -> None:
        """Allocate ports, make every key and write every torrc (no process starts)."""
        if self.authorities < 3 or self.authorities + self.relays < 5:
            raise TorNetworkError("onion services need 3 authorities and at least 5 relays "
                                  "in all (authorities count as relays)")
        if shutil.which(self.tor_binary) is None or shutil.which(self.gencert_binary) is None:
            raise TorNetworkError(
                f"{self.tor_binary!r} and {self.gencert_binary!r} are needed "
                "(Debian package 'tor')")
        root = Path(self.directory).resolve()
        root.mkdir(parents=True, exist_ok=True)
        self.directory = root
        if self.bridges and not Path(self.obfs4proxy).exists():
            raise TorNetworkError(f"a bridge needs {self.obfs4proxy} (Debian package "
                                  "'obfs4proxy')")
        ports = iter(free_ports(2 * (self.authorities + self.relays + self.clients
                                     + self.bridges)))
        self.instances = []
        for i in range(self.authorities):
            self.instances.append(Instance(f"auth{i}", "authority", str(root / f"auth{i}"),
                                           or_port=next(ports), dir_port=next(ports)))
        for i in range(self.relays):
            self.instances.append(Instance(f"relay{i}", "relay", str(root / f"relay{i}"),
                                           or_port=next(ports), dir_port=next(ports)))
        for i in range(self.clients):
            self.instances.append(Instance(f"client{i}", "client", str(root / f"client{i}"),
                                           socks_port=next(ports), control_port=next(ports)))
        for i in range(self.bridges):
            self.instances.append(Instance(f"bridge{i}", "bridge", str(root / f"bridge{i}"),
                                           or_port=next(ports), pt_port=next(ports)))
        for inst in self.instances:
            d = Path(inst.data_dir)
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(mode=0o700, parents=True)
        for inst in self.by_role("authority"):
            self._make_authority_keys(inst)
        for inst in self.by_role("bridge"):
            inst.fingerprint = self._list_fingerprint(inst)
        for inst in self.instances:
            inst.torrc.write_text(self._torrc(inst), encoding="utf-8")
        self.save()

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        try:
            done = subprocess.run(args, input=stdin, capture_output=True, text=True,
                                  timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TorNetworkError(f"{args[0]} failed: {e}") from None
        if done.returncode != 0:
            raise TorNetworkError(f"{' '.join(args[:2])} exited {done.returncode}: "
                                  f"{(done.stderr or done.stdout).strip()[-400:]}")
        return done.stdout

    def _make_authority_keys(self, inst: Instance) -> None:
        keys = Path(inst.data_dir) / "keys"
        keys.mkdir(mode=0o700)
        self._run([self.gencert_binary, "--create-identity-key", "-m", "12",
                   "-a", f"127.0.0.1:{inst.dir_port}",
                   "-i", str(keys / "authority_identity_key"),
                   "-s", str(keys / "authority_signing_key"),
                   "-c", str(keys / "authority_certificate"),
                   "--passphrase-fd", "0"], stdin="\n")
        for line in (keys / "authority_certificate").read_text().splitlines():
            if line.startswith("fingerprint "):
                inst.v3ident = line.split()[1]
        if not inst.v3ident:
            raise TorNetworkError(f"could not read the v3 identity of {inst.name}")
        inst.fingerprint = self._list_fingerprint(inst)

    def _list_fingerprint(self, inst: Instance) -> str:
        """Make the relay keys of ``inst`` now and return its fingerprint."""
        self._run([self.tor_binary, "--list-fingerprint", "--DataDirectory", inst.data_dir,
                   "--ORPort", str(inst.or_port), "--Nickname", inst.name,
                   "--TestingTorNetwork", "1", "--DirAuthority", _PLACEHOLDER_AUTHORITY,
                   "--GeoIPFile", "/nonexistent", "--GeoIPv6File", "/nonexistent"])
        fp = (Path(inst.data_dir) / "fingerprint").read_text().split()
        if len(fp) != 2:
            raise TorNetworkError(f"could not read the fingerprint of {inst.name}")
        return fp[1]

    def add_bridge(self) -> Instance:
        """Add an obfs4 bridge to this network; started at once if the network runs.

        No authority needs to know a bridge, so a running network takes one without
        a restart (the integration tests share the session's network this way).
        """
        if not Path(self.obfs4proxy).exists():
            raise TorNetworkError(f"a bridge needs {self.obfs4proxy} (Debian package "
                                  "'obfs4proxy')")
        n = len(self.by_role("bridge"))
        or_port, pt_port = free_ports(2)
        inst = Instance(f"bridge{n}", "bridge", str(Path(self.directory) / f"bridge{n}"),
                        or_port=or_port, pt_port=pt_port)
        d = Path(inst.data_dir)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(mode=0o700, parents=True)
        inst.fingerprint = self._list_fingerprint(inst)
        inst.torrc.write_text(self._torrc(inst), encoding="utf-8")
        self.instances.append(inst)
        self.bridges = n + 1
        if any(self.is_running(i) for i in self.instances if i is not inst):
            self._spawn(inst)
        self.save()
        return inst

    def _torrc(self, inst: Instance) -> str:
        lines = [f"# {inst.name} ({inst.role}) of the aegis-hidden private Tor network",
                 f"Nickname {inst.name}", f"DataDirectory {inst.data_dir}",
                 f"Log notice file {inst.log_file}", "RunAsDaemon 0", *COMMON_OPTIONS]
        lines += [f"DirAuthority {line}" for line in self.dir_authority_lines()]
        if inst.role in ("authority", "relay"):
            lines += ["Address 127.0.0.1", f"ORPort 127.0.0.1:{inst.or_port}",
                      f"DirPort 127.0.0.1:{inst.dir_port}", "SocksPort 0", "ExitRelay 0",
                      "ExitPolicy reject *:*", f"ContactInfo {inst.name}@aegis-hidden.test"]
        if inst.role == "bridge":
            lines += ["Address 127.0.0.1", f"ORPort 127.0.0.1:{inst.or_port}", "SocksPort 0",
                      "ExitRelay 0", "ExitPolicy reject *:*", "BridgeRelay 1",
                      "PublishServerDescriptor 0",
                      f"ServerTransportPlugin obfs4 exec {self.obfs4proxy}",
                      f"ServerTransportListenAddr obfs4 127.0.0.1:{inst.pt_port}",
                      "ExtORPort auto", f"ContactInfo {inst.name}@aegis-hidden.test"]
        if inst.role == "authority":
            lines += list(_AUTHORITY_OPTIONS)
        if inst.role == "client":
            lines += [f"SocksPort 127.0.0.1:{inst.socks_port} ExtendedErrors",
                      f"ControlPort 127.0.0.1:{inst.control_port}", "CookieAuthentication 1"]
        return "\n".join(lines) + "\n"

    # -- processes ---------------------------------------------------------------
    def start(self) -> None:
        """Start every instance (set up first if that was not done)."""
        if not self.instances:
            self.setup()
        self.started_at = time.time()
        for inst in self.instances:
            self._spawn(inst)
        self.save()

    def _spawn(self, inst: Instance) -> None:
        inst.log_file.unlink(missing_ok=True)
        try:
            proc = subprocess.Popen(
                [self.tor_binary, "-f", str(inst.torrc), "--ignore-missing-torrc"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            self.stop()
            raise TorNetworkError(f"cannot start tor: {e}") from None
        inst.pid = proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every instance (SIGTERM, then SIGKILL after ``timeout``)."""
        for inst in self.instances:
            if self.is_running(inst):
                os.kill(inst.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for inst in self.instances:
            while self.is_running(inst) and time.monotonic() < deadline:
                _reap(inst.pid)
                time.sleep(0.1)
            if self.is_running(inst):
                os.kill(inst.pid, signal.SIGKILL)
            _reap(inst.pid)
            inst.pid = 0
        if self.state_file.exists():
            self.save()

    def stop_instance(self, inst: Instance, timeout: float = 10.0) -> None:
        """Stop one instance (a bridge added for one test) and forget it."""
        if self.is_running(inst):
            os.kill(inst.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.is_running(inst) and time.monotonic() < deadline:
            _reap(inst.pid)
            time.sleep(0.1)
        if self.is_running(inst):
            os.kill(inst.pid, signal.SIGKILL)
        _reap(inst.pid)
        inst.pid = 0
        if inst in self.instances:
            self.instances.remove(inst)
        if self.state_file.exists():
            self.save()

    def status(self) -> list[dict[str, Any]]:
        out = []
        for inst in self.instances:
            out.append({"name": inst.name, "role": inst.role, "pid": inst.pid,
                        "running": self.is_running(inst),
                        "bootstrap": bootstrap_percent(inst.log_file)})
        return out

    def wait_bootstrapped(self, timeout: float = 180.0) -> float:
        """Block until every client logged ``Bootstrapped 100%``; seconds since start.

        Raises :class:`TorNetworkError` naming the stuck instance and the tail of its
        log if a client did not make it, or an instance died.
        """
        deadline = time.monotonic() + timeout
        while True:
            dead = [i.name for i in self.instances if not self.is_running(i)]
            if dead:
                raise TorNetworkError(f"tor instance(s) {', '.join(dead)} exited; logs: "
                                      f"{self.directory}\n{self.log_tail(dead[0])}")
            pending = [c for c in self.by_role("client") if bootstrap_percent(c.log_file) < 100]
            if not pending:
                return time.time() - self.started_at
            if time.monotonic() > deadline:
                c = pending[0]
                raise TorNetworkError(
                    f"{c.name} not bootstrapped after {timeout:.0f}s "
                    f"({bootstrap_percent(c.log_file)}%); logs kept in {self.directory}\n"
                    f"{self.log_tail(c.name)}")
            time.sleep(0.5)

    def log_tail(self, name: str, lines: int = 15) -> str:
        for inst in self.instances:
            if inst.name == name and inst.log_file.exists():
                return "\n".join(inst.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def bootstrap_percent(log_file: Path) -> int:
    """The last ``Bootstrapped N%`` figure in a tor notice log (0 if none yet)."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return 0
    idx = text.rfind("Bootstrapped ")
    if idx < 0:
        return 0
    digits = text[idx + len("Bootstrapped "):].split("%", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _reap(pid: int) -> None:
    """Collect a child's exit status if it is our child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# -- in-memory fakes of a tor, for unit tests of anything that drives tor ----------------

class FakeTorControl:
    """A stand-in for txtorcon's ``TorControlProtocol`` (what the provider uses of it).

    Records every command in ``commands``; replies from ``replies`` (a command
    prefix -> reply text, or an exception to fail with) or sensible defaults.
    ``emit`` delivers an asynchronous event; ``disconnect`` drops the connection.
    """

    def __init__(self, service_id: str | None = None, socks: str = "127.0.0.1:9999") -> None:
        from twisted.internet.defer import Deferred

        self.commands: list[str] = []
        self.replies: dict[str, Any] = {}
        self.listeners: dict[str, list[Any]] = {}
        self.service_id = service_id
        self.socks = socks
        self.bootstrap_line = 'NOTICE BOOTSTRAP PROGRESS=0 TAG=starting SUMMARY="Starting"'
        self.hold: dict[str, Any] = {}
        self.auto_upload = True  # emit HS_DESC UPLOADED when an ADD_ONION succeeds
        self._disconnected: Deferred[None] = Deferred()

    def _default(self, cmd: str) -> str:
        if cmd == "GETINFO status/bootstrap-phase":
            return f"status/bootstrap-phase={self.bootstrap_line}\nOK"
        if cmd == "GETINFO net/listeners/socks":
            return f'net/listeners/socks="{self.socks}"\nOK'
        if cmd.startswith("ADD_ONION"):
            if self.service_id is None:
                from txtorcon import TorProtocolError

                raise TorProtocolError(512, "Bad arguments to ADD_ONION")
            if self.auto_upload:
                self.emit("HS_DESC", f"UPLOADED {self.service_id} UNKNOWN $AAAA~relay0")
            return f"ServiceID={self.service_id}\nOK"
        return "OK"

    def queue_command(self, cmd: str | bytes) -> Any:
        from twisted.internet.defer import Deferred, fail, succeed

        text = cmd.decode() if isinstance(cmd, bytes) else cmd
        self.commands.append(text)
        for prefix, d in self.hold.items():
            if text.startswith(prefix):
                held: Deferred[str] = d
                return held
        reply: Any = None
        for prefix, value in self.replies.items():
            if text.startswith(prefix):
                reply = value
                break
        try:
            if reply is None:
                reply = self._default(text)
        except Exception as e:  # noqa: BLE001 - handed to the caller as a failed Deferred
            return fail(e)
        if isinstance(reply, BaseException):
            return fail(reply)
        return succeed(reply)

    def add_event_listener(self, evt: str, callback: Any) -> None:
        self.listeners.setdefault(evt, []).append(callback)

    def remove_event_listener(self, evt: str, callback: Any) -> None:
        self.listeners.get(evt, []).remove(callback)

    def emit(self, evt: str, text: str) -> None:
        for cb in list(self.listeners.get(evt, [])):
            cb(text)

    def set_bootstrap(self, progress: int, tag: str = "tag", summary: str = "s") -> None:
        self.bootstrap_line = f'NOTICE BOOTSTRAP PROGRESS={progress} TAG={tag} SUMMARY="{summary}"'
        self.emit("STATUS_CLIENT", self.bootstrap_line)

    def when_disconnected(self) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            d.callback(None)
            return result

        self._disconnected.addBoth(fire)
        return d

    def disconnect(self) -> None:
        if not self._disconnected.called:
            self._disconnected.callback(None)

    def sent(self, verb: str) -> list[str]:
        return [c for c in self.commands if c.split(" ", 1)[0] == verb]


class FakeTorProcess:
    """A launched tor that a test can kill; records the signals sent to it."""

    def __init__(self, pid: int = 4242) -> None:
        self.pid: int | None = pid
        self.signals: list[str] = []
        self._waiters: list[Any] = []
        self.dead = False

    def ended(self) -> Any:
        from twisted.internet.defer import Deferred, succeed

        if self.dead:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def signal(self, name: str) -> None:
        self.signals.append(name)
        if name in ("KILL", "TERM"):
            self.die()

    def die(self) -> None:
        if self.dead:
            return
        self.dead = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def output_tail(self) -> str:
        return ""


# -- node processes on the private network (integration tests, demo, benchmark) -----------

@dataclass
class NodeProcess:
    """One ``twistd -n aegis-hidden`` node whose own tor joins a private network."""

    name: str
    data_dir: Path
    onion: str
    listen_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "node.log"

    @property
    def status_file(self) -> Path:
        return self.data_dir / "status.json"

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data

    def tor_state(self) -> dict[str, Any]:
        tor: dict[str, Any] = self.status().get("transports", {}).get("tor", {})
        return tor

    def peer(self, onion: str) -> dict[str, Any]:
        peer: dict[str, Any] = self.status().get("peers", {}).get(onion, {})
        return peer

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the node (it removes its onion and stops its tor); SIGKILL if stuck."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def stopped_cleanly(self) -> bool:
        """Exited on our SIGTERM (twistd re-raises it: status -15, or 0) after shutting down."""
        if self.proc is None or self.proc.returncode not in (0, -signal.SIGTERM):
            return False
        try:
            return "Server Shut Down." in self.log_file.read_text(errors="replace")
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def prepare_node(net: TorNetwork, name: str, data_dir: Path, *, listen_port: int | None = None,
                 bootstrap: Sequence[str] = (), extra: dict[str, Any] | None = None
                 ) -> NodeProcess:
    """Create the node's identity and its config file (joins ``net`` with its own tor)."""
    import yaml

    from ..identity import load_or_create

    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ident, _ = load_or_create(data_dir / "identity", time.time())
    port = listen_port or free_ports(1)[0]
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "network": {"listen_address": f"127.0.0.1:{port}", "bootstrap_nodes": list(bootstrap),
                    "connection_timeout": 60},
        "tor": {**net.node_tor_config(), "bootstrap_timeout": 240},
        "api": {"enabled": False},
        "logging": {"status_peers": True},  # the per-peer list in status.json (off by default)
    }
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    (data_dir / "node.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return NodeProcess(name, data_dir, ident.onion, port)


def set_bootstrap(node: NodeProcess, bootstrap: Sequence[str]) -> None:
    """Rewrite a prepared node's ``network.bootstrap_nodes`` (before it starts)."""
    import yaml

    path = node.data_dir / "node.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["network"]["bootstrap_nodes"] = list(bootstrap)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def start_node(node: NodeProcess, twistd: str | None = None, *, api: bool = False
               ) -> NodeProcess:
    """Run the node as ``twistd -n aegis-hidden`` (its own process group).

    The management API is off unless ``api`` (then the node config's ``api``
    section applies).
    """
    import sys

    exe = twistd or str(Path(sys.executable).with_name("twistd"))
    node.log_file.unlink(missing_ok=True)
    node.proc = subprocess.Popen(
        [exe, "-n", "--pidfile=", f"--logfile={node.log_file}", "aegis-hidden",
         "--config", str(node.data_dir / "node.yaml"), "--data-dir", str(node.data_dir),
         *([] if api else ["--no-api"])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    return node


def wait_for(predicate: Any, timeout: float, what: str, nodes: Sequence[NodeProcess] = (),
             interval: float = 0.5) -> Any:
    """Poll ``predicate()`` until truthy; :class:`TorNetworkError` with node logs if not."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        dead = [n.name for n in nodes if n.proc is not None and not n.alive()]
        if dead or time.monotonic() > deadline:
            why = f"node(s) {', '.join(dead)} exited" if dead else f"not after {timeout:.0f}s"
            logs = "\n".join(f"--- {n.name} ({n.log_file})\n{n.log_tail()}" for n in nodes)
            raise TorNetworkError(f"waiting for {what}: {why}\n{logs}")
        time.sleep(interval)
