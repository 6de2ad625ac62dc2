"""`python -m cli` runs the `shoprank` command."""

import sys

from .main import main

sys.exit(main())
