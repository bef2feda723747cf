"""Repository hygiene: one version, a license file for the declared license, no build residue."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import handgrad

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_read_from_the_package_metadata() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert handgrad.__version__ == metadata.version("handgrad") == declared
    assert "__version__ = \"0.1" not in (ROOT / "handgrad" / "__init__.py").read_text()


def test_license_file_matches_the_declared_license() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_no_build_residue_is_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not [p for p in tracked.splitlines() if ".egg-info" in p or "__pycache__" in p]
