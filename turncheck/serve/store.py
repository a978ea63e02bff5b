"""Test-page results in SQLite (the standard library's; one file, set in serve's config).

One row per result: its reference ID, profile, time, browser, verdict, and the whole
record as JSON (the page's redacted document, serve's own check, the judgement). What is
kept is bounded three ways: the page's document is at most MAX_DOCUMENT bytes (serve
refuses more), a profile keeps at most its `max_results` (oldest dropped first), and a
result lives `retention_days` (dropped at every insert and when serve starts).

Reference IDs are 6 symbols of Crockford's base 32 (30 bits, from `secrets`), written
K7F-29Q: no I, L, O or U to misread, and read back case-insensitively with 0/1 for O/I/L.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turncheck.errors import InputError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32
MAX_DOCUMENT = 64 * 1024  # bytes of the page's posted document
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    created REAL NOT NULL,
    browser TEXT NOT NULL,
    ok INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    cause TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_profile ON results (profile, created);
"""


def new_id() -> str:
    symbols = "".join(secrets.choice(ALPHABET) for _ in range(6))
    return f"{symbols[:3]}-{symbols[3:]}"


def normal_id(text: str) -> str | None:
    """A reference as a person typed it ('k7f29q', 'K7F-29Q ') → 'K7F-29Q'; None if not one."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != 6 or any(c not in ALPHABET for c in cleaned):
        return None
    return f"{cleaned[:3]}-{cleaned[3:]}"


@dataclass(frozen=True, slots=True)
class Listed:
    """One line of the list of results."""

    id: str
    profile: str
    created: float
    browser: str
    ok: bool
    verdict: str
    cause: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "profile": self.profile,
            "created": self.created,
            "browser": self.browser,
            "ok": self.ok,
            "verdict": self.verdict,
            "cause": self.cause,
        }


@dataclass(frozen=True, slots=True)
class Retention:
    days: float
    count: int


class Store:
    """The results file. serve opens it for writing; `turncheck results` read-only."""

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if read_only:
                if not Path(path).is_file():
                    raise InputError(f"{path}: no results yet (serve creates this file)")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
            else:
                self.db = sqlite3.connect(path, timeout=2.0)
                # WAL: `turncheck results` reading the file never blocks serve's writes.
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(_SCHEMA)
                self.db.commit()
        except sqlite3.Error as exc:
            raise InputError(f"{path}: not a usable results file ({exc})") from None

    def close(self) -> None:
        self.db.close()

    def add(self, record: Mapping[str, Any], retention: Retention, now: float | None = None) -> str:
        """Store one result under a new reference ID; drop what its profile no longer keeps."""
        now = time.time() if now is None else now
        text = json.dumps(record, separators=(",", ":"))
        for _ in range(8):  # a collision of 30-bit IDs is rare; eight in a row is impossible
            rid = new_id()
            try:
                with self.db:
                    self.db.execute(
                        "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            rid,
                            record["profile"],
                            now,
                            record["browser"]["name"],
                            int(bool(record["judgement"]["ok"])),
                            record["judgement"]["verdict"],
                            record["judgement"]["cause"],
                            text,
                        ),
                    )
                break
            except sqlite3.IntegrityError:
                continue
        else:  # pragma: no cover
            raise RuntimeError("could not find a free reference ID")
        self.prune(record["profile"], retention, now)
        return rid

    def prune(self, profile: str, retention: Retention, now: float | None = None) -> int:
        """Drop the profile's results older than its retention or past its count."""
        now = time.time() if now is None else now
        with self.db:
            old = self.db.execute(
                "DELETE FROM results WHERE profile = ? AND created < ?",
                (profile, now - retention.days * 86400),
            ).rowcount
            over = self.db.execute(
                "DELETE FROM results WHERE profile = ? AND id NOT IN (SELECT id FROM results "
                "WHERE profile = ? ORDER BY created DESC LIMIT ?)",
                (profile, profile, retention.count),
            ).rowcount
        return int(old) + int(over)

    def get(self, rid: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT id, created, record FROM results WHERE id = ?", (rid,))
        found = row.fetchone()
        if found is None:
            return None
        record: dict[str, Any] = json.loads(found[2])
        record["id"], record["created"] = found[0], found[1]
        return record

    def recent(self, limit: int = 50, profile: str | None = None) -> list[Listed]:
        query = "SELECT id, profile, created, browser, ok, verdict, cause FROM results"
        args: tuple[Any, ...] = ()
        if profile is not None:
            query += " WHERE profile = ?"
            args = (profile,)
        rows = self.db.execute(query + " ORDER BY created DESC LIMIT ?", (*args, limit))
        return [Listed(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows]
