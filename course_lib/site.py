"""``python -m course_lib.site``: a shim for :mod:`course_lib.cli.site` (see there)."""

import sys

from course_lib.cli.site import main

if __name__ == "__main__":
    sys.exit(main())
