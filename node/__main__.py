"""`python -m node` runs the gridpoint command line."""

import sys

from node.cli import main

sys.exit(main())
