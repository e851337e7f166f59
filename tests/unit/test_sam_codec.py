"""The sans-I/O SAM v3 codec: commands, replies, typed errors, reader modes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.i2p import (
    AlreadyAccepting,
    CantReachPeer,
    DuplicatedDest,
    DuplicatedId,
    I2PError,
    InvalidId,
    InvalidKey,
    KeyNotFound,
    NoVersion,
    PeerNotFound,
    SAMError,
    SAMProtocolError,
    SAMResultError,
    SAMTimeout,
    UnknownResult,
    _sam,
)
from aegis_hidden.i2p._sam import (
    DatagramReceived,
    Mode,
    PeerAccepted,
    Reply,
    SAMReader,
    StreamData,
    parse_line,
)

# ---------------------------------------------------------------- commands


def test_hello_asks_for_3_0_to_3_3() -> None:
    assert _sam.hello() == b"HELLO VERSION MIN=3.0 MAX=3.3\n"


def test_dest_generate_asks_for_ed25519() -> None:
    assert _sam.dest_generate() == b"DEST GENERATE SIGNATURE_TYPE=7\n"


def test_session_create_transient_names_signature_type() -> None:
    line = _sam.session_create("STREAM", "s1", options={"inbound.length": 1})
    assert line == (b"SESSION CREATE STYLE=STREAM ID=s1 DESTINATION=TRANSIENT "
                    b"SIGNATURE_TYPE=7 inbound.length=1\n")


def test_session_create_with_key_sends_base64_bare_even_with_padding() -> None:
    line = _sam.session_create("DATAGRAM", "d1", "AAAA~-==")
    assert line == b"SESSION CREATE STYLE=DATAGRAM ID=d1 DESTINATION=AAAA~-==\n"


@pytest.mark.parametrize("style", ["STREAM", "DATAGRAM", "RAW", "PRIMARY"])
def test_session_create_styles(style: str) -> None:
    assert f"STYLE={style} ".encode() in _sam.session_create(style, "x")


def test_session_create_refuses_unknown_style_and_bad_id() -> None:
    with pytest.raises(ValueError, match="style"):
        _sam.session_create("MASTERFUL", "x")
    with pytest.raises(ValueError, match="session ID"):
        _sam.session_create("STREAM", "has space")


def test_session_add_and_stream_commands() -> None:
    assert _sam.session_add("STREAM", "p-s", from_port=1) == (
        b"SESSION ADD STYLE=STREAM ID=p-s FROM_PORT=1\n")
    with pytest.raises(ValueError, match="subsession"):
        _sam.session_add("PRIMARY", "p")
    assert _sam.stream_connect("s", "x.b32.i2p") == (
        b"STREAM CONNECT ID=s DESTINATION=x.b32.i2p SILENT=false\n")
    assert _sam.stream_connect("s", "d", to_port=80) == (
        b"STREAM CONNECT ID=s DESTINATION=d SILENT=false TO_PORT=80\n")
    assert _sam.stream_accept("s", silent=True) == b"STREAM ACCEPT ID=s SILENT=true\n"
    assert _sam.stream_forward("s", 7000, "127.0.0.1") == (
        b"STREAM FORWARD ID=s PORT=7000 HOST=127.0.0.1 SILENT=false\n")


def test_naming_ping_quit_datagram() -> None:
    assert _sam.naming_lookup("ME") == b"NAMING LOOKUP NAME=ME\n"
    assert _sam.ping("hi there") == b"PING hi there\n"
    assert _sam.ping() == b"PING\n"
    assert _sam.pong("x") == b"PONG x\n"
    assert _sam.quit_() == b"QUIT\n"
    assert _sam.datagram_send("D", b"\n\x00ab") == b"DATAGRAM SEND DESTINATION=D SIZE=4\n\n\x00ab"
    with pytest.raises(ValueError, match="line breaks"):
        _sam.ping("a\nb")


def test_values_with_spaces_or_quotes_are_quoted_and_escaped() -> None:
    assert _sam.quote("a b") == '"a b"'
    assert _sam.quote('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert _sam.quote("") == '""'
    with pytest.raises(ValueError, match="line breaks"):
        _sam.quote("a\nb")


# ---------------------------------------------------------------- replies


def test_parse_hello_reply() -> None:
    r = parse_line(b"HELLO REPLY RESULT=OK VERSION=3.1")
    assert (r.verb, r.subverb, r.get("VERSION")) == ("HELLO", "REPLY", "3.1")
    assert r.raise_for_result() is r


def test_parse_odd_spacing_quotes_unknown_keys_and_bare_flags() -> None:
    r = parse_line(b'  SESSION \t STATUS  RESULT=I2P_ERROR   MESSAGE="no tunnels \\"yet\\"" '
                   b"X_NEW=1 FLAG\r")
    assert r.name == "SESSION STATUS"
    assert r.options == {"RESULT": "I2P_ERROR", "MESSAGE": 'no tunnels "yet"',
                         "X_NEW": "1", "FLAG": ""}
    with pytest.raises(I2PError) as info:
        r.raise_for_result()
    assert info.value.message == 'no tunnels "yet"'
    assert info.value.reply == "SESSION STATUS"
    assert 'no tunnels "yet"' in str(info.value)


def test_value_may_contain_equals_signs() -> None:
    assert parse_line(b"DEST REPLY PUB=ab== PRIV=c=d").options == {"PUB": "ab==", "PRIV": "c=d"}


def test_ping_and_pong_keep_their_text() -> None:
    assert parse_line(b"PING 1234 abc").text == "1234 abc"
    assert parse_line(b"PONG").verb == "PONG"


@pytest.mark.parametrize(("result", "error"), [
    ("CANT_REACH_PEER", CantReachPeer), ("DUPLICATED_ID", DuplicatedId),
    ("DUPLICATED_DEST", DuplicatedDest), ("INVALID_ID", InvalidId),
    ("INVALID_KEY", InvalidKey), ("KEY_NOT_FOUND", KeyNotFound),
    ("PEER_NOT_FOUND", PeerNotFound), ("TIMEOUT", SAMTimeout), ("I2P_ERROR", I2PError),
    ("NOVERSION", NoVersion), ("ALREADY_ACCEPTING", AlreadyAccepting),
    ("SOMETHING_NEW", UnknownResult),
])
def test_every_non_ok_result_is_a_typed_error_with_the_message(
        result: str, error: type[SAMResultError]) -> None:
    reply = parse_line(f'STREAM STATUS RESULT={result} MESSAGE="router says no"'.encode())
    with pytest.raises(error) as info:
        reply.raise_for_result()
    assert info.value.result == result
    assert info.value.message == "router says no"


@pytest.mark.parametrize("line", [
    b"", b"   ", b"lowercase verb", b"HELLO REPLY RESULT=\"open", b"X Y K=\"a\"b",
    b"X =v", b"X K=a\"b", b"X \xff\xfe", b"X K=v\x00", b'X K="dangling\\',
    b"X K\"=1",
])
def test_malformed_lines_raise_protocol_errors(line: bytes) -> None:
    with pytest.raises(SAMProtocolError):
        parse_line(line)


def test_require_names_the_missing_key() -> None:
    with pytest.raises(SAMProtocolError, match="VERSION"):
        parse_line(b"HELLO REPLY RESULT=OK").require("VERSION")


def test_version_tuple() -> None:
    assert _sam.version_tuple("3.1") == (3, 1)
    assert _sam.version_tuple("3") == (3, 0)
    with pytest.raises(SAMProtocolError):
        _sam.version_tuple("three")


# ---------------------------------------------------------------- reader


def test_reader_splits_lines_across_chunks() -> None:
    reader = SAMReader()
    assert reader.feed(b"HELLO REP") == []
    events = reader.feed(b"LY RESULT=OK VERSION=3.0\nNAMING REPLY RESULT=OK NAME=ME VALUE=x\n")
    assert [e.name for e in events if isinstance(e, Reply)] == ["HELLO REPLY", "NAMING REPLY"]


def test_reader_switches_to_data_after_connect_ok_in_the_same_chunk() -> None:
    reader = SAMReader()
    reader.stream_pending("CONNECT")
    events = reader.feed(b"STREAM STATUS RESULT=OK\nHELLO REPLY not a command\n")
    assert isinstance(events[0], Reply)
    assert events[1] == StreamData(b"HELLO REPLY not a command\n")
    assert reader.mode is Mode.DATA
    assert reader.feed(b"\x00\xff") == [StreamData(b"\x00\xff")]


def test_reader_stays_in_command_mode_after_a_failed_connect() -> None:
    reader = SAMReader()
    reader.stream_pending("CONNECT")
    [event] = reader.feed(b"STREAM STATUS RESULT=CANT_REACH_PEER\n")
    assert isinstance(event, Reply)
    assert reader.mode is Mode.COMMAND


def test_reader_accept_reads_the_peer_line_then_data() -> None:
    reader = SAMReader()
    reader.stream_pending("ACCEPT")
    events = reader.feed(b"STREAM STATUS RESULT=OK\nDEST~b64== FROM_PORT=5 TO_PORT=0\nhello\n")
    assert events[1] == PeerAccepted("DEST~b64==", {"FROM_PORT": "5", "TO_PORT": "0"})
    assert events[2] == StreamData(b"hello\n")


def test_reader_silent_accept_has_no_peer_line() -> None:
    reader = SAMReader()
    reader.stream_pending("ACCEPT", silent=True)
    events = reader.feed(b"STREAM STATUS RESULT=OK\nDATA")
    assert events[1] == StreamData(b"DATA")


def test_reader_datagram_payload_may_hold_newlines_and_arrive_in_pieces() -> None:
    reader = SAMReader()
    assert reader.feed(b"DATAGRAM RECEIVED DESTINATION=abc SIZE=5\nx\n") == []
    events = reader.feed(b"\ny\x00PING z\n")
    assert events[0] == DatagramReceived("abc", b"x\n\ny\x00")
    assert isinstance(events[1], Reply) and events[1].verb == "PING"


def test_reader_refuses_bad_datagram_headers_and_huge_lines() -> None:
    with pytest.raises(SAMProtocolError, match="SIZE"):
        SAMReader().feed(b"DATAGRAM RECEIVED DESTINATION=a SIZE=-1\n")
    with pytest.raises(SAMProtocolError, match="DESTINATION"):
        SAMReader().feed(b"DATAGRAM RECEIVED SIZE=1\n")
    with pytest.raises(SAMProtocolError, match="longer"):
        SAMReader(max_line=10).feed(b"A" * 11)


# ---------------------------------------------------------------- properties

_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_.]{0,15}", fullmatch=True)
_value = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\x00"),
    max_size=40)


@given(st.sampled_from(["HELLO", "SESSION", "STREAM", "NAMING", "DEST"]),
       st.sampled_from(["REPLY", "STATUS", "CREATE", "LOOKUP"]),
       st.dictionaries(_key, _value, max_size=6))
def test_encode_parse_round_trip(verb: str, subverb: str, options: dict[str, str]) -> None:
    line = _sam.encode(verb, subverb, sorted(options.items()))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reply = parse_line(line[:-1])
    assert (reply.verb, reply.subverb, dict(reply.options)) == (verb, subverb, options)


@given(st.binary(max_size=300))
def test_arbitrary_reply_lines_raise_only_codec_errors(line: bytes) -> None:
    try:
        reply = parse_line(line.replace(b"\n", b" "))
        reply.raise_for_result()
    except SAMError:
        pass


@given(st.lists(st.binary(max_size=120), max_size=8), st.sampled_from([None, "CONNECT", "ACCEPT"]))
def test_arbitrary_byte_streams_raise_only_codec_errors(chunks: list[bytes], pending: str | None) -> None:
    reader = SAMReader()
    if pending:
        reader.stream_pending(pending)
    try:
        for chunk in chunks:
            for event in reader.feed(chunk):
                if isinstance(event, Reply):
                    event.raise_for_result()
    except SAMError:
        pass


@given(st.binary(max_size=2000), st.integers(1, 50))
def test_datagram_payload_survives_any_chunking(payload: bytes, step: int) -> None:
    reader = SAMReader()
    wire = f"DATAGRAM RECEIVED DESTINATION=d SIZE={len(payload)}\n".encode() + payload
    events = []
    for i in range(0, len(wire), step):
        events += reader.feed(wire[i:i + step])
    assert events == [DatagramReceived("d", payload)]
