"""``python -m course_lib.doctor``: a shim for :mod:`course_lib.cli.doctor` (see there)."""

import sys

from course_lib.cli.doctor import main

if __name__ == "__main__":
    sys.exit(main())
