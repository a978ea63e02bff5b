"""The server's identity (turncheck/audit/identity.py) and the advisory table
(turncheck/advisories.py): version parsing and ranges without a network, then what coturn,
pion and ejabberd announce."""

from __future__ import annotations

import pytest

from tests.servers.coturn import Coturn
from tests.test_audit_unauth import audit_context, only, run
from turncheck import advisories
from turncheck.advisories import (
    ADVISORIES,
    EVEN_PORT_LEAK,
    crashes_on_http,
    identify,
    identity_findings,
    known_vulnerable,
    matching,
    parse_version,
    version_below,
    vulnerable,
)
from turncheck.audit import identity
from turncheck.findings import Severity

DEBIAN_12 = "Coturn-4.6.1 'Gorst'"
TARGET = "127.0.0.1:3478/udp"


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("software", "product", "version"),
    [
        (DEBIAN_12, "coturn", (4, 6, 1)),
        ("Coturn-4.5.1.1 'dan Eider'", "coturn", (4, 5, 1, 1)),
        ("Coturn-4.17.1 'Gorst'", "coturn", (4, 17, 1)),
        ("eturnal", "eturnal", None),  # eturnal's default software_name
        ("eturnal 1.12.2", "eturnal", (1, 12, 2)),
        ("pion/turn", "pion/turn", None),
        ("pion/turn v2.1.0", "pion/turn", (2, 1, 0)),
        ("P1 STUN library", "p1_stun", None),  # ejabberd_stun's default server_name
        ("ejabberd 23.01", "ejabberd", (23, 1)),
        ("CustomTURNServer", None, None),  # pion's add-software-attribute example
        ("MyRelay 2.3.4 (build 7)", None, (2, 3, 4)),
    ],
)
def test_identify(software: str, product: str | None, version: tuple[int, ...] | None) -> None:
    found = identify(software)
    assert (found.product, found.version) == (product, version)


def test_versions_compare_part_by_part() -> None:
    assert parse_version("4.5.1.3") == (4, 5, 1, 3)
    assert parse_version("v2.1.0") == (2, 1, 0)
    with pytest.raises(ValueError):
        parse_version("4")
    with pytest.raises(ValueError):
        parse_version("4.x")
    assert version_below((4, 5, 1, 3), (4, 5, 2))
    assert not version_below((4, 5), (4, 5, 0))
    assert version_below((4, 9, 9), (4, 10, 0))  # numbers, not strings


# -- the table --------------------------------------------------------------------------------


def test_every_row_is_well_formed() -> None:
    keys = [row.key for row in ADVISORIES]
    assert len(keys) == len(set(keys))
    for row in ADVISORIES:
        parse_version(row.fixed)
        if row.introduced is not None:
            assert version_below(parse_version(row.introduced), parse_version(row.fixed))
        assert row.source.startswith("https://")
        assert all(i.startswith(("CVE-", "GHSA-")) for i in row.ids)
        assert row.summary and row.severity > Severity.INFO
        if any(i.startswith("GHSA-") for i in row.ids) and "advisories/" in row.source:
            assert row.source.rsplit("/", 1)[1] in row.ids


@pytest.mark.parametrize(
    ("advisory_id", "below", "at_fix"),
    [
        ("CVE-2020-26262", "4.5.1.3", "4.5.2"),  # 0.0.0.0/[::] loopback bypass
        ("CVE-2020-6061", "4.5.1.1", "4.5.1.2"),  # web admin POST parsing
        ("GHSA-j8mm-mpf8-gvjg", "4.8.0", "4.9.0"),  # ::ffff:127.0.0.1 vs denied-peer-ip
        ("CVE-2026-53450", "4.12.0", "4.13.0"),  # its follow-up: the default loopback block
        ("CVE-2026-73215", "4.16.0", "4.17.0"),  # EVEN-PORT R=0 leaks relay ports
        ("GHSA-f6hc-79w3-p8pq", "4.16.0", "4.17.0"),  # mobility quota bypass
    ],
)
def test_ranges_end_at_the_fix(advisory_id: str, below: str, at_fix: str) -> None:
    assert vulnerable(f"Coturn-{below} 'x'", advisory_id) is True
    assert vulnerable(f"Coturn-{at_fix} 'x'", advisory_id) is False


def test_weak_randomness_affects_4_6_3_to_4_7_0_only() -> None:
    for release, affected in [
        ("4.6.2", False),
        ("4.6.3", True),
        ("4.7.0", True),
        ("4.8.0", False),
    ]:
        assert vulnerable(f"Coturn-{release} 'Gorst'", "CVE-2025-69217") is affected, release


def test_known_vulnerable_for_the_even_port_skip_rule() -> None:
    assert known_vulnerable(DEBIAN_12, EVEN_PORT_LEAK)
    assert known_vulnerable("Coturn-4.16.9 'Gorst'", "cve-2026-73215")  # any case, either id
    assert not known_vulnerable("Coturn-4.17.0 'Gorst'", EVEN_PORT_LEAK)
    assert not known_vulnerable(None, EVEN_PORT_LEAK)  # no SOFTWARE: cannot tell ...
    assert vulnerable(None, EVEN_PORT_LEAK) is None  # ... which vulnerable() says
    assert vulnerable("coturn", EVEN_PORT_LEAK) is None  # no version
    assert vulnerable("eturnal 1.12.2", EVEN_PORT_LEAK) is False  # another product
    assert vulnerable(DEBIAN_12, "CVE-1999-0001") is None  # not in the table


def test_the_http_crash_of_coturn_4_6_1() -> None:
    assert crashes_on_http(DEBIAN_12) is True
    assert crashes_on_http("Coturn-4.6.2 'Gorst'") is False
    assert crashes_on_http("eturnal") is False
    assert crashes_on_http(None) is None and crashes_on_http("CustomTURNServer") is None


# -- findings ---------------------------------------------------------------------------------


def test_no_software_is_ok() -> None:
    (found,) = identity_findings(None, TARGET)
    assert (found.id, found.severity) == ("software-version", Severity.OK)


def test_a_product_without_a_version_is_info() -> None:
    (found,) = identity_findings("eturnal", TARGET)
    assert found.severity is Severity.INFO
    assert "software_name: none" in found.hint


def test_debian_12_coturn_reveals_its_release_and_cites_each_advisory() -> None:
    found = identity_findings(DEBIAN_12, TARGET, seen_in="a Binding")
    version = only(found, "software-version")
    assert version.severity is Severity.LOW
    assert "coturn 4.6.1" in version.finding
    assert "no-software-attribute" in version.hint and "software-attribute" in version.hint
    cited = {f.id: f for f in found if f.id.startswith("advisory-")}
    assert set(cited) == {row.finding_id for row in matching(DEBIAN_12)}
    assert "advisory-cve-2020-26262" not in cited  # fixed in 4.5.2
    assert "advisory-cve-2025-69217" not in cited  # 4.6.3 to 4.7.0 only
    loopback = cited["advisory-cve-2026-53450"]
    assert loopback.severity is Severity.HIGH
    assert loopback.cve == ("CVE-2026-53450", "GHSA-w4hf-cr3w-6h79")
    assert "evidence, not proof" in loopback.evidence
    assert "a distribution may have patched coturn 4.6.1" in loopback.evidence
    assert "https://github.com/coturn/coturn/security/advisories/GHSA-w4hf-cr3w-6h79" in (
        loopback.evidence
    )
    assert "upgrade to coturn 4.13.0 or later" in loopback.hint
    assert "peer-acl-loopback" in loopback.hint
    # An advisory that needs a setting the audit cannot see is capped at MEDIUM.
    oauth = cited["advisory-cve-2026-43994"]
    assert oauth.severity is Severity.MEDIUM and "--oauth" in oauth.finding
    assert cited["advisory-cve-2026-73215"].cve[1] == EVEN_PORT_LEAK


def test_identity_check_uses_the_runners_software() -> None:
    ctx = audit_context("turn:192.0.2.1:3478?transport=udp", software=DEBIAN_12)
    found = run(identity.identity, ctx)  # no packet: ctx.software answers
    assert only(found, "software-version").severity is Severity.LOW
    assert "the server's first answer" in only(found, "software-version").evidence


# -- real servers -----------------------------------------------------------------------------


def test_debian_12_coturn_sends_its_release(coturn: Coturn) -> None:
    ctx = audit_context(f"turn:{coturn.host}:{coturn.port}?transport=udp")
    found = run(identity.identity, ctx)
    version = only(found, "software-version")
    assert version.severity is Severity.LOW
    assert version.evidence.startswith(f'SOFTWARE "{DEBIAN_12}" (the answer to a Binding')
    assert any(f.id == "advisory-cve-2026-27624" for f in found)


def test_coturn_without_software_attribute(coturn_factory) -> None:
    server = coturn_factory(extra=["no-software-attribute"], tls=False)
    found = run(identity.identity, audit_context(f"turn:127.0.0.1:{server.port}?transport=udp"))
    assert [(f.id, f.severity) for f in found] == [("software-version", Severity.OK)]


def test_pion_sends_no_software(pion_factory) -> None:
    found = run(identity.identity, audit_context(pion_factory("udp").url))
    assert [(f.id, f.severity) for f in found] == [("software-version", Severity.OK)]


def test_ejabberd_names_p1_stun_without_a_version(ejabberd) -> None:
    (found,) = run(identity.identity, audit_context(ejabberd.url("udp")))
    assert found.severity is Severity.INFO
    assert '"P1 STUN library"' in found.finding
    assert "server_name" in found.hint


def test_the_table_is_the_modules_own() -> None:
    assert identity.known_vulnerable is advisories.known_vulnerable
    assert identity.identity_findings is advisories.identity_findings
