"""`python -m controller`: the same as `kubeferry controller`."""

import sys

from controller.cli import main

sys.exit(main())
