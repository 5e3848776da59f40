"""The command line's layering: the data plane never imports the control plane, and the
`kubeferry` command offers every subcommand with its --help."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kubeferry.cli import COMMANDS
from proxy.cli import DATA_PLANE_COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("proxy", {"controller", "kubeferry"}), ("controller", {"kubeferry"})],
)
def test_dependencies_point_one_way(package: str, forbidden: set[str]) -> None:
    # Every import, including the ones inside functions: a lazy import is still a dependency.
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & forbidden)
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imported_packages(path) & forbidden
    }
    assert offenders == {}


def _subcommands(parser: object) -> list[str]:
    actions = parser._subparsers._group_actions  # type: ignore[attr-defined]
    return list(actions[0].choices)


def test_kubeferry_has_every_command() -> None:
    assert [command.name for command in COMMANDS] == ["proxy", "demo", "controller"]
    assert _subcommands(build_parser(COMMANDS)) == ["proxy", "demo", "controller"]


def test_data_plane_alone_has_its_own_commands() -> None:
    assert _subcommands(build_parser()) == [command.name for command in DATA_PLANE_COMMANDS]


@pytest.mark.parametrize("command", ["proxy", "demo", "controller"])
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(COMMANDS).parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kubeferry {command}")
    assert "--admin-port" in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(COMMANDS).parse_args(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
