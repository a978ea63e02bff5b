"""Hypothesis properties of the parsers and the response path: hostile input is a typed
error (MalformedMessage, InputError, a CheckFailure on the channel), never a crash.

Bounded: every property has a fixed example budget and no database, so the file runs
in a few seconds and leaves nothing behind in the working tree.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import string
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from turncheck import stun
from turncheck.browser import parse_ice_url
from turncheck.config import IceServer, parse_ice_servers
from turncheck.errors import CheckFailure, InputError
from turncheck.plan import ServerEntry, entries_from
from turncheck.transport import Address, Channel, RetryPolicy, StreamChannel
from turncheck.urls import IceUrl


def bounded(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SERVER: Address = ("127.0.0.1", 3478)

# -- STUN messages ----------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
short_text = st.text(max_size=40)

# (attribute name, value strategy): what real servers put in answers, incl. our extra ones.
ATTRIBUTE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "XOR-MAPPED-ADDRESS": st.tuples(ipv4 | ipv6, ports),
    "XOR-RELAYED-ADDRESS": st.tuples(ipv4 | ipv6, ports),
    "MAPPED-ADDRESS": st.tuples(ipv4, ports),
    "OTHER-ADDRESS": st.tuples(ipv4, ports),
    "ALTERNATE-SERVER": st.tuples(ipv4 | ipv6, ports),
    "ERROR-CODE": st.tuples(st.integers(300, 699), short_text),
    "SOFTWARE": short_text,
    "REALM": short_text,
    "NONCE": st.binary(max_size=32),
    "USERNAME": short_text,
    "LIFETIME": st.integers(0, 2**32 - 1),
    "REQUESTED-TRANSPORT": st.just(stun.REQUESTED_TRANSPORT_UDP),
    "REQUESTED-ADDRESS-FAMILY": st.sampled_from([0x01000000, 0x02000000]),
    "CHANNEL-NUMBER": st.integers(0x4000, 0x7FFF),
    "DATA": st.binary(max_size=48),
    "RESPONSE-PORT": ports,
    "DONT-FRAGMENT": st.none(),
}


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[stun.Message, bytes | None]:
    """A real message built with stun.Message, with MESSAGE-INTEGRITY/FINGERPRINT at the end."""
    msg = stun.Message(
        draw(st.sampled_from(list(stun.Method))),
        draw(st.sampled_from(list(stun.Class))),
        transaction_id=draw(st.binary(min_size=12, max_size=12)),
    )
    names = draw(st.lists(st.sampled_from(sorted(ATTRIBUTE_VALUES)), unique=True, max_size=6))
    for name in names:
        msg.attributes[name] = draw(ATTRIBUTE_VALUES[name])
    key = draw(st.none() | st.binary(min_size=1, max_size=24))
    if key is not None:
        msg.add_message_integrity(key)  # adds FINGERPRINT too
    elif draw(st.booleans()):
        msg.add_fingerprint()
    return msg, key


def _set_length(data: bytearray, value: int) -> None:
    if len(data) >= 4:
        struct.pack_into("!H", data, 2, value & 0xFFFF)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=24), st.just(0)),
    st.tuples(st.just("length"), st.integers(0, 0xFFFF), st.just(0)),
    # Keep the framing right after the damage, so the attribute parser gets to see it.
    st.tuples(st.just("fix-length"), st.just(0), st.just(0)),
)


def mutate(data: bytes, ops: list[tuple[str, Any, int]]) -> bytes:
    out = bytearray(data)
    for op, arg, value in ops:
        if op == "flip" and out:
            out[arg % len(out)] ^= value
        elif op == "set" and out:
            out[arg % len(out)] = value
        elif op == "truncate":
            del out[arg % (len(out) + 1) :]
        elif op == "extend":
            out += arg
        elif op == "length":
            _set_length(out, arg)
        elif op == "fix-length":
            _set_length(out, len(out) - stun.HEADER_LENGTH)
    return bytes(out)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    msg, _ = draw(valid_messages())
    return mutate(bytes(msg), draw(st.lists(mutation, min_size=1, max_size=4)))


def decode_or_malformed(data: bytes) -> stun.Message | None:
    """The contract of stun.decode: a Message or MalformedMessage, nothing else."""
    try:
        message = stun.decode(data)
    except stun.MalformedMessage as exc:
        assert str(exc)  # the text says what is wrong
        return None
    assert isinstance(message, stun.Message)
    return message


@bounded(400)
@given(st.binary(max_size=120))
@example(b"")
@example(bytes(20))
@example(struct.pack("!HHI12s", 0x0101, 4, stun.COOKIE, bytes(12)) + b"\x00\x20\x00\x00")
def test_decode_of_arbitrary_bytes_is_a_message_or_malformed(data: bytes) -> None:
    decode_or_malformed(data)


@bounded(300)
@given(st.binary(min_size=4, max_size=96), st.sampled_from([0x0001, 0x0101, 0x0111, 0x0113]))
def test_decode_of_well_framed_garbage_attributes(body: bytes, msg_type: int) -> None:
    """Right header and length, random attribute bytes: reaches aioice's attribute parser."""
    body = body[: len(body) - len(body) % 4]
    data = struct.pack("!HHI12s", msg_type, len(body), stun.COOKIE, b"t" * 12) + body
    decode_or_malformed(data)


@bounded(200)
@given(valid_messages())
def test_valid_messages_decode_to_themselves(built: tuple[stun.Message, bytes | None]) -> None:
    msg, key = built
    back = decode_or_malformed(bytes(msg))
    assert back is not None
    assert (back.message_method, back.message_class) == (msg.message_method, msg.message_class)
    assert back.transaction_id == msg.transaction_id
    for name, value in msg.attributes.items():
        if name == "DONT-FRAGMENT":
            assert name in back.attributes
        else:
            assert back.attributes[name] == value, name
    if key is not None:
        assert back.check_message_integrity(key)


@bounded(400)
@given(mutated_messages())
def test_decode_of_mutated_messages_is_a_message_or_malformed(data: bytes) -> None:
    message = decode_or_malformed(data)
    if message is not None:
        stun.error_of(message)  # what every caller does next must not fail either


# -- the UDP response path: Channel._deliver -------------------------------------------------


class RecordingChannel(Channel):
    """A Channel without a socket: what it sends is recorded, answers come from the test."""

    reliable = False

    def __init__(self) -> None:
        super().__init__(tracer=lambda *args: None)
        self.sent: list[tuple[bytes, Address]] = []

    def _send_bytes(self, data: bytes, dest: Address) -> None:
        self.sent.append((data, dest))

    @property
    def local_address(self) -> Address:
        return ("127.0.0.1", 1)

    async def aclose(self) -> None:
        from turncheck.errors import ConnectFailure

        self._close_with(ConnectFailure("closed", "socket closed"))


sources = st.sampled_from([SERVER, ("127.0.0.1", 3479), ("127.0.0.2", 3478), ("::1", 3478)])

# Answers that carry the pending transaction's ID but must each be refused by _reject.
DEFECTS = ("other-source", "request-class", "other-method", "indication", "no-integrity", "bad-mi")


def near_answer(request: stun.Message, key: bytes | None, defect: str) -> tuple[bytes, Address]:
    method = request.message_method
    klass = stun.Class.RESPONSE
    if defect == "request-class":
        klass = stun.Class.REQUEST
    elif defect == "indication":
        klass = stun.Class.INDICATION
    elif defect == "other-method":
        method = stun.Method.REFRESH if method != stun.Method.REFRESH else stun.Method.BINDING
    msg = stun.Message(method, klass, transaction_id=request.transaction_id)
    msg.attributes["XOR-MAPPED-ADDRESS"] = ("192.0.2.99", 9)
    if key is not None and defect == "bad-mi":
        msg.add_message_integrity(key + b"-wrong")
    elif key is not None and defect != "no-integrity":
        msg.add_message_integrity(key)
    source = ("127.0.0.1", 9999) if defect == "other-source" else SERVER
    return bytes(msg), source


garbage = st.one_of(
    st.binary(max_size=64),
    mutated_messages(),
    valid_messages().map(lambda built: bytes(built[0])),  # other transactions' messages
    st.binary(max_size=40).map(lambda b: b"\x40\x00" + struct.pack("!H", len(b)) + b),
)


@bounded(150)
@given(
    st.lists(st.tuples(garbage, sources), max_size=12),
    st.lists(st.sampled_from(DEFECTS), max_size=4),
    st.none() | st.binary(min_size=1, max_size=16),
    st.sampled_from([stun.Method.BINDING, stun.Method.ALLOCATE, stun.Method.REFRESH]),
)
def test_garbage_never_breaks_delivery_and_the_real_answer_still_completes(
    datagrams: list[tuple[bytes, Address]],
    defects: list[str],
    key: bytes | None,
    method: stun.Method,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        channel = RecordingChannel()
        indications: list[stun.Message] = []
        channel.on_indication = lambda message, source: indications.append(message)
        request = stun.Message(method, stun.Class.REQUEST)
        task = asyncio.create_task(
            channel.request(
                request, SERVER, deadline=loop.time() + 0.5, policy=RetryPolicy(), key=key
            )
        )
        await asyncio.sleep(0)  # the request is pending and sent
        assert len(channel.sent) == 1
        sent = stun.decode(channel.sent[0][0])
        assert sent.transaction_id == request.transaction_id
        for data, source in datagrams:
            channel._deliver(data, source)
        for defect in defects:
            if defect in ("no-integrity", "bad-mi") and key is None:
                continue
            channel._deliver(*near_answer(sent, key, defect))
        assert not task.done()
        real = stun.Message(method, stun.Class.RESPONSE, transaction_id=sent.transaction_id)
        real.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.7", 40000)
        if key is not None:
            real.add_message_integrity(key)
        channel._deliver(bytes(real), SERVER)
        answer = await asyncio.wait_for(task, 1)
        assert answer.message.attributes["XOR-MAPPED-ADDRESS"] == ("198.51.100.7", 40000)
        assert answer.source == SERVER and answer.sends == 1
        for data, source in datagrams:  # late garbage with nothing pending: still no crash
            channel._deliver(data, source)
        await channel.aclose()

    asyncio.run(scenario())


@bounded(50)
@given(st.lists(st.tuples(garbage, sources), min_size=1, max_size=8))
def test_garbage_alone_times_out_the_transaction_with_a_check_failure(
    datagrams: list[tuple[bytes, Address]],
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        channel = RecordingChannel()
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        task = asyncio.create_task(
            channel.request(
                request, SERVER, deadline=loop.time() + 0.02, policy=RetryPolicy(rto=0.01)
            )
        )
        await asyncio.sleep(0)
        for data, source in datagrams:
            channel._deliver(data, source)
        with pytest.raises(CheckFailure):
            await asyncio.wait_for(task, 1)
        assert channel._pending == {}

    asyncio.run(scenario())


# -- the TCP/TLS framing path: StreamChannel._read_loop / _drain --------------------------------


class _DummyTransport:
    def abort(self) -> None:
        pass


class DummyWriter:
    """Just enough of asyncio.StreamWriter for StreamChannel."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.transport = _DummyTransport()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("sockname", "peername") else default


def stun_frame(draw: st.DrawFn) -> bytes:
    """A frame with right STUN framing and random content (decodes or is malformed)."""
    length = draw(st.integers(0, 48))
    msg_type = draw(st.integers(0, 0x3FFF))
    head = struct.pack("!HH", msg_type, length) + draw(st.binary(min_size=16, max_size=16))
    return head + draw(st.binary(min_size=length, max_size=length))


def channel_data_frame(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=40))
    number = draw(st.integers(0x4000, 0x7FFF))
    return struct.pack("!HH", number, len(body)) + body + bytes(-len(body) % 4)


@st.composite
def framed_segments(draw: st.DrawFn) -> bytes:
    """Byte streams whose framing stays in step: STUN frames, ChannelData, real messages."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["stun", "channel", "valid"]))
        if kind == "stun":
            parts.append(stun_frame(draw))
        elif kind == "channel":
            parts.append(channel_data_frame(draw))
        else:
            parts.append(bytes(draw(valid_messages())[0]))
    return b"".join(parts)


@st.composite
def chunked(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


async def _settle(channel: StreamChannel) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    if channel._task.done():
        assert channel._task.exception() is None, channel._task.exception()


def _check_state(channel: StreamChannel, eof: bool) -> None:
    reason = channel._closed_reason
    assert reason is None or isinstance(reason, CheckFailure)
    if eof or channel._task.done():
        assert isinstance(reason, CheckFailure), "an ended read loop must leave a reason"
        assert str(reason)


@bounded(200)
@given(
    st.data(),
    st.one_of(st.binary(max_size=200), framed_segments(), mutated_messages()),
    st.booleans(),
)
def test_stream_of_arbitrary_bytes_closes_with_a_reason_or_stays_open(
    data: st.DataObject, stream: bytes, eof: bool
) -> None:
    chunks = data.draw(chunked(stream))

    async def scenario() -> None:
        reader = asyncio.StreamReader()
        channel = StreamChannel(reader, DummyWriter(), SERVER, None, None)  # type: ignore[arg-type]
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)
        if eof:
            reader.feed_eof()
        await _settle(channel)
        if eof:
            await asyncio.wait_for(asyncio.shield(channel._task), 1)
        _check_state(channel, eof)
        channel.pending_notes()  # names the stuck half-frame, if any: must not fail
        await channel.aclose()
        assert isinstance(channel._closed_reason, CheckFailure)

    asyncio.run(scenario())


@bounded(150)
@given(st.data(), framed_segments(), st.none() | st.binary(min_size=1, max_size=16))
def test_stream_answer_after_well_framed_garbage_completes_the_transaction(
    data: st.DataObject, junk: bytes, key: bytes | None
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        writer = DummyWriter()
        channel = StreamChannel(reader, writer, SERVER, None, None)  # type: ignore[arg-type]
        request = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
        task = asyncio.create_task(
            channel.request(
                request, SERVER, deadline=loop.time() + 0.5, policy=RetryPolicy(), key=key
            )
        )
        await asyncio.sleep(0)
        assert bytes(writer.written) == bytes(request)  # one send, no retransmission
        real = stun.Message(
            stun.Method.ALLOCATE, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        real.attributes["XOR-RELAYED-ADDRESS"] = ("203.0.113.5", 50000)
        if key is not None:
            real.add_message_integrity(key)
        for chunk in data.draw(chunked(junk + bytes(real))):
            reader.feed_data(chunk)
            await asyncio.sleep(0)
        answer = await asyncio.wait_for(task, 1)
        assert answer.message.attributes["XOR-RELAYED-ADDRESS"] == ("203.0.113.5", 50000)
        assert channel._closed_reason is None
        await channel.aclose()

    asyncio.run(scenario())


# -- ICE server URLs ---------------------------------------------------------------------------


def parse_or_input_error(text: str) -> IceUrl | None:
    try:
        url = parse_ice_url(text)
    except InputError as exc:
        assert "the browser throws " in str(exc)
        return None
    assert isinstance(url, IceUrl)
    return url


def assert_round_trip(url: IceUrl) -> None:
    again = parse_ice_url(str(url))
    assert (again.scheme, again.host, again.port, again.transport) == (
        url.scheme,
        url.host,
        url.port,
        url.transport,
    ), str(url)


label = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,8}[A-Za-z0-9_])?", fullmatch=True)
# All-digit names are refused on purpose (a mistyped IPv4 address): start with a letter.
hostnames = st.tuples(
    st.from_regex(r"[A-Za-z]([A-Za-z0-9_-]{0,8}[A-Za-z0-9_])?", fullmatch=True),
    st.lists(label, max_size=3),
).map(lambda parts: ".".join([parts[0], *parts[1]]))
near_hosts = st.one_of(
    hostnames,
    hostnames.map(lambda h: h + "."),
    ipv4,
    ipv6.map(lambda a: f"[{a}]"),
    ipv6,  # unbracketed: refused
    st.ip_addresses(v=6).map(lambda a: f"[{a}%eth0]"),
    ipv4.map(lambda a: f"[{a}]"),
    st.text(max_size=20),
    st.text(alphabet=string.printable, max_size=20),
    st.just("user@example.org"),
    st.just("1.2.3"),
    st.just(""),
)
near_ports = st.one_of(
    st.none(),
    st.integers(-10, 70000).map(str),
    st.text(alphabet="0123456789٣x-+ ", max_size=7),
)
near_queries = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "transport=udp",
            "transport=tcp",
            "TRANSPORT=TCP",
            "transport=tls",
            "transport=",
            "transport",
            "transport=udp&x=1",
            "",
        ]
    ),
    st.text(max_size=16),
)
near_schemes = st.sampled_from(
    ["stun", "stuns", "turn", "turns", "TURN", "Turns", "http", "", "turn ", "turnss"]
)


@st.composite
def near_urls(draw: st.DrawFn) -> str:
    out = draw(near_schemes) + draw(st.sampled_from([":", ":", "://", ""])) + draw(near_hosts)
    port = draw(near_ports)
    if port is not None:
        out += ":" + port
    query = draw(near_queries)
    if query is not None:
        out += "?" + query
    return draw(st.sampled_from(["", " ", "\t"])) + out + draw(st.sampled_from(["", " ", "\n"]))


@bounded(500)
@given(st.text(max_size=60))
@example("turn:[::1")
@example("stun:[::1]x")
@example("turns:host?transport=udp")
@example("turn:host:٣٤٧٨")
def test_parse_url_of_any_text_is_an_url_or_input_error(text: str) -> None:
    url = parse_or_input_error(text)
    if url is not None:
        assert_round_trip(url)


@bounded(500)
@given(near_urls())
def test_parse_url_of_near_misses_is_an_url_or_input_error_and_round_trips(text: str) -> None:
    url = parse_or_input_error(text)
    if url is None:
        return
    assert_round_trip(url)
    assert url.port is None or 1 <= url.port <= 65535
    if url.host_is_ip:
        ipaddress.ip_address(url.host)


@bounded(300)
@given(
    st.sampled_from(["stun", "stuns", "turn", "turns"]),
    hostnames | ipv4 | ipv6.map(lambda a: f"[{a}]"),
    st.none() | st.integers(1, 65535),
    st.sampled_from([None, "udp", "tcp"]),
)
def test_well_formed_urls_parse_and_round_trip(
    scheme: str, host: str, port: int | None, transport: str | None
) -> None:
    text = f"{scheme}:{host}" + (f":{port}" if port else "")
    if transport and scheme.startswith("turn") and not (scheme == "turns" and transport == "udp"):
        text += f"?transport={transport}"
    url = parse_ice_url(text)
    assert url.host == host.strip("[]") and url.port == port
    assert_round_trip(url)


def test_a_newline_inside_the_host_is_refused() -> None:
    # Found by the property above: "$" also matched before a trailing newline.
    with pytest.raises(InputError):
        parse_ice_url("turn:ho\n.example.org:3478")


# -- iceServers JSON ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["iceServers", "urls", "url", "username", "credential"])
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)

absent = object()


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(absent) | values


url_values = st.one_of(
    near_urls(),
    st.lists(near_urls(), max_size=3),
    st.lists(st.one_of(near_urls(), st.integers(), st.none()), max_size=3),
    st.integers(),
    st.none(),
    st.just({}),
)
secret_values = st.one_of(st.text(max_size=12), st.integers(), st.none(), st.just([]))


@st.composite
def ice_server_dicts(draw: st.DrawFn) -> Any:
    entry: dict[str, Any] = {}
    fields = {
        draw(st.sampled_from(["urls", "url"])): maybe(url_values),
        "username": maybe(secret_values),
        "credential": maybe(secret_values),
        "credentialType": maybe(st.sampled_from(["password", "oauth", 1])),
    }
    for name, strategy in fields.items():
        value = draw(strategy)
        if value is not absent:
            entry[name] = value
    return draw(st.sampled_from([entry, entry, entry, [entry], "x", None]))


@st.composite
def near_documents(draw: st.DrawFn) -> str:
    servers = draw(st.lists(ice_server_dicts(), max_size=4))
    key = draw(st.sampled_from(["iceServers", "ice_servers", "customServers", None, "servers"]))
    document: Any = servers if key is None else {key: servers}
    if key is not None and draw(st.booleans()):
        document = {key: draw(st.sampled_from([servers, {}, "x", 3, None]))}
    return json.dumps(document)


def parse_then_entries(text: str) -> list[ServerEntry] | None:
    """parse_ice_servers then entries_from: lists or InputError, nothing else."""
    try:
        servers = parse_ice_servers(text, "ice.json")
    except InputError as exc:
        assert str(exc)
        return None
    assert isinstance(servers, list) and all(isinstance(s, IceServer) for s in servers)
    try:
        entries = entries_from(servers)
    except InputError as exc:
        assert "the browser throws " in str(exc)
        return None
    assert isinstance(entries, list) and all(isinstance(e, ServerEntry) for e in entries)
    assert len(entries) == sum(len(s.urls) for s in servers)
    return entries


@bounded(300)
@given(st.text(max_size=80))
@example("")
@example("[]")
@example('{"iceServers": [{"urls": []}]}')
def test_ice_servers_of_any_text_is_a_list_or_input_error(text: str) -> None:
    parse_then_entries(text)


@bounded(300)
@given(json_values)
def test_ice_servers_of_any_json_value_is_a_list_or_input_error(value: Any) -> None:
    parse_then_entries(json.dumps(value))


@bounded(250)
@given(near_documents())
def test_ice_servers_of_near_valid_documents_is_a_list_or_input_error(text: str) -> None:
    entries = parse_then_entries(text)
    for entry in entries or ():
        assert_round_trip(entry.url)


def test_a_huge_integer_in_ice_servers_is_an_input_error() -> None:
    # Found by hypothesis: json.loads raises ValueError (not JSONDecodeError) here.
    with pytest.raises(InputError):
        parse_ice_servers('{"iceServers": [{"urls": "stun:h", "x": ' + "1" * 5000 + "}]}")


def test_deeply_nested_ice_servers_is_an_input_error() -> None:
    # Found by hypothesis: json.loads raises RecursionError here.
    with pytest.raises(InputError):
        parse_ice_servers("[" * 100_000)
