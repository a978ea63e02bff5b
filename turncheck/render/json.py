"""The JSON renderer: exactly one document, schema from report.py."""

from __future__ import annotations

import json
from typing import Any

from turncheck.report import Report


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def render(report: Report) -> str:
    return dumps(report.to_json())
