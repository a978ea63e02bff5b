"""Self-tests for the pion/turn and ejabberd lab fixtures: they start, answer raw STUN
over UDP, TCP and TLS, bind nothing but 127.0.0.1, stop, and turncheck gets relay
candidates from them.  The behaviours the fixture modules document (error codes,
SOFTWARE, close_notify, blacklist) are pinned with raw STUN, independent of turncheck.
All traffic goes to loopback only."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.servers.coturn import stun_binding_ok

# Works whether or not the top-level conftest already loads the plugin.
pytest_plugins = ["tests.servers.fixtures"]

PROBE_TIMEOUT = 60  # s for one `python -m turncheck probe`
IO_TIMEOUT = 3.0  # s per raw STUN exchange
ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------- raw STUN client

MAGIC = 0x2112A442
BINDING, ALLOCATE, CREATE_PERMISSION, CHANNEL_BIND = 0x001, 0x003, 0x008, 0x009
CHANGE_REQUEST = 0x0003
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
CHANNEL_NUMBER = 0x000C
XOR_PEER_ADDRESS = 0x0012
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
RESPONSE_ORIGIN = 0x802B
OTHER_ADDRESS = 0x802C
UDP_TRANSPORT = b"\x11\x00\x00\x00"


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _message(mtype: int, attrs: list[tuple[int, bytes]], key: bytes | None = None) -> bytes:
    tid = os.urandom(12)
    body = b"".join(_attr(k, v) for k, v in attrs)
    if key is not None:
        head = struct.pack("!HHI", mtype, len(body) + 24, MAGIC) + tid
        body += _attr(MESSAGE_INTEGRITY, hmac.new(key, head + body, hashlib.sha1).digest())
    head = struct.pack("!HHI", mtype, len(body) + 8, MAGIC) + tid
    body += _attr(FINGERPRINT, struct.pack("!I", (zlib.crc32(head + body) ^ 0x5354554E)))
    return struct.pack("!HHI", mtype, len(body), MAGIC) + tid + body


class Answer:
    def __init__(self, data: bytes) -> None:
        self.type, length = struct.unpack("!HH", data[:4])
        self.attrs: dict[int, bytes] = {}
        i = 20
        for _ in range(100):  # bounded
            if i >= 20 + length:
                break
            kind, n = struct.unpack("!HH", data[i : i + 4])
            self.attrs.setdefault(kind, data[i + 4 : i + 4 + n])
            i += 4 + n + (-n % 4)

    @property
    def is_error(self) -> bool:
        return self.type & 0x0110 == 0x0110

    @property
    def is_success(self) -> bool:
        return self.type & 0x0110 == 0x0100

    @property
    def code(self) -> int | None:
        v = self.attrs.get(ERROR_CODE)
        return None if v is None else v[2] * 100 + v[3]

    @property
    def phrase(self) -> str | None:
        v = self.attrs.get(ERROR_CODE)
        return None if v is None else v[4:].decode()

    @property
    def software(self) -> str | None:
        v = self.attrs.get(SOFTWARE)
        return None if v is None else v.decode()


class Client:
    """One STUN client socket to 127.0.0.1 over "udp", "tcp" or "tls"."""

    def __init__(self, transport: str, port: int, cafile: Path | None = None) -> None:
        self.transport = transport
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect(("127.0.0.1", port))
        else:
            sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            if transport == "tls":
                ctx = ssl.create_default_context(cafile=str(cafile))
                sock = ctx.wrap_socket(
                    sock, server_hostname="localhost", suppress_ragged_eofs=False
                )
            self.sock = sock
        self.sock.settimeout(IO_TIMEOUT)
        self.user = self.realm = self.nonce = b""
        self.key: bytes | None = None

    def close(self) -> None:
        self.sock.close()

    def _read_exact(self, n: int) -> bytes:
        data = b""
        for _ in range(1000):  # bounded
            if len(data) >= n:
                break
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    def ask(self, mtype: int, attrs: list[tuple[int, bytes]], key: bytes | None = None) -> Answer:
        data = _message(mtype, attrs, key)
        if self.transport == "udp":
            self.sock.send(data)
            return Answer(self.sock.recv(4096))
        self.sock.sendall(data)
        head = self._read_exact(20)
        return Answer(head + self._read_exact(struct.unpack("!H", head[2:4])[0]))

    def _auth(self) -> list[tuple[int, bytes]]:
        return [(USERNAME, self.user), (REALM, self.realm), (NONCE, self.nonce)]

    def allocate(self, user: str, password: str) -> tuple[Answer, Answer]:
        """(the unauthenticated answer, the authenticated answer)."""
        first = self.ask(ALLOCATE, [(REQUESTED_TRANSPORT, UDP_TRANSPORT)])
        self.user = user.encode()
        self.realm, self.nonce = first.attrs.get(REALM, b""), first.attrs.get(NONCE, b"")
        self.key = hashlib.md5(self.user + b":" + self.realm + b":" + password.encode()).digest()
        second = self.ask(ALLOCATE, [(REQUESTED_TRANSPORT, UDP_TRANSPORT), *self._auth()], self.key)
        return first, second

    def signed(self, mtype: int, attrs: list[tuple[int, bytes]]) -> Answer:
        return self.ask(mtype, [*attrs, *self._auth()], self.key)


def _xor_peer(ip: str, port: int) -> bytes:
    addr = bytes(a ^ b for a, b in zip(socket.inet_aton(ip), struct.pack("!I", MAGIC), strict=True))
    return struct.pack("!BBH", 0, 1, port ^ (MAGIC >> 16)) + addr


# ------------------------------------------------------------- what a process binds


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _hex_ip(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def bound_addresses(pid: int) -> set[tuple[str, str, int]]:
    """{(proto, local ip, local port)} of every inet socket process *pid* holds."""
    inodes = _socket_inodes(pid)
    found = set()
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ip, port = fields[1].split(":")
                found.add((proto, _hex_ip(ip), int(port, 16)))
    return found


def descendants(pid: int) -> set[int]:
    """PIDs of every living descendant of *pid* (one /proc scan)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    for _ in range(50):  # bounded depth
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        if not frontier:
            break
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ------------------------------------------------------------------ turncheck


def turncheck_probe(url: str, *extra: str) -> tuple[int, dict, str]:
    argv = [sys.executable, "-m", "turncheck", "probe", url, "-u", "alice", "-p", "s3cret"]
    argv += ["--json", *extra]
    env = dict(os.environ, NO_COLOR="1")
    for name in ("TURNCHECK_USERNAME", "TURNCHECK_CREDENTIAL", "TURNCHECK_SECRET"):
        env.pop(name, None)
    r = subprocess.run(
        argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=env, cwd=ROOT
    )
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError:
        doc = {}
    return r.returncode, doc, r.stderr


def assert_relay(code: int, doc: dict, stderr: str, transport: str) -> None:
    turn = [c for c in doc.get("checks", []) if c.get("kind") == "turn"]
    detail = json.dumps([c.get("error") for c in turn]) + "\n" + stderr[-2000:]
    assert code == 0, f"exit {code}: {doc.get('verdict')}\n{detail}"
    assert turn and all(c["ok"] for c in turn), detail
    relays = [x for c in turn for x in c["candidates"] if x["type"] == "relay"]
    assert relays, detail
    assert all(c["transport"] == transport for c in turn), detail


# ------------------------------------------------------------------------- pion


def test_pion_udp_binding_answered(pion_servers):
    server = pion_servers["udp"]
    assert (server.host, server.transport) == ("127.0.0.1", "udp")
    assert stun_binding_ok(server.host, server.port, timeout=IO_TIMEOUT)


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_pion_stream_binding_answered(pion_servers, ca_file, kind):
    server = pion_servers[kind]
    client = Client(kind, server.port, ca_file)
    try:
        answer = client.ask(BINDING, [])
    finally:
        client.close()
    assert answer.is_success and XOR_MAPPED_ADDRESS in answer.attrs


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
def test_turncheck_probe_pion(pion_servers, ca_file, kind):
    server = pion_servers[kind]
    extra = ("--ca-file", str(ca_file)) if kind == "tls" else ()
    assert_relay(*turncheck_probe(server.url, *extra), transport=kind)


def test_pion_binds_only_loopback_relay_included(pion_factory):
    server = pion_factory("udp")
    client = Client("udp", server.port)
    try:
        _, answer = client.allocate("alice", "s3cret")
        assert answer.is_success and XOR_RELAYED_ADDRESS in answer.attrs
        bound = bound_addresses(server.process.pid)
    finally:
        client.close()
    # the listener and the relay socket; the upstream example would bind 0.0.0.0 for both
    assert len(bound) >= 2, bound
    assert {ip for _, ip, _ in bound} == {"127.0.0.1"}, bound


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("nobody", "s3cret")])
def test_pion_bad_credentials_get_unsigned_400(pion_servers, ca_file, kind, user, password):
    client = Client(kind, pion_servers[kind].port, ca_file)
    try:
        first, second = client.allocate(user, password)
    finally:
        client.close()
    assert first.code == 401
    assert first.attrs[REALM] == b"turncheck.test"
    assert second.is_error and second.code == 400 and second.phrase == ""
    assert not {MESSAGE_INTEGRITY, REALM, NONCE} & set(second.attrs)
    assert first.software is None and second.software is None


def test_pion_tls_sends_no_close_notify(pion_servers, ca_file):
    client = Client("tls", pion_servers["tls"].port, ca_file)
    try:
        assert client.ask(BINDING, []).is_success
        client.sock.settimeout(1.0)
        # Our close_notify gets neither a close_notify back nor a TCP close.
        with pytest.raises(TimeoutError):
            client.sock.unwrap()
    finally:
        client.close()


def test_pion_perm_filter_refuses_peer_without_error_code(pion_factory):
    server = pion_factory("perm-filter")
    client = Client("udp", server.port)
    try:
        _, answer = client.allocate("alice", "s3cret")
        assert answer.is_success
        own = client.signed(CREATE_PERMISSION, [(XOR_PEER_ADDRESS, _xor_peer("127.0.0.1", 9))])
        other = client.signed(CREATE_PERMISSION, [(XOR_PEER_ADDRESS, _xor_peer("127.0.0.2", 9))])
        bind = client.signed(
            CHANNEL_BIND,
            [(CHANNEL_NUMBER, b"\x40\x00\x00\x00"), (XOR_PEER_ADDRESS, _xor_peer("127.0.0.2", 9))],
        )
    finally:
        client.close()
    assert own.is_success
    # refused: an error response with no ERROR-CODE at all (never 403)
    assert other.is_error and other.code is None and MESSAGE_INTEGRITY in other.attrs
    assert bind.is_error and bind.code == 401
    assert "Blocking request from client IP 127.0.0.1 to peer 127.0.0.2" in server.log_text()


def test_pion_refuses_credentials_its_flag_would_cut(pion_binaries, tmp_path):
    from tests.servers.pion import running_pion

    with pytest.raises(ValueError, match=r"\(\\w\+\)"):
        with running_pion(tmp_path, "udp", binaries=pion_binaries, users={"alice": "s3-cret"}):
            pass


# --------------------------------------------------------------------- ejabberd


def test_ejabberd_binding_software_and_no_rfc5780(ejabberd):
    assert stun_binding_ok(ejabberd.host, ejabberd.port, timeout=IO_TIMEOUT)
    client = Client("udp", ejabberd.port)
    try:
        answer = client.ask(BINDING, [])
        change = client.ask(BINDING, [(CHANGE_REQUEST, b"\0\0\0\x06")])
    finally:
        client.close()
    assert answer.is_success and answer.software == "P1 STUN library"
    assert not {OTHER_ADDRESS, RESPONSE_ORIGIN} & set(answer.attrs)
    assert change.code == 420 and change.attrs[UNKNOWN_ATTRIBUTES] == b"\x00\x03"


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_ejabberd_stream_binding_answered(ejabberd, ca_file, kind):
    client = Client(kind, ejabberd.tls_port if kind == "tls" else ejabberd.port, ca_file)
    try:
        answer = client.ask(BINDING, [])
    finally:
        client.close()
    assert answer.is_success and XOR_MAPPED_ADDRESS in answer.attrs


@pytest.mark.parametrize("kind", ["udp", "tcp", "tls"])
def test_turncheck_probe_ejabberd(ejabberd, ca_file, kind):
    extra = ("--ca-file", str(ca_file)) if kind == "tls" else ()
    assert_relay(*turncheck_probe(ejabberd.url(kind), *extra), transport=kind)


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("nobody", "s3cret")])
def test_ejabberd_bad_credentials_get_401(ejabberd, user, password):
    client = Client("udp", ejabberd.port)
    try:
        first, second = client.allocate(user, password)
    finally:
        client.close()
    assert first.code == 401
    assert second.code == 401 and second.phrase == "Unauthorized"
    assert second.attrs[REALM] == b"turncheck.test" and NONCE in second.attrs
    assert MESSAGE_INTEGRITY not in second.attrs
    assert second.software == "P1 STUN library"


def test_ejabberd_binds_only_loopback_without_epmd(ejabberd):
    bound = bound_addresses(ejabberd.process.pid)
    ports = {port for _, _, port in bound}
    assert {ejabberd.port, ejabberd.tls_port, ejabberd.dist_port} <= ports, bound
    assert {ip for _, ip, _ in bound} == {"127.0.0.1"}, bound
    names = set()
    for pid in descendants(ejabberd.process.pid):
        try:
            names.add(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    assert "epmd" not in names, names
    users = ejabberd.ctl("registered_users", ejabberd.realm)
    assert users.returncode == 0 and users.stdout.split() == ["alice"], users


def test_ejabberd_blacklist_refuses_loopback_client_and_stops_clean(tls_ca, tmp_path):
    from tests.servers.ejabberd import ejabberd_missing, running_ejabberd
    from tests.servers.fixtures import lab_unavailable

    why = ejabberd_missing()
    if why is not None:
        lab_unavailable(why)
    with running_ejabberd(tmp_path, ca=tls_ca, turn_blacklist=["127.0.0.1/8"]) as server:
        pid = server.process.pid
        children = descendants(pid)
        client = Client("udp", server.port)
        try:
            first, second = client.allocate("alice", "s3cret")
        finally:
            client.close()
    assert first.code == 401
    assert second.code == 403 and second.phrase == "Forbidden"
    assert MESSAGE_INTEGRITY in second.attrs  # signed: the credentials were right
    assert "Client address is blacklisted" in server.log_text()
    # stopped by its PID: the VM and everything it started are gone (bounded wait)
    deadline = time.monotonic() + 5
    for _ in range(100):
        left = [p for p in {pid, *children} if _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert server.process.returncode is not None
    assert not left, left
