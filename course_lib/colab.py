"""``python -m course_lib.colab``: a shim for :mod:`course_lib.cli.colab` (see there)."""

import sys

from course_lib.cli.colab import main

if __name__ == "__main__":
    sys.exit(main())
