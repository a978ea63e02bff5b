"""turncheck's load on Locust: the entry point of `locust -f` (pip install 'turncheck[locust]').

Locust 2.47 takes a locustfile by path (a .py file, a directory of them, or a URL), not a
module name, so the entry is a file of this package:

    locust -f "$(python -m turncheck.locust)" --headless --turn-url turn:turn.example.com …

`python -m turncheck.locust` prints that path without importing Locust or gevent; the
locustfile itself (locustfile.py) is the only module here that does. docs/locust.md.
"""

from __future__ import annotations

from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
