"""Control-port text: bootstrap status parsing, ADD_ONION / DEL_ONION formatting."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.identity import expanded_secret_key, onion_address_from_public_key
from aegis_hidden.tor import (
    ClientAuthKey,
    ControlReplyError,
    add_onion_command,
    del_onion_command,
    parse_add_onion_reply,
    parse_bootstrap,
)
from aegis_hidden.tor._control import parse_getinfo_value, parse_keywords, parse_listeners

KEY = expanded_secret_key(bytes(range(32)))
ONION = onion_address_from_public_key(bytes(32))


def test_bootstrap_event_from_status_client() -> None:
    s = parse_bootstrap('NOTICE BOOTSTRAP PROGRESS=85 TAG=ap_conn_done '
                        'SUMMARY="Connected to a relay to build circuits"')
    assert s is not None
    assert (s.progress, s.tag, s.summary, s.severity) == (
        85, "ap_conn_done", "Connected to a relay to build circuits", "NOTICE")
    assert not s.done


def test_bootstrap_with_event_name_and_done() -> None:
    s = parse_bootstrap('STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
    assert s is not None and s.done and s.tag == "done"


def test_bootstrap_warning_and_escapes() -> None:
    s = parse_bootstrap('WARN BOOTSTRAP PROGRESS=10 TAG=conn_done SUMMARY="say \\"hi\\"" '
                        'WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=3 '
                        'RECOMMENDATION=warn HOSTID="ABC" HOSTADDR="127.0.0.1:5"')
    assert s is not None
    assert s.summary == 'say "hi"'
    assert s.warning == "Connection refused"
    assert s.reason == "CONNECTREFUSED"
    assert s.severity == "WARN"


def test_other_status_events_are_not_bootstrap() -> None:
    assert parse_bootstrap("NOTICE CIRCUIT_ESTABLISHED") is None
    assert parse_bootstrap("") is None


@pytest.mark.parametrize("line", [
    "NOTICE BOOTSTRAP TAG=done SUMMARY=\"Done\"",
    "NOTICE BOOTSTRAP PROGRESS=abc TAG=done",
    "NOTICE BOOTSTRAP PROGRESS=101 TAG=done",
    "NOTICE BOOTSTRAP PROGRESS=50",
])
def test_malformed_bootstrap_raises(line: str) -> None:
    with pytest.raises(ControlReplyError):
        parse_bootstrap(line)


@given(st.integers(0, 100), st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_bootstrap_round_trip(progress: int, tag: str, summary: str) -> None:
    quoted = summary.replace("\\", "\\\\").replace('"', '\\"')
    s = parse_bootstrap(f'NOTICE BOOTSTRAP PROGRESS={progress} TAG={tag} SUMMARY="{quoted}"')
    assert s is not None
    assert (s.progress, s.tag, s.summary) == (progress, tag, summary)


def test_keywords() -> None:
    assert parse_keywords('A=1 B="x y" C=') == {"A": "1", "B": "x y", "C": ""}


def test_getinfo_and_listeners() -> None:
    reply = 'net/listeners/socks="127.0.0.1:9150" "unix:/run/x"\nOK'
    value = parse_getinfo_value(reply, "net/listeners/socks")
    assert parse_listeners(value) == ["127.0.0.1:9150", "unix:/run/x"]
    with pytest.raises(ControlReplyError):
        parse_getinfo_value("OK", "version")


def test_add_onion_identity_command() -> None:
    cmd = add_onion_command(KEY, 7701, "127.0.0.1:7701")
    assert cmd == ("ADD_ONION ED25519-V3:" + base64.b64encode(KEY).decode()
                   + " Port=7701,127.0.0.1:7701")


def test_add_onion_detached_unix_target() -> None:
    cmd = add_onion_command(KEY, 80, "unix:/run/node.sock", detach=True, max_streams=10)
    assert cmd.endswith(" Flags=Detach MaxStreams=10 Port=80,unix:/run/node.sock")


def test_add_onion_client_auth() -> None:
    a, b = ClientAuthKey.generate(), ClientAuthKey.generate()
    cmd = add_onion_command(KEY, 80, "127.0.0.1:8470",
                            client_auth=[a.public.descriptor_line(), b.public.base32()])
    words = cmd.split()
    assert "Flags=V3Auth" in words
    assert words[-2:] == [f"ClientAuthV3={a.public.base32()}", f"ClientAuthV3={b.public.base32()}"]
    detached = add_onion_command(KEY, 80, "127.0.0.1:8470", client_auth=[a.public.base32()],
                                 detach=True)
    assert "Flags=Detach,V3Auth" in detached.split()


@pytest.mark.parametrize(("key", "port", "target"), [
    (KEY[:32], 80, "127.0.0.1:80"),
    (KEY, 0, "127.0.0.1:80"),
    (KEY, 70000, "127.0.0.1:80"),
    (KEY, 80, "localhost"),
    (KEY, 80, ":80"),
])
def test_add_onion_rejects_bad_arguments(key: bytes, port: int, target: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        add_onion_command(key, port, target)


def test_add_onion_reply() -> None:
    sid = ONION.removesuffix(".onion")
    assert parse_add_onion_reply(f"ServiceID={sid}\nOK") == sid
    with pytest.raises(ControlReplyError, match="without a ServiceID"):
        parse_add_onion_reply("OK")
    with pytest.raises(ControlReplyError, match="bad ServiceID"):
        parse_add_onion_reply("ServiceID=" + "a" * 56)


def test_del_onion() -> None:
    assert del_onion_command(ONION) == "DEL_ONION " + ONION.removesuffix(".onion")


def test_progress_bar() -> None:
    from aegis_hidden.tor import BootstrapStatus, progress_bar

    assert progress_bar(None, width=10) == "[----------]   0% (not started)"
    assert progress_bar({"progress": 45, "tag": "requesting_descriptors"}, width=10) == (
        "[####------]  45% requesting_descriptors")
    done = BootstrapStatus(100, "done", "Done")
    assert progress_bar(done, width=4) == "[####] 100% done"
    warned = {"progress": 10, "tag": "conn", "warning": "Connection refused"}
    assert progress_bar(warned, width=10).endswith("(warning: Connection refused)")


@given(st.text(max_size=200))
def test_arbitrary_status_text_parses_or_fails_typed(text: str) -> None:
    try:
        result = parse_bootstrap(text)
    except ControlReplyError:
        return
    assert result is None or 0 <= result.progress <= 100


@given(st.text(max_size=200))
def test_arbitrary_add_onion_reply_parses_or_fails_typed(text: str) -> None:
    try:
        sid = parse_add_onion_reply(text)
    except ControlReplyError:
        return
    assert len(sid) == 56
