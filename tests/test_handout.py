"""The derivation handout (docs/handout.md) is current, and its generator checks every formula."""

from __future__ import annotations

from pathlib import Path

import pytest
from handgrad.reference.docgen import handout
from handgrad.reference.docgen.handout import HANDOUT_PATH, HandoutError, main, render_handout


def test_committed_handout_is_what_the_generator_produces() -> None:
    committed = HANDOUT_PATH.read_text(encoding="utf-8")
    assert committed == render_handout(), "docs/handout.md is stale: run `python -m handgrad.reference.docgen.handout`"


def test_handout_follows_the_article() -> None:
    page = render_handout()
    sections = [line for line in page.splitlines() if line.startswith("## ")]
    assert sections[1:4] == ["## Output layer", "## Second hidden layer", "## First hidden layer"]
    # one displayed formula per weight and bias of the 2-3-3-1 net (25), in the article's notation
    for name in ("w_{11}^{(3)}", "w_{33}^{(2)}", "w_{32}^{(1)}", "b_{1}^{(3)}", "b_{3}^{(1)}"):
        assert f"\\frac{{\\partial L}}{{\\partial {name}}} =" in page
    assert page.count("\\frac{\\partial L}{\\partial w_") + page.count("\\frac{\\partial L}{\\partial b_") == 25
    assert page.count("$$") % 2 == 0


def test_a_wrong_formula_stops_the_generator() -> None:
    def dropped_sigmoid_factor(layer: int, i: int, j: int) -> handout.Formula:
        return handout._dl_dout(layer, i) * handout._inp(layer, j)  # x(1-x) forgotten

    with pytest.raises(HandoutError, match=r"w_11\^\(3\).*\[D\]"):
        render_handout(dropped_sigmoid_factor)


def test_main_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "handout.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_handout()
    assert "wrote" in capsys.readouterr().out
