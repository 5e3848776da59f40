"""`python -m proxy proxy|demo ...`: the data plane's commands of `kubeferry` (the controller's
command is in `python -m kubeferry` and `python -m controller`)."""

import sys

from proxy.cli import main

sys.exit(main(prog="python -m proxy"))
