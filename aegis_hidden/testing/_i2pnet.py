"""A private I2P network of patched ``i2pd`` routers on 127.0.0.1, for tests and devnet.

Shape (measured to work, see docs/i2p.md): 4 routers, 2 of them floodfills, a
``netid`` other than 2 (so they can never join the real I2P network), NTCP2 and
SSU2 on their own ports of 127.0.0.1, ``reservedrange = false`` (honoured only
by the patched build: aegis_hidden/testing/i2pd/reservedrange.patch), no
reseed servers but ``reseed.zipfile`` pointing at a zip of the routers' own
``router.info`` files, 1-hop tunnels, SAM per router on a free port, the
addressbook enabled but subscribed to a ``.b32.i2p`` URL that does not exist
(i2pd 2.45.1 crashes on NAMING LOOKUP with the addressbook off). Each router
gets ``--datadir`` on the command line (i2pd ignores ``datadir`` in its config
file). Logs stay in the network's directory. Put node destinations on
:attr:`I2PNetwork.client_routers` (the routers that are not floodfills).

This is a synchronous harness (subprocesses and blocking sockets), like the
Tor one: it is driven from a pytest session fixture or a CLI command, never
from inside the reactor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..i2p import b32_address
from ..i2p._sam import hello, parse_line, session_create

DEFAULT_NETID = 37
PATCH = Path(__file__).with_name("i2pd") / "reservedrange.patch"


class I2PNetworkError(RuntimeError):
    """The private I2P network could not be built or started (the message says why)."""


def _cache_root() -> Path:
    env = os.environ.get("AEGIS_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aegis-hidden"


def installed_i2pd_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "i2pd"],
                             capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise I2PNetworkError(f"cannot find the installed i2pd Debian package: {e}") from None
    return out.stdout.strip()


def patched_i2pd_path() -> Path:
    """Where .ci/build-i2pd.sh puts the patched i2pd for the installed version."""
    digest = hashlib.sha256(PATCH.read_bytes()).hexdigest()[:12]
    return _cache_root() / f"i2pd-{installed_i2pd_version()}-{digest}" / "i2pd"


def find_patched_i2pd(build: bool = True) -> Path:
    """The patched binary: ``$AEGIS_I2PD``, or the cache (built once when missing)."""
    env = os.environ.get("AEGIS_I2PD")
    if env:
        return Path(env)
    path = patched_i2pd_path()
    if path.exists():
        return path
    script = Path(__file__).resolve().parents[2] / ".ci" / "build-i2pd.sh"
    if build and script.exists():
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                                timeout=1800)
        if result.returncode == 0 and path.exists():
            return path
        raise I2PNetworkError(f"building the patched i2pd failed:\n{result.stderr[-3000:]}")
    raise I2PNetworkError(f"no patched i2pd at {path}: run .ci/build-i2pd.sh (make setup)")


def _free_port(udp_too: bool = True, udp_below: bool = False) -> int:
    """A port free for TCP (and UDP; and UDP port-1 for SAM's datagram socket)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            checks = ([port] if udp_too else []) + ([port - 1] if udp_below else [])
            for p in checks:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", p))
            if udp_below:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
        except OSError:
            continue
        if port not in (7656, 7655, 4444, 4447, 7070):
            return port
    raise I2PNetworkError("no free port on 127.0.0.1")


@dataclass
class Router:
    index: int
    directory: Path
    port: int  # NTCP2 (TCP) and SSU2 (UDP)
    sam_port: int  # SAM TCP; i2pd also binds UDP sam_port - 1
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # of a router started by another process (see I2PNetwork.load)

    @property
    def log_file(self) -> Path:
        return self.directory / "i2pd.log"

    @property
    def sam_address(self) -> str:
        return f"127.0.0.1:{self.sam_port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class I2PNetwork:
    """A private I2P network (see the module docstring). ``setup()`` then ``start()``."""

    def __init__(self, directory: Path, routers: int = 4, *, binary: Path | None = None,
                 netid: int = DEFAULT_NETID, tunnel_length: int = 1,
                 loglevel: str = "info", floodfills: int = 2) -> None:
        if routers < 2:
            raise ValueError("a private I2P network needs 2 or more routers (4 work)")
        if netid == 2:
            raise ValueError("netid 2 is the real I2P network")
        self.directory = Path(directory)
        self.count = routers
        self.binary = binary
        self.netid = netid
        self.tunnel_length = tunnel_length
        self.loglevel = loglevel
        if not 1 <= floodfills < routers:
            raise ValueError("need at least one floodfill and one router that is not")
        self.floodfills = floodfills
        self.routers: list[Router] = []
        self.zip_path = self.directory / "reseed.zip"
        self._fake_b32 = b32_address(secrets.token_bytes(16))

    # ---------------------------------------------------------------- state

    @property
    def state_file(self) -> Path:
        return self.directory / "network.json"

    def save(self) -> None:
        """Record ports and pids, so that another process can ``load`` and stop it."""
        data = {
            "netid": self.netid, "floodfills": self.floodfills, "binary": str(self.binary),
            "tunnel_length": self.tunnel_length,
            "routers": [{"index": r.index, "port": r.port, "sam_port": r.sam_port,
                         "pid": r.process.pid if r.process is not None else r.pid}
                        for r in self.routers],
        }
        self.state_file.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> I2PNetwork:
        """A network set up (and maybe started) by another process, from its state file."""
        path = Path(directory) / "network.json"
        try:
            data = json.loads(path.read_text())
            net = cls(Path(directory), len(data["routers"]), binary=Path(data["binary"]),
                      netid=int(data["netid"]), tunnel_length=int(data["tunnel_length"]),
                      floodfills=int(data["floodfills"]))
            for r in data["routers"]:
                net.routers.append(Router(int(r["index"]), net.directory / f"router{r['index']}",
                                          int(r["port"]), int(r["sam_port"]), pid=r["pid"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise I2PNetworkError(f"{path}: no usable I2P network state ({e})") from None
        return net

    def is_running(self, index: int) -> bool:
        return self._alive(self.routers[index])

    def _is_our_i2pd(self, router: Router) -> bool:
        """The pid is alive and is an i2pd with this router's data dir (not a reused pid)."""
        try:
            cmdline = Path(f"/proc/{router.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"--datadir={router.directory}".encode() in cmdline

    # ---------------------------------------------------------------- build

    def setup(self) -> None:
        """Ports, config files, and the reseed zip of every router's router.info."""
        if self.binary is None:
            self.binary = find_patched_i2pd()
        self.directory.mkdir(parents=True, exist_ok=True)
        used: set[int] = set()
        for i in range(self.count):
            port = self._pick(used, udp_below=False)
            sam = self._pick(used, udp_below=True)
            router = Router(i, self.directory / f"router{i}", port, sam)
            router.directory.mkdir(exist_ok=True)
            (router.directory / "tunnels.conf").write_text("")
            self.routers.append(router)
            self._write_config(router, reseed=False)
        # First start: each router creates its keys and router.info, then stops.
        for router in self.routers:
            self._spawn(router)
        deadline = time.monotonic() + 60
        for router in self.routers:
            info = router.directory / "router.info"
            while not info.exists() or info.stat().st_size == 0:
                self._check_alive(router)
                if time.monotonic() > deadline:
                    self.stop()
                    raise I2PNetworkError(f"router {router.index} wrote no router.info:\n"
                                          f"{router.log_tail()}")
                time.sleep(0.2)
        self.stop()
        with zipfile.ZipFile(self.zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            for router in self.routers:
                data = (router.directory / "router.info").read_bytes()
                name = hashlib.sha256(data).hexdigest()[:16]
                zf.writestr(f"routerInfo-{name}.dat", data)
        for router in self.routers:
            self._write_config(router, reseed=True)

    def _pick(self, used: set[int], udp_below: bool) -> int:
        while True:
            port = _free_port(udp_too=True, udp_below=udp_below)
            if port not in used and port - 1 not in used and port + 1 not in used:
                used.update({port, port - 1})
                return port

    def _write_config(self, router: Router, reseed: bool) -> None:
        hops = self.tunnel_length
        fake = f"http://{self._fake_b32}/hosts.txt"
        conf = f"""# aegis-hidden private I2P test network, router {router.index}
log = file
logfile = {router.directory / 'i2pd.log'}
loglevel = {self.loglevel}
netid = {self.netid}
host = 127.0.0.1
address4 = 127.0.0.1
ipv4 = true
ipv6 = false
nat = false
reservedrange = false
floodfill = {'true' if router.index < self.floodfills else 'false'}
notransit = false
bandwidth = X
share = 100
daemon = false
service = false
port = {router.port}

[ntcp2]
enabled = true
published = true
port = {router.port}

[ssu2]
enabled = true
published = true
port = {router.port}

[http]
enabled = false

[httpproxy]
enabled = false

[socksproxy]
enabled = false

[sam]
enabled = true
address = 127.0.0.1
port = {router.sam_port}

[bob]
enabled = false

[i2cp]
enabled = false

[i2pcontrol]
enabled = false

[upnp]
enabled = false

[nettime]
enabled = false

[reseed]
verify = false
urls =
yggurls =
threshold = 1
zipfile = {self.zip_path if reseed else ''}

[addressbook]
enabled = true
defaulturl = {fake}
subscriptions = {fake}

[exploratory]
inbound.length = {hops}
outbound.length = {hops}
inbound.quantity = 2
outbound.quantity = 2

[persist]
profiles = false
"""
        (router.directory / "i2pd.conf").write_text(conf)

    # ---------------------------------------------------------------- run

    def _spawn(self, router: Router) -> None:
        assert self.binary is not None
        d = router.directory
        router.process = subprocess.Popen(
            [str(self.binary), f"--datadir={d}", f"--conf={d / 'i2pd.conf'}",
             f"--tunconf={d / 'tunnels.conf'}", f"--tunnelsdir={d / 'tunnels.d'}",
             f"--certsdir={d / 'certificates'}", f"--pidfile={d / 'i2pd.pid'}"],
            stdin=subprocess.DEVNULL, stdout=open(d / "stdout.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, cwd=d, start_new_session=True)

    def _check_alive(self, router: Router) -> None:
        if router.process is not None and router.process.poll() is not None:
            raise I2PNetworkError(f"i2pd router {router.index} exited with "
                                  f"{router.process.returncode}:\n{router.log_tail()}")

    def start(self) -> None:
        """Start every router (setup() must have run)."""
        if not self.routers:
            raise I2PNetworkError("setup() first")
        for router in self.routers:
            self._spawn(router)
        self.save()
        for router in self.routers:
            self._wait_sam(router, 30)

    def _wait_sam(self, router: Router, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(router)
            try:
                with socket.create_connection(("127.0.0.1", router.sam_port), timeout=2) as s:
                    s.sendall(hello())
                    if s.recv(200).startswith(b"HELLO REPLY RESULT=OK"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise I2PNetworkError(f"router {router.index}: SAM did not answer on "
                                      f"{router.sam_address}:\n{router.log_tail()}")
            time.sleep(0.3)

    def restart_router(self, index: int) -> None:
        """Stop one router (SIGTERM) and start it again with the same data dir."""
        router = self.routers[index]
        self._stop_router(router)
        self._spawn(router)
        self.save()
        self._wait_sam(router, 30)

    def wait_ready(self, timeout: float = 180) -> float:
        """Until a TRANSIENT STREAM session comes up on every router; returns seconds."""
        start = time.monotonic()
        socks: list[tuple[Router, socket.socket]] = []
        pending: dict[int, bytes] = {}
        try:
            for router in self.routers:
                s = socket.create_connection(("127.0.0.1", router.sam_port), timeout=5)
                s.sendall(hello())
                parse_line(s.recv(200).split(b"\n")[0]).raise_for_result()
                s.sendall(session_create("STREAM", f"ready{router.index}-{secrets.token_hex(3)}",
                                         options={"inbound.length": 1, "outbound.length": 1}))
                s.setblocking(False)
                socks.append((router, s))
                pending[router.index] = b""
            while pending:
                if time.monotonic() - start > timeout:
                    tails = "\n".join(f"--- router {r.index}\n{r.log_tail(15)}" for r in self.routers)
                    raise I2PNetworkError(f"routers {sorted(pending)} built no tunnels in "
                                          f"{timeout:.0f}s:\n{tails}")
                for router, s in socks:
                    if router.index not in pending:
                        continue
                    self._check_alive(router)
                    try:
                        chunk = s.recv(4096)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise I2PNetworkError(f"router {router.index} closed the SAM socket:\n"
                                              f"{router.log_tail()}")
                    pending[router.index] += chunk
                    if b"\n" in pending[router.index]:
                        line = pending.pop(router.index).split(b"\n")[0]
                        parse_line(line).raise_for_result()
                time.sleep(0.5)
        finally:
            for _, s in socks:
                s.close()
        return time.monotonic() - start

    @property
    def client_routers(self) -> list[int]:
        """Routers that are not floodfills: where node destinations belong.

        i2pd 2.45.1 misreads a LeaseSet2 that its own floodfill store holds
        ("LeaseSet: Rncorrect number of leases"), so a destination on a floodfill
        router treats a fresh peer LeaseSet as expired and its streams stall.
        """
        return [r.index for r in self.routers if r.index >= self.floodfills]

    def _alive(self, router: Router) -> bool:
        if router.process is not None:
            return router.process.poll() is None
        return router.pid is not None and self._is_our_i2pd(router)

    def _signal(self, router: Router, sig: int) -> None:
        if not self._alive(router):
            return
        pid = router.process.pid if router.process is not None else router.pid
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _stop_routers(self, routers: list[Router], grace: float = 10.0) -> None:
        # SIGTERM ends i2pd's main loop (SIGINT would wait up to 10 minutes for transit
        # tunnels); 2.45.1 sometimes hangs stopping its SAM bridge, hence the SIGKILL.
        for router in routers:
            self._signal(router, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(self._alive(r) for r in routers) and time.monotonic() < deadline:
            time.sleep(0.2)
        for router in routers:
            self._signal(router, signal.SIGKILL)
            if router.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    router.process.wait(5)
            router.process = None
            router.pid = None

    def _stop_router(self, router: Router) -> None:
        self._stop_routers([router])

    def stop(self) -> None:
        """Stop every router at once (SIGTERM, then SIGKILL after 10 s)."""
        self._stop_routers(self.routers)
        if self.state_file.parent.exists() and self.routers:
            self.save()

    def pids(self) -> list[int]:
        return [r.process.pid for r in self.routers if r.process is not None]

    def rss_mib(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                continue
        return total / 1024

    def logs(self) -> str:
        return "\n".join(f"--- router {r.index} ({r.log_file})\n{r.log_tail()}"
                         for r in self.routers)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
