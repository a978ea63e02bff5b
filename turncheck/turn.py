"""Our TURN client (RFC 8656) over a transport.Channel.

aioice's TurnClient only asks for UDP relays over UDP/TCP, retransmits over TCP,
and its close() does not wait for the Refresh(0): an allocation outlives the
loop and eats the user's quota (486). Allocation here is an async context
manager whose exit awaits the delete, on error and on cancellation (Ctrl-C) too.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from typing import Any

from turncheck import stun
from turncheck.errors import (
    AuthFailure,
    CheckFailure,
    ErrorResponse,
    ProtocolFailure,
    UnprotectedAnswer,
)
from turncheck.transport import Address, Answer, Channel, Conclusive, RetryPolicy, StreamChannel

DELETE_TIMEOUT = 2.0  # seconds allowed for Refresh(0), whatever the check's deadline
FIRST_CHANNEL = 0x4000  # RFC 8656 §12: channel numbers 0x4000-0x4FFF

# (peer address, payload, path): path is "channel" (ChannelData) or "indication" (Data).
PeerDataHandler = Callable[[Address, bytes, str], None]
# (CONNECTION-ID, peer address) of an RFC 6062 ConnectionAttempt indication.
ConnectionAttemptHandler = Callable[[int, Address], None]

# Who wants to know about allocations: "created", "deleted", "delete_failed" (the exporter's
# own metrics). Called on the event loop; must not raise.
observers: list[Callable[[str], None]] = []


def _notify(event: str) -> None:
    for observer in observers:
        observer(event)


class Redirect(Exception):
    """300 Try Alternate: the caller reconnects to `alternate` (RFC 8489 §10)."""

    def __init__(self, alternate: Address) -> None:
        super().__init__(f"redirected to {alternate[0]}:{alternate[1]}")
        self.alternate = alternate


class Allocation:
    """One TURN allocation on one channel; `async with` guarantees the delete."""

    def __init__(
        self,
        channel: Channel,
        server: Address,
        credentials: stun.Credentials | None,
        *,
        policy: RetryPolicy,
        transport_name: str = "udp",
    ) -> None:
        self.channel = channel
        self.server = server
        self.credentials = credentials
        self.policy = policy
        self.transport_name = transport_name
        self.realm: str | None = None
        self.nonce: bytes | None = None
        self.key: bytes | None = None
        self.relayed: Address | None = None
        # Every XOR-RELAYED-ADDRESS of the success: two after a dual allocation (RFC 8656 §7.2).
        self.relayed_all: tuple[Address, ...] = ()
        # ADDRESS-ERROR-CODE: (family, code, phrase) of the family a dual allocation lacks.
        self.address_error: tuple[str, int, str] | None = None
        self.mapped: Address | None = None
        self.lifetime: int | None = None
        self.software: str | None = None
        self.first_rtt: float | None = None
        self.took: float | None = None  # seconds the Allocate took, its 401 round included
        # Weighs the evidence when the first Allocate goes unanswered (transport.request).
        self.conclusive: Conclusive | None = None
        # Attributes every request of the allocation carries: an ORIGIN given to Allocate
        # (coturn's check-origin-consistency answers a request without it with 441, its
        # delete too).
        self.session: dict[str, Any] = {}
        self.challenge: stun.Message | None = None  # the 401 that asked for credentials
        self.response: stun.Message | None = None  # the Allocate success response
        self.deleted: bool | None = None  # None: nothing to delete
        self._channels: dict[int, Address] = {}
        self._bound: set[int] = set()
        self._maybe_allocated = False

    async def __aenter__(self) -> Allocation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.delete()

    # -- relaying (RFC 8656 §9-12) -------------------------------------------------------------

    async def create_permission(self, peer_ip: str, deadline: float) -> None:
        """CreatePermission for one peer IP (the port is ignored by the server, §9.1)."""
        await self.authed(
            stun.Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": (peer_ip, 0)}, deadline
        )

    async def channel_bind(self, number: int, peer: Address, deadline: float) -> None:
        """Bind a channel number to a peer (it also installs or refreshes the permission)."""
        attrs = {"CHANNEL-NUMBER": number, "XOR-PEER-ADDRESS": peer}
        # RFC 8656 §11.2: ready for the server's ChannelData as soon as the request is sent,
        # though ours goes out as ChannelData only after a (verified) success.
        self._channels[number] = peer
        await self.authed(stun.Method.CHANNEL_BIND, attrs, deadline)
        self._bound.add(number)

    def bound(self, number: int) -> bool:
        """The server confirmed this channel: data may go as ChannelData."""
        return number in self._bound

    def send_indication(self, peer: Address, data: bytes) -> None:
        """Send indication: data to a peer, no channel needed (indications are not signed)."""
        message = stun.Message(
            stun.Method.SEND,
            stun.Class.INDICATION,
            attributes={"XOR-PEER-ADDRESS": peer, "DATA": data},
        )
        self.channel.send_indication(message, self.server)

    def send_channel(self, number: int, data: bytes) -> None:
        """ChannelData: a 4-byte header instead of a 36-byte STUN message (§12.4)."""
        self.channel.send_raw(struct.pack("!HH", number, len(data)) + data, self.server)

    # -- RFC 6062 TCP allocations ------------------------------------------------------------

    async def connect(self, peer: Address, deadline: float) -> int:
        """Connect (RFC 6062 §4.3): the server opens a TCP connection from the relayed
        address to *peer*; the answer's CONNECTION-ID names it for ConnectionBind."""
        response = await self.authed(stun.CONNECT, {"XOR-PEER-ADDRESS": peer}, deadline)
        connection_id = response.attributes.get("CONNECTION-ID")
        if connection_id is None:
            raise ProtocolFailure(
                "missing-attribute", "the Connect success response has no CONNECTION-ID"
            )
        return int(connection_id)

    async def connection_bind(
        self, data: StreamChannel, connection_id: int, deadline: float
    ) -> None:
        """ConnectionBind (RFC 6062 §4.4) on a new data connection, signed with this
        allocation's credentials: on success *data* carries the peer's bytes, raw."""
        data.raw_after(stun.CONNECTION_BIND)
        await self.authed(
            stun.CONNECTION_BIND, {"CONNECTION-ID": connection_id}, deadline, channel=data
        )
        if not data.raw:  # pragma: no cover - the success that answered it turned it raw
            raise ProtocolFailure(
                "bad-answer", "ConnectionBind succeeded but the stream stayed STUN"
            )

    def on_connection_attempt(self, handler: ConnectionAttemptHandler) -> None:
        """Deliver ConnectionAttempt indications (RFC 6062 §4.4): a peer connected to the
        relayed address of this TCP allocation."""

        def indication(message: stun.Message, source: Address) -> None:
            if message.message_method != stun.CONNECTION_ATTEMPT or source != self.server:
                return
            connection_id = message.attributes.get("CONNECTION-ID")
            peer = message.attributes.get("XOR-PEER-ADDRESS")
            if connection_id is not None and peer is not None:
                handler(int(connection_id), (str(peer[0]), int(peer[1])))

        self.channel.on_indication = indication

    def on_peer_data(self, handler: PeerDataHandler) -> None:
        """Deliver data relayed from peers, by ChannelData or Data indication."""

        def channel_data(data: bytes, source: Address) -> None:
            if len(data) < 4 or source != self.server:
                return
            number, length = struct.unpack_from("!HH", data, 0)
            peer = self._channels.get(number)
            if peer is not None and 4 + length <= len(data):
                handler(peer, data[4 : 4 + length], "channel")

        def indication(message: stun.Message, source: Address) -> None:
            if message.message_method != stun.Method.DATA or source != self.server:
                return
            peer = message.attributes.get("XOR-PEER-ADDRESS")
            payload = message.attributes.get("DATA")
            if peer is not None and payload is not None:
                handler((str(peer[0]), int(peer[1])), bytes(payload), "indication")

        self.channel.on_data = channel_data
        self.channel.on_indication = indication

    # -- requests ---------------------------------------------------------------------------

    def _what(self, method: str) -> str:
        return f"TURN {method} ({self.transport_name})"

    async def _send(
        self,
        message: stun.Message,
        deadline: float,
        *,
        signed: bool,
        what: str,
        judge: Conclusive | None = None,
        channel: Channel | None = None,
    ) -> Answer:
        if signed:
            assert self.credentials is not None and self.key is not None
            message.attributes["USERNAME"] = self.credentials.username
            message.attributes["REALM"] = self.realm
            message.attributes["NONCE"] = self.nonce
            stun.sign(message, self.key)
        # No FINGERPRINT: libwebrtc's TURN client sends none (turn_port.cc), on any request.
        return await (channel or self.channel).request(
            message,
            self.server,
            deadline=deadline,
            policy=self.policy,
            key=self.key if signed else None,
            long_term=True,
            what=what,
            conclusive=judge,
        )

    def _learn_challenge(self, message: stun.Message) -> None:
        realm = message.attributes.get("REALM")
        nonce = message.attributes.get("NONCE")
        if not realm or not nonce:
            missing = " and ".join(n for n, v in (("REALM", realm), ("NONCE", nonce)) if not v)
            raise ProtocolFailure("missing-attribute", f"the server's 401/438 has no {missing}")
        self.realm = str(realm)
        self.nonce = bytes(nonce)
        if self.credentials is not None:
            self.key = stun.long_term_key(
                self.credentials.username, self.realm, self.credentials.password
            )

    async def authed(
        self,
        method: stun.Method,
        attributes: dict[str, Any],
        deadline: float,
        *,
        mark_allocated: bool = False,
        channel: Channel | None = None,
    ) -> stun.Message:
        """An authenticated request with one retry on 438 Stale Nonce (RFC 8656 §6.4).

        On an allocation the server granted without a challenge (no authentication, as
        coturn's no-auth), requests go unsigned until the server asks with a 401.
        *channel*: another connection to the same server (an RFC 6062 data connection)."""
        name = stun.method_name(method)
        signed = self.key is not None
        for attempt in range(2):
            message = stun.Message(
                method, stun.Class.REQUEST, attributes={**attributes, **self.session}
            )
            if mark_allocated:
                self._maybe_allocated = True
            try:
                answer = await self._send(
                    message, deadline, signed=signed, what=self._what(name), channel=channel
                )
            except UnprotectedAnswer as exc:
                if mark_allocated and exc.kind == "error":
                    self._maybe_allocated = False  # an error: no allocation (RFC 8656 §7.3)
                raise
            response = answer.message
            if response.message_class == stun.Class.RESPONSE:
                return response
            code, phrase = stun.error_of(response)
            wants_auth = code == 401 and not signed and self.credentials is not None
            if (code == 438 or wants_auth) and attempt == 0:
                self._learn_challenge(response)
                signed = self.key is not None
                continue
            if mark_allocated:
                # RFC 8656 §7.3: no allocation exists after an error response to Allocate.
                self._maybe_allocated = False
            if code == 300:
                raise Redirect(alternate_of(response))
            software = _software(response)
            if code in (401, 441):
                raise AuthFailure(name, code, phrase, software)
            raise ErrorResponse(name, code, phrase, software)
        raise AssertionError("unreachable")  # pragma: no cover

    async def allocate(self, deadline: float, extra: dict[str, Any] | None = None) -> None:
        """Allocate a UDP relay: challenge, authenticated retry, 438 once (RFC 8656 §7).
        *extra*: attributes the audit adds (REQUESTED-ADDRESS-FAMILY, EVEN-PORT, LIFETIME,
        ...), or a REQUESTED-TRANSPORT of its own; the browser's Allocate has none."""
        began = time.monotonic()  # not the loop clock: uvloop's counts whole ms
        # Exactly Chromium's Allocate (turn_port.cc TurnAllocateRequest): REQUESTED-TRANSPORT
        # alone, then with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY after the 401; no
        # FINGERPRINT, and no REQUESTED-ADDRESS-FAMILY over IPv6 either (the server picks the
        # relay's family: RFC 8656 §7.1 says IPv4 by default).
        attrs: dict[str, Any] = {"REQUESTED-TRANSPORT": stun.REQUESTED_TRANSPORT_UDP}
        attrs.update(extra or {})
        if "ORIGIN" in attrs:
            self.session["ORIGIN"] = attrs["ORIGIN"]
        first = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST, attributes=dict(attrs))
        answer = await self._send(
            first, deadline, signed=False, what=self._what("Allocate"), judge=self.conclusive
        )
        self.first_rtt = answer.rtt
        response = answer.message
        if response.message_class == stun.Class.ERROR:
            code, phrase = stun.error_of(response)
            if code == 300:
                raise Redirect(alternate_of(response))
            if code != 401:
                raise ErrorResponse("Allocate", code, phrase, _software(response))
            self.challenge = response
            self._learn_challenge(response)
            if self.credentials is None:
                raise AuthFailure("Allocate", code, phrase, _software(response))
            response = await self.authed(stun.Method.ALLOCATE, attrs, deadline, mark_allocated=True)
        else:
            self._maybe_allocated = True
        self.response = response
        relayed = response.attributes.get("XOR-RELAYED-ADDRESS")
        if relayed is None:
            raise ProtocolFailure(
                "missing-attribute", "the Allocate success response has no XOR-RELAYED-ADDRESS"
            )
        # coturn answers a dual Allocate it can half serve with a second XOR-RELAYED-ADDRESS
        # of 0.0.0.0:0 beside the ADDRESS-ERROR-CODE (checked with 4.6.1): not an address.
        every = [
            (str(a[0]), int(a[1]))
            for a in stun.repeated(response, "XOR-RELAYED-ADDRESS")
            if int(a[1]) != 0
        ]
        self.relayed = every[0] if every else (str(relayed[0]), int(relayed[1]))
        self.relayed_all = tuple(every) or (self.relayed,)
        address_error = response.attributes.get(
            "ADDRESS-ERROR-CODE", response.attributes.get("DRAFT-ADDRESS-ERROR-CODE")
        )
        if address_error is not None:
            self.address_error = stun.address_error(bytes(address_error))
        _notify("created")
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
        self.mapped = (str(mapped[0]), int(mapped[1])) if mapped else None
        self.lifetime = response.attributes.get("LIFETIME")
        software = response.attributes.get("SOFTWARE")
        self.software = stun.clean_text(software) if software else None
        self.took = time.monotonic() - began

    async def refresh(self, deadline: float, lifetime: int = 600) -> None:
        """Refresh the allocation's lifetime (RFC 8656 §8) in a long run."""
        await self.authed(stun.Method.REFRESH, {"LIFETIME": lifetime}, deadline)

    async def delete(self) -> None:
        """Refresh LIFETIME=0 (RFC 8656 §8); bounded; on every path, even when cancelled."""
        if not self._maybe_allocated or self.deleted is not None:
            return
        self._maybe_allocated = False
        if self.key is None:
            # An allocation made without authentication is deleted unauthenticated.
            self.deleted = await self._delete_unsigned()
            _notify("deleted" if self.deleted else "delete_failed")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DELETE_TIMEOUT
        try:
            await self.authed(stun.Method.REFRESH, {"LIFETIME": 0}, deadline)
            self.deleted = True
        except ErrorResponse as exc:
            # 437: no such allocation (the Allocate never reached the server): nothing left.
            self.deleted = exc.code == 437
        except (CheckFailure, Redirect):
            self.deleted = False
        if self.relayed is not None:
            _notify("deleted" if self.deleted else "delete_failed")

    async def _delete_unsigned(self) -> bool:
        loop = asyncio.get_running_loop()
        message = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST, attributes={"LIFETIME": 0})
        with contextlib.suppress(CheckFailure):
            await self._send(message, loop.time() + DELETE_TIMEOUT, signed=False, what="Refresh")
            return True
        return False


def _software(message: stun.Message) -> str | None:
    software = message.attributes.get("SOFTWARE")
    return stun.clean_text(software) if software else None


def alternate_of(response: stun.Message) -> Address:
    alternate = response.attributes.get("ALTERNATE-SERVER")
    if alternate is None:
        raise ProtocolFailure("missing-attribute", "300 Try Alternate without ALTERNATE-SERVER")
    return (str(alternate[0]), int(alternate[1]))
