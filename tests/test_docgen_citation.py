"""CITATION.cff identifies the work and names the source article as a blog post."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CFF = Path(__file__).resolve().parents[1] / "CITATION.cff"


def _load() -> dict:
    yaml = pytest.importorskip("ruamel.yaml")
    return yaml.YAML(typ="safe").load(CFF.read_text(encoding="utf-8"))


def test_citation_identifies_the_software() -> None:
    cff = _load()
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["title"].startswith("handgrad")
    assert cff["version"] == importlib.metadata.version("handgrad")
    for key in ("message", "abstract", "authors", "date-released", "license", "keywords"):
        assert cff.get(key), key
    assert "certificate" in cff["message"]


def test_citation_names_the_source_article_as_a_blog_post() -> None:
    refs = _load()["references"]
    article = [r for r in refs if r["title"] == "全连接神经网络基础——反向传播及梯度下降"]
    assert len(article) == 1
    assert article[0]["type"] == "blog" and article[0]["authors"] and article[0]["languages"] == ["zh"]


@pytest.mark.skipif(shutil.which("cffconvert", path=str(Path(sys.executable).parent)) is None,
                    reason="cffconvert not installed (pip install cffconvert)")
def test_citation_validates_against_the_cff_schema() -> None:
    exe = shutil.which("cffconvert", path=str(Path(sys.executable).parent))
    run = subprocess.run([exe, "--validate", "-i", str(CFF)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
