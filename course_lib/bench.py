"""``python -m course_lib.bench``: a shim for :mod:`course_lib.cli.bench` (see there)."""

import sys

from course_lib.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
