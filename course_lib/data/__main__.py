"""``python -m course_lib.data prefetch|status``: a shim for :mod:`course_lib.cli.data`."""

import sys

from course_lib.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
