"""Server entries and their credentials (iceServers JSON joins here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Credentials:
    """Long-term credentials; the password never shows in repr or output."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    @property
    def masked(self) -> str:
        return f"{self.username}:***"
