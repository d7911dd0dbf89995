"""`python -m gridpoint` runs the gridpoint command line."""

import sys

from gridpoint.node.cli.main import main

sys.exit(main())
