"""``python -m chancy_lite ...``: the ``chancy-lite`` command."""

import sys

from chancy_lite.cli import main

if __name__ == "__main__":  # not when a tool imports every module (pkgutil.walk_packages)
    sys.exit(main())
