"""turncheck's exceptions.

    TurncheckError
    ├── InputError              bad command line, URL or configuration: exit 2, one line
    │   └── ConfigRejected      the browser's RTCPeerConnection constructor throws on it
    └── CheckFailure            a check did not pass; explain.py turns it into words
        ├── DnsFailure          NXDOMAIN, no records, DNS timeout, service not offered
        ├── ConnectFailure      refused, unreachable, reset, connection lost
        ├── TlsFailure          handshake or certificate verification
        ├── TransactionTimeout  no acceptable answer before the deadline
        ├── ErrorResponse       the server answered with a STUN error code
        ├── UnprotectedAnswer   only answers without MESSAGE-INTEGRITY to a signed request
        ├── AuthFailure         401 after a credentialed retry
        ├── ProtocolFailure     an answer that breaks the protocol (missing attribute, loop)
        ├── RedirectedFailure   the alternate server a 300 pointed to failed
        └── RelayFailure        the allocation works but relayed packets do not come back

Everything below the CLI raises these; nothing below the CLI prints.
"""

from __future__ import annotations


class TurncheckError(Exception):
    """Base of turncheck's own errors."""


class InputError(TurncheckError):
    """The user's input is wrong; the message names the culprit."""


class ConfigRejected(InputError):
    """The browser's constructor refuses the configuration: its exception class and message
    (Chromium's words), the culprit, and turncheck's own explanation."""

    def __init__(
        self, exception: str, message: str, culprit: str, why: str = "", who: str = "the browser"
    ) -> None:
        text = f"{culprit}: {who} throws {exception}: {message}"
        super().__init__(text + (f" ({why})" if why else ""))
        self.exception = exception
        self.message = message
        self.culprit = culprit
        self.why = why
        self.who = who

    def within(self, origin: str) -> ConfigRejected:
        """The same rejection, naming the iceServers entry that holds the culprit."""
        return ConfigRejected(
            self.exception, self.message, f"{origin}: {self.culprit}", self.why, self.who
        )


class CheckFailure(TurncheckError):
    """A check failed; explain.py maps the subclass and fields to reason and hint."""


class DnsFailure(CheckFailure):
    def __init__(self, kind: str, name: str, detail: str = "") -> None:
        # kind: nxdomain | noanswer | timeout | servfail | not-offered | error
        super().__init__(f"DNS {kind} for {name}: {detail}".rstrip(": "))
        self.kind = kind
        self.name = name
        self.detail = detail


class ConnectFailure(CheckFailure):
    def __init__(self, kind: str, detail: str = "") -> None:
        # kind: refused | unreachable | reset | lost | closed | error
        super().__init__(f"{kind}: {detail}".rstrip(": "))
        self.kind = kind
        self.detail = detail


class TlsFailure(CheckFailure):
    def __init__(self, kind: str, detail: str, cert: object | None = None) -> None:
        # kind: expired | hostname | self-signed | untrusted | handshake | timeout
        super().__init__(f"TLS {kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.cert = cert  # tlsinfo.CertInfo of the rejected certificate, when it could be read


class TransactionTimeout(CheckFailure):
    def __init__(self, what: str, sends: int, waited: float, ignored: tuple[str, ...]) -> None:
        super().__init__(f"{what}: no answer after {sends} send(s) in {waited:.1f} s")
        self.what = what
        self.sends = sends
        self.waited = waited
        self.ignored = ignored


class StunOnlyServer(TransactionTimeout):
    """Allocates unanswered while every Binding of a burst on the same socket, sent to the
    same address, was answered: the server speaks STUN, not TURN (loss would have taken
    Bindings too). A timeout to the browser, which waits its ~40 s out."""

    def __init__(self, what: str, sends: int, waited: float, burst: int, rtt: float) -> None:
        super().__init__(what, sends, waited, ())
        self.burst = burst
        self.rtt = rtt


class ErrorResponse(CheckFailure):
    def __init__(self, method: str, code: int, phrase: str, software: str | None = None) -> None:
        super().__init__(f"{method} error {code} {phrase}".rstrip())
        self.method = method
        self.code = code
        self.phrase = phrase
        self.software = software  # the server's SOFTWARE, for hints worded for it


class UnprotectedAnswer(CheckFailure):
    """The only answers to an authenticated request lacked MESSAGE-INTEGRITY (RFC 8489
    §9.2.5 says to ignore them). Not noise: pion answers a wrong password with an unsigned
    400, some servers never sign their successes. kind: "error" or "success"."""

    def __init__(
        self, method: str, kind: str, code: int, phrase: str, software: str | None = None
    ) -> None:
        what = f"{code} {phrase}".strip() if kind == "error" else "success"
        super().__init__(f"{method}: {what} without MESSAGE-INTEGRITY")
        self.method = method
        self.kind = kind
        self.code = code
        self.phrase = phrase
        self.software = software


class AuthFailure(CheckFailure):
    def __init__(self, method: str, code: int, phrase: str, software: str | None = None) -> None:
        super().__init__(f"{method} rejected the credentials ({code} {phrase})".rstrip())
        self.method = method
        self.code = code
        self.phrase = phrase
        self.software = software


class ProtocolFailure(CheckFailure):
    def __init__(self, kind: str, detail: str) -> None:
        # kind: missing-attribute | alternate-loop | bad-answer | not-stun
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class RelayFailure(CheckFailure):
    def __init__(self, kind: str, detail: str) -> None:
        # kind: broken | second-allocation
        super().__init__(f"relay {kind}: {detail}")
        self.kind = kind
        self.detail = detail


class RedirectedFailure(CheckFailure):
    """The alternate server a 300 pointed to failed: say both."""

    def __init__(self, alternate: str, failure: CheckFailure) -> None:
        super().__init__(f"after a redirect to {alternate}: {failure}")
        self.alternate = alternate
        self.failure = failure
