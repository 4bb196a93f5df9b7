"""``python -m chancy_lite ...``: the ``chancy-lite`` command."""

import sys

from chancy_lite.cli import main

sys.exit(main())
