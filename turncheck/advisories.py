"""Known advisories of TURN servers, matched against what SOFTWARE says (knowledge layer).

Each row was read at its source: coturn's GitHub security advisories (GHSA-…) as OSV and
NVD publish them, coturn's ChangeLog and the fixing commits in its repository. A row
holds the product, the affected range, the first fixed release, the ids, one line of what
it is, a severity, its source, and the behavioural check of the audit that can confirm
it, where one is safe to run.

Severity is the advisory's own rating (its CVSS base score: 9.0 and up CRITICAL, 7.0 up
HIGH, 4.0 up MEDIUM, else LOW). Where the advisory needs a setting the audit cannot see
(`condition`: OAuth, mobility, the web admin, an ARM64 host, ...), the finding is capped
at MEDIUM: the version is in range, the exposure is not known.

A version string is evidence, not proof: distributions backport fixes without changing
the version (and Debian 12's coturn 4.6.1 has not, for the advisories of 2026). The
findings say so; prefer the behavioural check where one exists.

Rows not taken: pion/turn and eturnal (p1_stun) have no published advisory in the sources
read, and send no version in SOFTWARE by default anyway (pion none, eturnal "eturnal").
coturn advisories about its database drivers, the CLI's `psd` command and a TCP framing
bug that only drops the attacker's own connection were left out: the audit can neither
see nor reach those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from turncheck.findings import Finding, Severity

Version = tuple[int, ...]

_COTURN_ADVISORIES = "https://github.com/coturn/coturn/security/advisories/"
_COTURN_CHANGELOG = "https://github.com/coturn/coturn/blob/master/ChangeLog"

# The behavioural checks of other modules that confirm an advisory (turncheck/audit/).
CHECK_PEER_ACL_LOOPBACK = "peer-acl-loopback"
CHECK_EVEN_PORT = "even-port"
CHECK_HTTP_ON_TURN_PORT = "http-on-turn-port"
CHECK_WEB_ADMIN = "web-admin"
CHECK_COTURN_CLI = "coturn-cli"
CHECK_DTLS = "dtls"
CHECK_MOBILITY = "mobility"
CHECK_THIRD_PARTY = "third-party-authorization"
CHECK_TCP_RELAY = "tcp-relay"

# The id the EVEN-PORT skip rule asks about: repeated EVEN-PORT with R=0 leaks relay ports.
EVEN_PORT_LEAK = "GHSA-847g-qmc6-6m4r"


def parse_version(text: str) -> Version:
    """'4.6.1' → (4, 6, 1); '4.5.1.3' → (4, 5, 1, 3); ValueError for anything else."""
    parts = text.strip().lstrip("vV").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"'{text}' is not a version (digits and dots)")
    return tuple(int(p) for p in parts)


def version_text(version: Version) -> str:
    return ".".join(str(p) for p in version)


def _padded(a: Version, b: Version) -> tuple[Version, Version]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def version_below(version: Version, limit: Version) -> bool:
    """version < limit, missing parts counting as 0 (4.5 == 4.5.0)."""
    a, b = _padded(version, limit)
    return a < b


@dataclass(frozen=True, slots=True)
class Advisory:
    """One advisory: which releases of which product it affects, and where it was read."""

    product: str  # "coturn", as identify() names it
    ids: tuple[str, ...]  # CVE first when there is one, then GHSA
    fixed: str  # the first release with the fix
    summary: str
    severity: Severity
    source: str
    introduced: str | None = None  # the first affected release (None: every one before)
    check: str | None = None  # the audit check that confirms it by behaviour
    condition: str = ""  # what the server must have enabled for it to apply

    @property
    def key(self) -> str:
        return self.ids[0]

    @property
    def finding_id(self) -> str:
        return f"advisory-{self.key.lower()}"

    @property
    def affected(self) -> str:
        """The affected range, as the advisory words it: '< 4.5.2', '4.6.3 to < 4.8.0'."""
        if self.introduced is None:
            return f"< {self.fixed}"
        return f"{self.introduced} to < {self.fixed}"

    def affects(self, product: str | None, version: Version | None) -> bool | None:
        """True when that release is in range; False when not; None when it cannot tell."""
        if product is None or version is None:
            return None
        if product != self.product:
            return False
        if self.introduced is not None and version_below(version, parse_version(self.introduced)):
            return False
        return version_below(version, parse_version(self.fixed))


ADVISORIES: tuple[Advisory, ...] = (
    Advisory(
        "coturn",
        ("CVE-2018-4056", "CVE-2018-4058", "CVE-2018-4059"),
        # NVD says "fixed in 4.5.0.9", a release that never existed: the ChangeLog puts these
        # fixes in 4.5.1.0, the release after 4.5.0.8.
        "4.5.1.0",
        "SQL injection in the web admin, relay to loopback allowed by default, and the "
        "unauthenticated telnet CLI on loopback reachable through that relay (Talos)",
        Severity.CRITICAL,
        _COTURN_CHANGELOG,  # Version 4.5.1.0 'dan Eider', "Security fixes"
        check=CHECK_PEER_ACL_LOOPBACK,
    ),
    Advisory(
        "coturn",
        ("CVE-2020-6061", "CVE-2020-6062"),
        "4.5.1.2",
        "the web admin's HTTP POST parsing reads out of bounds and crashes (TALOS-2020-0984/0985)",
        Severity.CRITICAL,
        "https://github.com/coturn/coturn/issues/489",
        check=CHECK_WEB_ADMIN,
        condition="the web admin is enabled (web-admin or web-admin-listen-on-workers)",
    ),
    Advisory(
        "coturn",
        ("CVE-2020-4067", "GHSA-c8r8-8vp5-6gcm"),
        "4.5.1.3",
        "STUN/TURN response buffer not initialized: responses leak process memory",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-c8r8-8vp5-6gcm",
    ),
    Advisory(
        "coturn",
        ("CVE-2020-26262", "GHSA-6g6j-r9rf-cm7p"),
        "4.5.2",
        "relay to loopback through the peer address 0.0.0.0, [::1] or [::] despite the "
        "default loopback block",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-6g6j-r9rf-cm7p",
        check=CHECK_PEER_ACL_LOOPBACK,
    ),
    Advisory(
        "coturn",
        ("CVE-2025-69217", "GHSA-fvj6-9jhg-9j84"),
        "4.8.0",
        "nonces and relay ports from libc random(): about 50 401s reveal the generator's "
        "state, so the next nonce and relay port can be predicted",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-fvj6-9jhg-9j84",
        introduced="4.6.3",  # commit 88ced47 (#1279) first shipped in 4.6.3; fixed by 11fc465
    ),
    Advisory(
        "coturn",
        ("CVE-2026-27624", "GHSA-j8mm-mpf8-gvjg"),
        "4.9.0",
        "IPv4-mapped IPv6 peer addresses (::ffff:127.0.0.1) bypass denied-peer-ip",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-j8mm-mpf8-gvjg",
        check=CHECK_PEER_ACL_LOOPBACK,
    ),
    Advisory(
        "coturn",
        ("CVE-2026-40613", "GHSA-j662-9wcj-mf36"),
        "4.10.0",
        "misaligned reads in the STUN attribute parser: one crafted UDP packet kills the "
        "server (SIGBUS)",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-j662-9wcj-mf36",
        condition="the server runs on ARM64 (strict alignment)",
    ),
    Advisory(
        "coturn",
        ("CVE-2026-43994", "GHSA-74pg-rfh2-5qw5"),
        "4.10.0",
        "stack buffer overflow in decode_oauth_token_gcm(), before the token is authenticated",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-74pg-rfh2-5qw5",
        condition="third-party authorization is enabled (--oauth)",
        check=CHECK_THIRD_PARTY,
    ),
    Advisory(
        "coturn",
        ("CVE-2026-53450", "GHSA-w4hf-cr3w-6h79"),
        "4.13.0",
        "::ffff:127.0.0.1 bypasses the default loopback peer block (a follow-up to CVE-2026-27624)",
        Severity.HIGH,
        _COTURN_ADVISORIES + "GHSA-w4hf-cr3w-6h79",
        check=CHECK_PEER_ACL_LOOPBACK,
    ),
    Advisory(
        "coturn",
        ("GHSA-2x4g-wx24-48m4",),
        "4.13.1",  # "Canonicalize all IPv4-in-IPv6 encodings before peer-IP checks (#1945)"
        "IPv4 peers written in other IPv6 forms (IPv4-compatible, NAT64, 6to4) pass the "
        "peer ACL on RFC 6062 CONNECT (TCP relays)",
        Severity.MEDIUM,
        _COTURN_ADVISORIES + "GHSA-2x4g-wx24-48m4",
        condition="TCP relays are allowed (no no-tcp-relay)",
        check=CHECK_TCP_RELAY,
    ),
    Advisory(
        "coturn",
        ("CVE-2026-62959", "GHSA-m23x-5qf5-988g"),
        "4.15.0",
        "pre-authentication heap memory disclosure in the ACME redirect's 301 Location",
        Severity.MEDIUM,
        _COTURN_ADVISORIES + "GHSA-m23x-5qf5-988g",
        introduced="4.5.2",
        check=CHECK_HTTP_ON_TURN_PORT,
        condition="acme-redirect is set and a plain TCP listener is exposed",
    ),
    Advisory(
        "coturn",
        ("CVE-2026-73214", "GHSA-5x2p-4vqj-f6m4"),
        "4.16.0",
        "DTLS state kept for cookieless (fragmented) ClientHellos: memory exhaustion "
        "without credentials (4.17.0 keeps no state before the cookie at all)",
        Severity.MEDIUM,
        _COTURN_ADVISORIES + "GHSA-5x2p-4vqj-f6m4",
        check=CHECK_DTLS,
        condition="the DTLS listener is on (coturn before 4.17 starts it unless no-dtls)",
    ),
    Advisory(
        "coturn",
        ("GHSA-hpq3-g7x4-h7xx",),
        "4.16.0",
        "chained mobility resumes orphan sessions that are never freed: one user grows "
        "server memory without bound",
        Severity.MEDIUM,
        _COTURN_ADVISORIES + "GHSA-hpq3-g7x4-h7xx",
        condition="mobility is enabled (--mobility)",
        check=CHECK_MOBILITY,
    ),
    Advisory(
        "coturn",
        ("CVE-2026-73215", EVEN_PORT_LEAK),
        "4.17.0",
        "EVEN-PORT with R=0 reserves the odd port for good: repeated Allocates exhaust the "
        "relay port range (508)",
        Severity.MEDIUM,
        _COTURN_ADVISORIES + EVEN_PORT_LEAK,
        check=CHECK_EVEN_PORT,
    ),
    Advisory(
        "coturn",
        ("CVE-2026-73216", "GHSA-f6hc-79w3-p8pq"),
        "4.17.0",
        "a mobility allocation's disconnect releases its quota: users exceed user-quota "
        "and total-quota and exhaust relay ports",
        Severity.MEDIUM,
        _COTURN_ADVISORIES + "GHSA-f6hc-79w3-p8pq",
        condition="mobility is enabled (--mobility)",
        check=CHECK_MOBILITY,
    ),
)


# -- what SOFTWARE says ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """What a SOFTWARE attribute reveals: the product when known, the version when shown."""

    text: str
    product: str | None
    version: Version | None

    @property
    def named(self) -> str:
        """'coturn 4.6.1', 'eturnal', or the SOFTWARE text itself."""
        if self.product is None:
            return self.text
        if self.version is None:
            return self.product
        return f"{self.product} {version_text(self.version)}"


_VERSION = r"v?(\d+(?:\.\d+)+)"
_PRODUCTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "Coturn-4.6.1 'Gorst'", "Coturn-4.5.1.1 'dan Eider'"
    ("coturn", re.compile(rf"\bcoturn(?:[-/ ]{_VERSION})?", re.IGNORECASE)),
    # eturnal's software_name defaults to "eturnal" (no version)
    ("eturnal", re.compile(rf"\beturnal(?:[-/ ]{_VERSION})?", re.IGNORECASE)),
    # pion/turn sends none unless the application adds one (e.g. "pion/turn v2.1.0")
    ("pion/turn", re.compile(rf"\bpion(?:/turn)?(?:/v\d+)?(?:[-/ @]{_VERSION})?", re.IGNORECASE)),
    # p1_stun (ejabberd's ejabberd_stun, the engine of eturnal): "P1 STUN library"
    ("p1_stun", re.compile(rf"\bp1[ _]stun(?: library)?(?:[-/ ]{_VERSION})?", re.IGNORECASE)),
    ("ejabberd", re.compile(rf"\bejabberd(?:[-/ ]{_VERSION})?", re.IGNORECASE)),
)
_ANY_VERSION = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)*)")


def identify(software: str) -> Identity:
    """The product and version a SOFTWARE text names ('Coturn-4.6.1 'Gorst'' → coturn 4.6.1)."""
    text = software.strip()
    for product, pattern in _PRODUCTS:
        match = pattern.search(text)
        if match is not None:
            shown = match.group(1)
            if shown is None:
                other = _ANY_VERSION.search(text, match.end())
                shown = other.group(1) if other else None
            return Identity(text, product, parse_version(shown) if shown else None)
    other = _ANY_VERSION.search(text)
    return Identity(text, None, parse_version(other.group(1)) if other else None)


def advisory(advisory_id: str) -> Advisory | None:
    """The row that lists this CVE or GHSA id (any case)."""
    wanted = advisory_id.strip().upper()
    for row in ADVISORIES:
        if wanted in (i.upper() for i in row.ids):
            return row
    return None


def vulnerable(software: str | None, advisory_id: str) -> bool | None:
    """Whether SOFTWARE names a release in the advisory's range: None when it cannot tell
    (no SOFTWARE, no version, an unknown advisory)."""
    row = advisory(advisory_id)
    if row is None or not software:
        return None
    found = identify(software)
    return row.affects(found.product, found.version)


def known_vulnerable(software: str | None, advisory_id: str) -> bool:
    """SOFTWARE names a release the advisory affects (the skip rules ask this)."""
    return vulnerable(software, advisory_id) is True


# Not an advisory, a bug the audit must not trip over: coturn 4.6.1 and older log the size
# of an HTTP(S) request that web-admin-listen-on-workers serves with "%s", so an HTTPS
# request on the TLS port (always) or an HTTP request on the plain port (with `verbose`)
# crashes the server (SIGSEGV; seen with Debian 12's 4.6.1). Fixed in 4.6.2 by coturn's
# "Use %zu format specifier for size_t" (#1040, commit 6f14716).
COTURN_HTTP_CRASH_FIXED = "4.6.2"


def crashes_on_http(software: str | None) -> bool | None:
    """Whether SOFTWARE names a coturn that crashes on HTTP(S) to its TURN ports when
    web-admin-listen-on-workers is set; None when SOFTWARE cannot tell."""
    if not software:
        return None
    found = identify(software)
    if found.product is None:
        return None
    if found.product != "coturn":
        return False
    if found.version is None:
        return None
    return version_below(found.version, parse_version(COTURN_HTTP_CRASH_FIXED))


def matching(software: str | None) -> tuple[Advisory, ...]:
    """Every advisory whose range holds the release SOFTWARE names."""
    if not software:
        return ()
    found = identify(software)
    return tuple(row for row in ADVISORIES if row.affects(found.product, found.version))


# -- findings ----------------------------------------------------------------------------------

# The setting that stops SOFTWARE from naming the release, per product (read in each
# product's own documentation: coturn README.turnserver and ChangeLog 4.7.0, eturnal
# doc/overview.edoc, pion/turn examples/turn-server/add-software-attribute).
SOFTWARE_HINTS = {
    "coturn": (
        "coturn: set no-software-attribute (before 4.7.0; it was `prod` before 4.5.1.2); "
        "from 4.7.0 SOFTWARE is off unless software-attribute is set: remove it"
    ),
    "eturnal": "eturnal: software_name: none (1.12.2 and later), or a name without a version",
    "pion/turn": (
        "pion/turn sends no SOFTWARE of its own: remove the wrapper that adds it (as in "
        "examples/turn-server/add-software-attribute)"
    ),
    "p1_stun": (
        "ejabberd_stun: server_name sets the text (ejabberd cannot leave SOFTWARE out; its "
        "default, 'P1 STUN library', names no version)"
    ),
    "ejabberd": "ejabberd_stun: server_name sets the text; give it no version",
}
_ANY_HINT = "; ".join(SOFTWARE_HINTS[p] for p in ("coturn", "eturnal", "pion/turn"))
_CONDITIONAL_CAP = Severity.MEDIUM


def identity_findings(software: str | None, target: str, *, seen_in: str = "") -> list[Finding]:
    """What SOFTWARE gives away, and each advisory its release is in range of, cited."""
    where = f" ({seen_in})" if seen_in else ""
    if not software:
        return [
            Finding(
                "software-version",
                Severity.OK,
                "no SOFTWARE attribute: the server does not announce its name or version",
                evidence=f"no SOFTWARE in the answers{where}",
                target=target,
            )
        ]
    found = identify(software)
    hint = SOFTWARE_HINTS.get(found.product or "", _ANY_HINT)
    evidence = f'SOFTWARE "{found.text}"{where}'
    if found.version is None:
        named = f" ({found.product})" if found.product else ""
        findings = [
            Finding(
                "software-version",
                Severity.INFO,
                f'SOFTWARE names the server{named} but no version: "{found.text}"',
                hint=hint,
                evidence=evidence,
                target=target,
            )
        ]
    else:
        since = ""
        if found.product == "coturn" and version_below(found.version, parse_version("4.7.0")):
            since = " (coturn sends none by default from 4.7.0 on: this is an older release)"
        findings = [
            Finding(
                "software-version",
                Severity.LOW,
                f'SOFTWARE reveals the release: {found.named} ("{found.text}"); anyone can '
                f"match it against advisories{since}",
                hint=hint,
                evidence=evidence,
                target=target,
            )
        ]
    for row in matching(software):
        findings.append(_advisory_finding(row, found, target, evidence))
    return findings


def _advisory_finding(row: Advisory, found: Identity, target: str, evidence: str) -> Finding:
    severity = min(row.severity, _CONDITIONAL_CAP) if row.condition else row.severity
    applies = f"; applies only when {row.condition}" if row.condition else ""
    confirm = f"; the audit's {row.check} check tests the behaviour itself" if row.check else ""
    return Finding(
        row.finding_id,
        severity,
        f"SOFTWARE says {found.named}, in the range of {', '.join(row.ids)} ({row.affected}): "
        f"{row.summary}{applies}",
        hint=(
            f"upgrade to {row.product} {row.fixed} or later, or check that your distribution's "
            f"package carries the fix{confirm}"
        ),
        cve=row.ids,
        evidence=(
            f"{evidence}; a version string is evidence, not proof: a distribution may have "
            f"patched {found.named} without changing it; advisory: {row.source}"
        ),
        target=target,
    )
