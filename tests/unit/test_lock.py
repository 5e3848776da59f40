"""uv.lock is the install: it must say what pyproject.toml says, pin every package by hash, and
be read by the uv that hack/uv.sh installs. `make install` (uv sync --locked) and `make lint`
(uv lock --check) refuse a stale lock too; this catches it in the unit run, with the fix named."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
STALE = "pyproject.toml and uv.lock disagree; run `make lock` and commit uv.lock"


def load(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / name).read_text())


def requirement(name: str, specifier: str, marker: str) -> str:
    """One comparable spelling, whatever order or quotes each file uses."""
    spelled = f"{canonicalize_name(name)}{SpecifierSet(specifier)}"
    return f"{spelled}; {Marker(marker)}" if marker else spelled


def declared() -> set[str]:
    """pyproject's requirements as uv records them: each extra's carry its marker."""
    project = load("pyproject.toml")["project"]
    found = set()
    groups = [(None, project["dependencies"]), *project["optional-dependencies"].items()]
    for extra, lines in groups:
        for line in lines:
            parsed = Requirement(line)
            markers = [f"({parsed.marker})"] if parsed.marker else []
            if extra is not None:
                markers.append(f"extra == '{extra}'")
            found.add(requirement(parsed.name, str(parsed.specifier), " and ".join(markers)))
    return found


def locked_project() -> dict[str, Any]:
    (entry,) = [p for p in load("uv.lock")["package"] if p["name"] == "kubeferry"]
    return entry


def test_the_lock_records_exactly_the_requirements_of_pyproject() -> None:
    recorded = {
        requirement(item["name"], item.get("specifier", ""), item.get("marker", ""))
        for item in locked_project()["metadata"]["requires-dist"]
    }
    wanted = declared()
    assert recorded == wanted, (
        f"{STALE}\n  only in pyproject.toml: {sorted(wanted - recorded)}"
        f"\n  only in uv.lock: {sorted(recorded - wanted)}"
    )


def test_the_lock_is_for_the_same_pythons() -> None:
    assert (
        load("uv.lock")["requires-python"] == load("pyproject.toml")["project"]["requires-python"]
    ), STALE


def test_every_locked_package_is_pinned_with_hashes() -> None:
    unhashed = []
    for package in load("uv.lock")["package"]:
        if package["source"] == {"editable": "."}:
            continue  # kubeferry itself, built from this checkout
        artifacts = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert package["version"], package["name"]
        if not artifacts or not all(a.get("hash", "").startswith("sha256:") for a in artifacts):
            unhashed.append(package["name"])
    assert not unhashed, f"packages in uv.lock without a sha256 for every file: {unhashed}"


def test_hack_uv_installs_the_uv_that_pyproject_requires() -> None:
    script = (ROOT / "hack" / "uv.sh").read_text()
    match = re.search(r'^UV_VERSION="([^"]+)"$', script, re.MULTILINE)
    assert match, 'hack/uv.sh no longer sets UV_VERSION="..."'
    required = load("pyproject.toml")["tool"]["uv"]["required-version"]
    assert required == f"=={match.group(1)}", (
        f"hack/uv.sh installs uv {match.group(1)} but pyproject.toml requires {required}"
    )
