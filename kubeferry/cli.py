"""`kubeferry COMMAND`: the data plane's commands (proxy, demo) plus the controller's.

The dispatch lives here, above both packages, so that neither imports the other's command
line: `proxy.cli` knows nothing of the controller, and `controller.cli` only borrows the
data plane's `Command` shape and event loop runner.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.cli import COMMAND as CONTROLLER
from proxy.cli import DATA_PLANE_COMMANDS, Command
from proxy.cli import main as dispatch

COMMANDS: tuple[Command, ...] = (*DATA_PLANE_COMMANDS, CONTROLLER)


def main(argv: Sequence[str] | None = None) -> int:
    """The `kubeferry` console script; returns the exit status."""
    return dispatch(argv, commands=COMMANDS, prog="kubeferry")
