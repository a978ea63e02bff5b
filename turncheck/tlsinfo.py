"""What a TLS server certificate says: subject, issuer, SANs, validity, host match.

ssl.getpeercert() is empty when verification is off and unavailable when it
failed, which is exactly when ops need the details; cryptography reads the DER.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

WARN_DAYS = 14  # a certificate closer than this to its expiry is flagged


@dataclass(frozen=True, slots=True)
class CertInfo:
    subject: str
    issuer: str
    san_dns: tuple[str, ...]
    san_ips: tuple[str, ...]
    not_before: float  # unix time
    not_after: float
    self_signed: bool

    def days_left(self, now: float | None = None) -> float:
        return (self.not_after - (time.time() if now is None else now)) / 86400

    def matches(self, host: str) -> bool:
        """RFC 6125: IP literals against IP SANs, names against DNS SANs (one wildcard label)."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            return any(ipaddress.ip_address(s) == ip for s in self.san_ips)
        name = host.rstrip(".").lower()
        for pattern in (p.rstrip(".").lower() for p in self.san_dns):
            if pattern == name:
                return True
            if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
                return True
        return False

    def summary(self, now: float | None = None) -> str:
        days = self.days_left(now)
        when = time.strftime("%Y-%m-%d", time.gmtime(self.not_after))
        left = f"{days:.0f} days left" if days >= 0 else f"expired {-days:.0f} days ago"
        return f"subject {self.subject}, issuer {self.issuer}, not after {when} ({left})"

    def to_json(self, host: str, now: float | None = None) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "san": [*self.san_dns, *self.san_ips],
            "san_match": self.matches(host),
            "not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.not_after)),
            "days_left": round(self.days_left(now), 1),
            "self_signed": self.self_signed,
        }


def parse_cert(der: bytes | None) -> CertInfo | None:
    """CertInfo from a DER certificate; None when there is none or it does not parse."""
    if not der:
        return None
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
            ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = (), ()
        return CertInfo(
            subject=cert.subject.rfc4514_string() or "(empty)",
            issuer=cert.issuer.rfc4514_string() or "(empty)",
            san_dns=dns,
            san_ips=ips,
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
            self_signed=cert.subject == cert.issuer,
        )
    except Exception:  # a certificate we cannot read is reported as unknown, not a crash
        return None
