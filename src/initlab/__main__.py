"""``python -m initlab``: the same command line as the ``initlab`` console script."""

import sys

from initlab.cli import main

sys.exit(main())
