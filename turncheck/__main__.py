"""`python -m turncheck`."""

import sys

from turncheck.cli import main

sys.exit(main())
