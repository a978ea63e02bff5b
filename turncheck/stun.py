"""Our thin layer over aioice's STUN codec: the one place that extends it.

aioice.stun gives Message, parse_message and the attribute table. It lacks some
attributes a tester needs (ALTERNATE-SERVER, REQUESTED-ADDRESS-FAMILY, ...),
does not check the magic cookie or that attribute lengths stay inside the
message, and can raise struct.error or IndexError on hostile input. decode()
validates the framing first and turns every codec failure into MalformedMessage.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import importlib.util
import struct
import sys
import types
import weakref
from typing import TYPE_CHECKING, Any

from turncheck.config import Credentials


def _load_aioice_codec() -> types.ModuleType:
    """aioice.stun without aioice/__init__, which imports the whole ICE agent (ifaddr,
    mDNS, dnspython's message parser): ~90 ms of start-up a tester never uses."""
    if "aioice" not in sys.modules:
        spec = importlib.util.find_spec("aioice")
        if spec is not None and spec.submodule_search_locations is not None:
            package = types.ModuleType("aioice")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__package__ = "aioice"
            sys.modules["aioice"] = package
    return importlib.import_module("aioice.stun")


if TYPE_CHECKING:
    from aioice import stun as _stun
else:
    _stun = _load_aioice_codec()

Message = _stun.Message
Class = _stun.Class

if TYPE_CHECKING:
    Method = _stun.Method
    CONNECT: Method
    CONNECTION_BIND: Method
    CONNECTION_ATTEMPT: Method
else:

    class Method(enum.IntEnum):
        """aioice's methods and RFC 6062's (§6.1): its parse_message looks `Method` up in
        its module at each call, so the enum below replaces it there and a Connect answer
        parses instead of raising ValueError."""

        BINDING = 0x001
        SHARED_SECRET = 0x002
        ALLOCATE = 0x003
        REFRESH = 0x004
        SEND = 0x006
        DATA = 0x007
        CREATE_PERMISSION = 0x008
        CHANNEL_BIND = 0x009
        CONNECT = 0x00A
        CONNECTION_BIND = 0x00B
        CONNECTION_ATTEMPT = 0x00C

    if not all(hasattr(_stun.Method, n) for n in ("CONNECT", "CONNECTION_ATTEMPT")):
        _stun.Method = Method
    Method = _stun.Method
    CONNECT = Method.CONNECT
    CONNECTION_BIND = Method.CONNECTION_BIND
    CONNECTION_ATTEMPT = Method.CONNECTION_ATTEMPT

__all__ = ["Class", "Credentials", "MalformedMessage", "Message", "Method", "decode"]

COOKIE = _stun.COOKIE
HEADER_LENGTH = _stun.HEADER_LENGTH
REQUESTED_TRANSPORT_UDP = 17 << 24  # RFC 8656 §18.7: protocol number in the first byte
REQUESTED_TRANSPORT_TCP = 6 << 24  # RFC 6062 §6.2: a TCP allocation

# Attributes aioice does not know, registered into its tables (RFC 8489 §18.3, RFC 8656 §18,
# RFC 5780 §7). Address-valued ones reuse aioice's packers.
_EXTRA_ATTRIBUTES: list[Any] = [
    (0x0017, "REQUESTED-ADDRESS-FAMILY", _stun.pack_unsigned, _stun.unpack_unsigned),
    (0x001A, "DONT-FRAGMENT", _stun.pack_none, _stun.unpack_none),
    (0x0022, "RESERVATION-TOKEN", _stun.pack_bytes, _stun.unpack_bytes),
    (0x0026, "PADDING", _stun.pack_bytes, _stun.unpack_bytes),
    (0x0027, "RESPONSE-PORT", _stun.pack_unsigned_short, _stun.unpack_unsigned_short),
    (0x8023, "ALTERNATE-SERVER", _stun.pack_address, _stun.unpack_address),
    (0x8000, "ADDITIONAL-ADDRESS-FAMILY", _stun.pack_unsigned, _stun.unpack_unsigned),
    # The audit's (RFC 8656 §18, RFC 6062 §6.2, RFC 8016 §3.1, RFC 7635 §6, RFC 8489 §14).
    (0x0018, "EVEN-PORT", _stun.pack_bytes, _stun.unpack_bytes),
    (0x001C, "MESSAGE-INTEGRITY-SHA256", _stun.pack_bytes, _stun.unpack_bytes),
    (0x001D, "PASSWORD-ALGORITHM", _stun.pack_bytes, _stun.unpack_bytes),
    (0x001E, "USERHASH", _stun.pack_bytes, _stun.unpack_bytes),
    (0x002A, "CONNECTION-ID", _stun.pack_unsigned, _stun.unpack_unsigned),
    (0x8002, "PASSWORD-ALGORITHMS", _stun.pack_bytes, _stun.unpack_bytes),
    (0x8003, "ALTERNATE-DOMAIN", _stun.pack_string, _stun.unpack_string),
    (0x802E, "THIRD-PARTY-AUTHORIZATION", _stun.pack_string, _stun.unpack_string),
    (0x802F, "ORIGIN", _stun.pack_string, _stun.unpack_string),
    (0x8030, "MOBILITY-TICKET", _stun.pack_bytes, _stun.unpack_bytes),
    (0x8001, "ADDRESS-ERROR-CODE", _stun.pack_bytes, _stun.unpack_bytes),
    # coturn (4.6 and later too) implements dual allocation at draft-ietf-tram-turnbis's code
    # points, not RFC 8656's (its ns_turn_msg_defs_new.h, "SSODA"): checked against 4.6.1,
    # which ignores 0x8000. IANA has since given 0x8032/0x8033 to Cisco's ENF attributes.
    (0x8032, "DRAFT-ADDITIONAL-ADDRESS-FAMILY", _stun.pack_unsigned, _stun.unpack_unsigned),
    (0x8033, "DRAFT-ADDRESS-ERROR-CODE", _stun.pack_bytes, _stun.unpack_bytes),
]
for _entry in _EXTRA_ATTRIBUTES:
    if _entry[0] not in _stun.ATTRIBUTES_BY_TYPE:
        _stun.ATTRIBUTES.append(_entry)
        _stun.ATTRIBUTES_BY_TYPE[_entry[0]] = _entry
        _stun.ATTRIBUTES_BY_NAME[_entry[1]] = _entry

_METHODS = {int(m) for m in Method}


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed STUN message; the text says what is wrong."""


def decode(data: bytes) -> Message:
    """Parse one STUN message, or raise MalformedMessage saying what is wrong with it."""
    if len(data) < HEADER_LENGTH:
        raise MalformedMessage(f"{len(data)} bytes, shorter than a STUN header")
    if data[0] & 0xC0:
        raise MalformedMessage("first two bits not zero: not a STUN message")
    msg_type, length, cookie = struct.unpack_from("!HHI", data, 0)
    if cookie != COOKIE:
        raise MalformedMessage(f"wrong magic cookie 0x{cookie:08x}")
    if length % 4:
        raise MalformedMessage(f"length {length} is not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise MalformedMessage(
            f"length field says {length} bytes of attributes but {len(data) - HEADER_LENGTH} came"
        )
    if msg_type & 0x3EEF not in _METHODS:
        raise MalformedMessage(f"unknown method 0x{msg_type & 0x3EEF:03x}")
    pos = HEADER_LENGTH
    while pos < len(data):
        if pos + 4 > len(data):
            raise MalformedMessage("truncated attribute header")
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + attr_len
        if end > len(data):
            raise MalformedMessage(f"attribute 0x{attr_type:04x} overruns the message")
        pos = end + (-attr_len % 4)
    try:
        message = _stun.parse_message(data)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
        raise MalformedMessage(str(exc) or type(exc).__name__) from exc
    _RAW[message] = data
    return message


# The bytes each decoded message came from: aioice keeps one value per attribute name, and a
# dual allocation's success carries XOR-RELAYED-ADDRESS twice (RFC 8656 §7.3).
_RAW: weakref.WeakKeyDictionary[Message, bytes] = weakref.WeakKeyDictionary()


def repeated(message: Message, name: str) -> list[Any]:
    """Every value of attribute *name* in a decoded message, in order, up to
    MESSAGE-INTEGRITY (what follows it is not authenticated, RFC 8489 §14.5); the one
    value aioice kept when the message was built here rather than decoded."""
    data = _RAW.get(message)
    if data is None:
        value = message.attributes.get(name)
        return [] if value is None else [value]
    attr_type, _, _, unpack = _stun.ATTRIBUTES_BY_NAME[name]
    out: list[Any] = []
    pos = HEADER_LENGTH
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        value = data[pos + 4 : pos + 4 + length]
        if kind == 0x0008:  # MESSAGE-INTEGRITY
            break
        if kind == attr_type:
            try:
                if unpack is _stun.unpack_xor_address:
                    out.append(unpack(value, transaction_id=message.transaction_id))
                else:
                    out.append(unpack(value))
            except (ValueError, struct.error, IndexError, UnicodeDecodeError):
                pass  # a malformed repeat is skipped, as decode() would have refused the first
        pos += 4 + length + (-length % 4)
    return out


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 §9.2.2: MD5(username ":" realm ":" password)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def sign(message: Message, key: bytes) -> None:
    """MESSAGE-INTEGRITY last, and no FINGERPRINT after it: what libwebrtc's TURN client
    sends (turn_port.cc AddRequestAuthInfo); aioice's add_message_integrity adds both."""
    message.attributes.pop("MESSAGE-INTEGRITY", None)
    message.attributes.pop("FINGERPRINT", None)
    data = bytes(message)
    message._integrity_data = data  # aioice's own field: what the integrity was computed on
    message.attributes["MESSAGE-INTEGRITY"] = _stun.message_integrity(data, key)


def clean_text(value: object, limit: int = 128) -> str:
    """Server-supplied text (reason phrases, SOFTWARE) made safe to show: no control bytes."""
    raw = str(value).rstrip("\x00")  # some servers count their NUL padding in the length
    text = "".join(ch if ch.isprintable() else "?" for ch in raw).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_of(message: Message) -> tuple[int, str]:
    """(code, cleaned reason phrase) of an error response; (0, '') when ERROR-CODE is missing."""
    value = message.attributes.get("ERROR-CODE")
    if not value:
        return 0, ""
    return int(value[0]), clean_text(value[1])


_METHOD_NAMES = {
    "BINDING": "Binding",
    "ALLOCATE": "Allocate",
    "REFRESH": "Refresh",
    "SEND": "Send",
    "DATA": "Data",
    "CREATE_PERMISSION": "CreatePermission",
    "CHANNEL_BIND": "ChannelBind",
    "CONNECT": "Connect",
    "CONNECTION_BIND": "ConnectionBind",
    "CONNECTION_ATTEMPT": "ConnectionAttempt",
}


def method_name(method: Method) -> str:
    """The RFC's spelling of a method: Allocate, CreatePermission, ..."""
    return _METHOD_NAMES.get(method.name, method.name.title())


def family_attribute(address: str) -> int:
    """REQUESTED-ADDRESS-FAMILY value (RFC 8656 §18.11): family byte, then 3 bytes RFFU."""
    return (0x02 if ":" in address else 0x01) << 24


FAMILY_IPV4 = 0x01 << 24  # REQUESTED-/ADDITIONAL-ADDRESS-FAMILY values (RFC 8656 §18.11, 18.12)
FAMILY_IPV6 = 0x02 << 24
FAMILY_NAMES = {0x01: "IPv4", 0x02: "IPv6"}


def requested_family(family: str, *, draft: bool = False) -> dict[str, Any]:
    """Allocate attributes for a relay of *family*: 'ipv4' or 'ipv6' (REQUESTED-ADDRESS-
    FAMILY, RFC 8656 §7.1), 'dual' (IPv4 plus ADDITIONAL-ADDRESS-FAMILY IPv6, §7.2; *draft*:
    at the draft's code point 0x8032, which coturn reads)."""
    if family == "ipv4":
        return {"REQUESTED-ADDRESS-FAMILY": FAMILY_IPV4}
    if family == "ipv6":
        return {"REQUESTED-ADDRESS-FAMILY": FAMILY_IPV6}
    if family == "dual":
        name = "DRAFT-ADDITIONAL-ADDRESS-FAMILY" if draft else "ADDITIONAL-ADDRESS-FAMILY"
        return {name: FAMILY_IPV6}
    raise ValueError(f"unknown relay family {family!r}")


def address_error(value: bytes) -> tuple[str, int, str]:
    """ADDRESS-ERROR-CODE (RFC 8656 §18.13): (family name, code, cleaned reason phrase):
    family (8 bits), reserved (13), class (3), number (8), then the phrase."""
    if len(value) < 4:
        return "?", 0, ""
    family, _, klass, number = struct.unpack_from("!BBBB", value, 0)
    phrase = clean_text(value[4:].decode("utf-8", "replace"))
    return FAMILY_NAMES.get(family, f"family {family}"), (klass & 0x07) * 100 + number, phrase


def other_address(attrs: dict[str, Any]) -> tuple[tuple[str, int] | None, str | None]:
    """The server's alternate address for the mapping tests, and which RFC named it: RFC
    5780's OTHER-ADDRESS first, else RFC 3489's CHANGED-ADDRESS (one method for probe and
    nat)."""
    for name, method in (("OTHER-ADDRESS", "rfc5780"), ("CHANGED-ADDRESS", "rfc3489")):
        value = attrs.get(name)
        if value:
            return (str(value[0]), int(value[1])), method
    return None, None
