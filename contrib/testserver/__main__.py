"""``python -m contrib.testserver``: see ``cli.py``."""

import sys

from contrib.testserver.cli import main

sys.exit(main())
