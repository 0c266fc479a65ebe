"""``python -m takhin_ws``: see ``python -m takhin_ws --help``."""

import sys

from .config.cli import main

sys.exit(main())
