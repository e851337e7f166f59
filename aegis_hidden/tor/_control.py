"""Tor control-port text, with no I/O: bootstrap status, ADD_ONION, client auth.

The commands txtorcon has no helper for (ADD_ONION with our own ED25519-V3 key
and ``ClientAuthV3``, ``ONION_CLIENT_AUTH_ADD``) are formatted here and sent
through txtorcon's ``TorControlProtocol.queue_command``; their replies are
parsed here too (control-spec §3.27, §3.30).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..addresses import (
    HostPortError,
    OnionAddressError,
    onion_service_id,
    public_key_from_onion_address,
    split_host_port,
)
from ..identity import parse_public_key
from ._errors import ControlReplyError

#: The ADD_ONION keyword that turns on onion-service proof-of-work (tor's
#: ``HiddenServicePoWDefensesEnabled``; tor keeps its own queue rate and burst).
POW_KEYWORD = "PoWDefensesEnabled"

_TOKEN = re.compile(r'\s*([A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_keywords(text: str) -> dict[str, str]:
    """``KEY=value KEY="quoted \\"value\\""`` pairs of a control-port line."""
    out: dict[str, str] = {}
    for m in _TOKEN.finditer(text):
        key, value = m.group(1), m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[key] = value
    return out


@dataclass(frozen=True)
class BootstrapStatus:
    """One ``BOOTSTRAP`` status event (or ``GETINFO status/bootstrap-phase``)."""

    progress: int
    tag: str
    summary: str
    severity: str = "NOTICE"
    warning: str | None = None
    reason: str | None = None

    @property
    def done(self) -> bool:
        return self.progress >= 100

    def to_json(self) -> dict[str, object]:
        return {"progress": self.progress, "tag": self.tag, "summary": self.summary,
                "warning": self.warning, "reason": self.reason}


def parse_bootstrap(line: str) -> BootstrapStatus | None:
    """Parse ``NOTICE BOOTSTRAP PROGRESS=85 TAG=ap_conn SUMMARY="..."``.

    Accepts the text of a ``STATUS_CLIENT`` event (with or without the event name)
    or the value of ``status/bootstrap-phase``. Returns None for other status
    events; raises :class:`ControlReplyError` for a malformed BOOTSTRAP line.
    """
    words = line.strip().split(None, 3)
    if words and words[0] == "STATUS_CLIENT":
        words = words[1:]
    if len(words) < 2 or words[1] != "BOOTSTRAP":
        return None
    severity = words[0]
    kw = parse_keywords(line.split("BOOTSTRAP", 1)[1])
    raw = kw.get("PROGRESS")
    if raw is None or not raw.isdigit() or int(raw) > 100:
        raise ControlReplyError(f"BOOTSTRAP status without a PROGRESS from 0 to 100: {line!r}")
    if "TAG" not in kw:
        raise ControlReplyError(f"BOOTSTRAP status without a TAG: {line!r}")
    return BootstrapStatus(int(raw), kw["TAG"], kw.get("SUMMARY", ""), severity,
                           kw.get("WARNING"), kw.get("REASON"))


def parse_getinfo_value(reply: str, key: str) -> str:
    """The value of ``key`` in a GETINFO reply as returned by ``queue_command``."""
    prefix = f"{key}="
    for line in reply.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):]
    raise ControlReplyError(f"GETINFO reply has no {key}: {reply!r}")


def parse_listeners(value: str) -> list[str]:
    """``net/listeners/socks`` value: ``"127.0.0.1:9050" "unix:/path"`` -> list."""
    return [v.strip('"') for v in value.split()]


def _port_target(target: str) -> str:
    if target.startswith("unix:"):
        return target
    try:
        split_host_port(target, allow_unix=False)
    except HostPortError:
        raise ValueError(f"onion target must be HOST:PORT or unix:/path, not {target!r}") from None
    return target


def add_onion_command(
    expanded_secret_key: bytes,
    virtual_port: int,
    target: str,
    *,
    client_auth: Sequence[str] = (),
    detach: bool = False,
    max_streams: int | None = None,
    pow_defenses: bool = False,
) -> str:
    """``ADD_ONION ED25519-V3:<key> [Flags=...] [PoWDefensesEnabled=1] Port=V,TARGET
    [ClientAuthV3=...]``.

    ``expanded_secret_key`` is the 64-byte expanded Ed25519 key
    (:meth:`NodeIdentity.expanded_secret_key`); ``client_auth`` holds x25519
    public keys, as ``descriptor:x25519:<base32>`` lines or bare base32.
    ``pow_defenses`` asks for the onion-service proof-of-work defence (the
    ADD_ONION form of ``HiddenServicePoWDefensesEnabled``, tor 0.4.9+ built with
    the ``pow`` module; an older tor refuses the keyword, see
    :data:`POW_KEYWORD`). The command carries key material: never log it.
    """
    if len(expanded_secret_key) != 64:
        raise ValueError("an ED25519-V3 expanded secret key is 64 bytes")
    if not 0 < virtual_port < 65536:
        raise ValueError(f"virtual port {virtual_port} is not from 1 to 65535")
    parts = ["ADD_ONION", "ED25519-V3:" + base64.b64encode(expanded_secret_key).decode()]
    flags = ["Detach"] if detach else []
    if client_auth:
        flags.append("V3Auth")
    if flags:
        parts.append("Flags=" + ",".join(flags))
    if max_streams is not None:
        parts.append(f"MaxStreams={max_streams}")
    if pow_defenses:
        parts.append(f"{POW_KEYWORD}=1")
    parts.append(f"Port={virtual_port},{_port_target(target)}")
    for entry in client_auth:
        parts.append("ClientAuthV3=" + parse_public_key(entry).base32())
    return " ".join(parts)


def parse_add_onion_reply(reply: str) -> str:
    """The ``ServiceID`` (56 base32 characters, no ``.onion``) of an ADD_ONION reply."""
    for line in reply.splitlines():
        if line.startswith("ServiceID="):
            service_id = line[len("ServiceID="):].strip()
            try:
                public_key_from_onion_address(service_id + ".onion")
            except OnionAddressError as e:
                raise ControlReplyError(f"ADD_ONION returned a bad ServiceID: {e}") from None
            return service_id
    raise ControlReplyError(f"ADD_ONION reply without a ServiceID: {reply!r}")


def del_onion_command(onion: str) -> str:
    return f"DEL_ONION {onion_service_id(onion)}"


def progress_bar(bootstrap: dict[str, object] | BootstrapStatus | None, width: int = 24) -> str:
    """``[#########-----]  45% requesting_descriptors`` for a CLI (state or status object)."""
    if bootstrap is None:
        return "[" + "-" * width + "]   0% (not started)"
    if isinstance(bootstrap, BootstrapStatus):
        bootstrap = bootstrap.to_json()
    raw = bootstrap.get("progress", 0)
    progress = max(0, min(100, raw if isinstance(raw, int) else 0))
    filled = progress * width // 100
    text = f"[{'#' * filled}{'-' * (width - filled)}] {progress:3d}% {bootstrap.get('tag', '')}"
    if bootstrap.get("warning"):
        text += f" (warning: {bootstrap['warning']})"
    return text
