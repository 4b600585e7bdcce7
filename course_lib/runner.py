"""``python -m course_lib.runner``: a shim for :mod:`course_lib.cli.runner` (see there)."""

import sys

from course_lib.cli.runner import main

if __name__ == "__main__":
    sys.exit(main())
