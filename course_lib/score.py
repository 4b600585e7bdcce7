"""``python -m course_lib.score``: a shim for :mod:`course_lib.cli.score` (see there)."""

import sys

from course_lib.cli.score import main

if __name__ == "__main__":
    sys.exit(main())
