"""`python -m turncheck`."""

import sys

from turncheck.entry import run

sys.exit(run())
