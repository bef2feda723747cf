"""Docs stay current: generated pages equal what their generators produce now, and every relative
link in README and docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from handgrad.reference.docgen import apidoc

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_api_reference_is_current() -> None:
    assert (ROOT / "docs" / "api.md").read_text() == apidoc.render_api(), \
        "run: python -m handgrad.reference.docgen.apidoc"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_math_blocks_are_balanced(page: Path) -> None:
    assert page.read_text().count("$$") % 2 == 0, f"{page.name} has an unclosed $$ block"


def test_api_reference_does_not_depend_on_the_checkout_folder() -> None:
    assert str(ROOT) not in (ROOT / "docs" / "api.md").read_text()
