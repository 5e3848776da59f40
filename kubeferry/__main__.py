"""`python -m kubeferry ...` is `kubeferry ...`."""

import sys

from kubeferry.cli import main

sys.exit(main())
