"""-v/--verbose: every STUN/TURN message sent and received, in the spirit of Trickle ICE's log.

USERNAME, REALM and NONCE are shown; MESSAGE-INTEGRITY is shown as hidden and no
credential is ever in a message (the long-term key is only used to compute it).
ChannelData packets are not traced: the relay check's figures summarise them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from turncheck import stun
from turncheck.transport import Address
from turncheck.urls import fmt_address

_HIDDEN = {"MESSAGE-INTEGRITY", "MESSAGE-INTEGRITY-SHA256"}
_ADDRESSES = {
    "XOR-MAPPED-ADDRESS",
    "MAPPED-ADDRESS",
    "XOR-RELAYED-ADDRESS",
    "XOR-PEER-ADDRESS",
    "OTHER-ADDRESS",
    "RESPONSE-ORIGIN",
    "ALTERNATE-SERVER",
    "CHANGED-ADDRESS",
    "SOURCE-ADDRESS",
}


def format_attribute(name: str, value: Any) -> str:
    """One attribute as text; secrets-bearing ones hidden, server text cleaned."""
    if name in _HIDDEN:
        return f"{name}=(hidden)"
    if name in _ADDRESSES:
        return f"{name}={fmt_address(value)}"
    if name == "ERROR-CODE":
        return f"ERROR-CODE={int(value[0])} {stun.clean_text(value[1], 60)}".rstrip()
    if name == "REQUESTED-TRANSPORT":
        return f"REQUESTED-TRANSPORT={'UDP' if value >> 24 == 17 else value >> 24}"
    if name == "REQUESTED-ADDRESS-FAMILY":
        return f"REQUESTED-ADDRESS-FAMILY={'IPv6' if value >> 24 == 2 else 'IPv4'}"
    if name == "CHANGE-REQUEST":
        flags = [f for bit, f in ((4, "ip"), (2, "port")) if value & bit]
        return f"CHANGE-REQUEST={'+'.join(flags) or 'none'}"
    if name == "FINGERPRINT":
        return "FINGERPRINT"
    if name == "DATA":
        return f"DATA=<{len(value)} bytes>"
    if name == "NONCE":
        raw = bytes(value)
        text = raw.decode("ascii", "replace")
        return f"NONCE={stun.clean_text(text, 40)}" if text.isprintable() else f"NONCE={raw.hex()}"
    if isinstance(value, bytes):
        return f"{name}=<{len(value)} bytes>"
    return f"{name}={stun.clean_text(value, 80)}"


def format_message(
    direction: str, message: stun.Message, peer: Address, local: Address, offset: float
) -> str:
    arrow = "→" if direction == "send" else "←"
    kind = f"{stun.method_name(message.message_method)} {message.message_class.name.lower()}"
    attrs = " ".join(format_attribute(n, v) for n, v in message.attributes.items())
    return (
        f"+{offset * 1000:8.1f} ms :{local[1]:<5} {arrow} {fmt_address(peer):<22} {kind:<26} "
        f"tid={message.transaction_id.hex()[:12]} {attrs}"
    ).rstrip()


class Tracer:
    """A transport.Tracer writing one line per message; the time is since the run began."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._start = time.monotonic()

    def __call__(
        self, direction: str, message: stun.Message, peer: Address, local: Address
    ) -> None:
        offset = time.monotonic() - self._start
        self._write(format_message(direction, message, peer, local, offset))
