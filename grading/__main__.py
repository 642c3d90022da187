"""``python -m grading``: the command line (see :mod:`grading.cli`)."""

import sys

from grading.cli import main

sys.exit(main())
