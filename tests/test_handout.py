"""The handouts (docs/handout.md, docs/handout.zh.md, docs/handouts/) are current, and the generator
checks every formula it writes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from handgrad.reference.docgen import handout
from handgrad.reference.docgen.derivation import Derivation, UnsupportedNetwork
from handgrad.reference.docgen.handout import (
    ARTICLE,
    HANDOUT_PATH,
    HANDOUTS,
    HandoutError,
    HandoutSpec,
    main,
    render,
    render_handout,
)

import handgrad as hg


def test_committed_handout_is_what_the_generator_produces() -> None:
    committed = HANDOUT_PATH.read_text(encoding="utf-8")
    assert committed == render_handout(), "docs/handout.md is stale: run `python -m handgrad.reference.docgen.handout`"


@pytest.mark.parametrize("entry", HANDOUTS, ids=[c.path.name for c in HANDOUTS])
def test_every_committed_handout_is_current(entry: handout._Committed) -> None:
    assert entry.path.exists(), f"{entry.path} is missing: run `python -m handgrad.reference.docgen.handout`"
    assert entry.path.read_text(encoding="utf-8") == handout._render_committed(entry), (
        f"{entry.path} is stale: run `python -m handgrad.reference.docgen.handout`")


def test_committed_set_covers_the_article_and_three_other_nets_in_both_languages_and_formats() -> None:
    specs = {c.spec for c in HANDOUTS}
    assert ARTICLE in specs and len(specs) >= 4
    for spec in specs:
        kinds = {(c.lang, c.fmt) for c in HANDOUTS if c.spec == spec}
        assert kinds == {("en", "md"), ("en", "tex"), ("zh", "md"), ("zh", "tex")}, spec
    assert (HANDOUT_PATH.parent / "handout.zh.md") in {c.path for c in HANDOUTS}


def test_handout_follows_the_article() -> None:
    page = render_handout()
    sections = [line for line in page.splitlines() if line.startswith("## ")]
    assert sections[1:4] == ["## Output layer", "## Second hidden layer", "## First hidden layer"]
    # one displayed formula per weight and bias of the 2-3-3-1 net (25), in the article's notation
    for name in ("w_{11}^{(3)}", "w_{33}^{(2)}", "w_{32}^{(1)}", "b_{1}^{(3)}", "b_{3}^{(1)}"):
        assert f"\\frac{{\\partial L}}{{\\partial {name}}} =" in page
    assert page.count("\\frac{\\partial L}{\\partial w_") + page.count("\\frac{\\partial L}{\\partial b_") == 25
    assert page.count("$$") % 2 == 0


def test_chinese_handout_uses_the_articles_vocabulary() -> None:
    page = render(ARTICLE, lang="zh")
    for word in ("反向传播", "梯度下降", "链式法则", "输出层", "隐藏层", r"\delta(u)", "x_{2i}", "x_{31}"):
        assert word in page, word
    sections = [line for line in page.splitlines() if line.startswith("## ")]
    assert sections[1:4] == ["## 输出层", "## 第二个隐藏层", "## 第一个隐藏层"]
    # the formulas are the same as in English: only the prose is translated
    def maths(text: str) -> list[str]:
        lines = text.splitlines()
        return [lines[k + 1] for k, line in enumerate(lines)
                if line == "$$" and k + 1 < len(lines) and lines[k + 1] != "$$"]
    assert maths(page)[::2] == maths(render_handout())[::2]


def test_a_wrong_formula_stops_the_generator() -> None:
    d = Derivation(hg.article_network())

    def dropped_sigmoid_factor(layer: int, i: int, j: int) -> handout.Formula:
        return d.dl_dout(layer, i) * d.inp(layer, j)  # x(1-x) forgotten

    with pytest.raises(HandoutError, match=r"w_11\^\(3\).*\[D\]"):
        render_handout(dropped_sigmoid_factor)


def test_a_wrong_index_stops_the_generator_on_a_multi_output_net() -> None:
    spec = HandoutSpec((2, 3, 2), ("relu", "softmax"), "cross_entropy")
    d = Derivation(spec.network())

    def swapped_input(layer: int, i: int, j: int) -> handout.Formula:
        return handout.Formula(d.dl_dw(layer, i, 3 - j).tex, d.dl_dw(layer, i, 3 - j).expr) if layer == 1 \
            else d.dl_dw(layer, i, j)

    with pytest.raises(HandoutError, match=r"w_11\^\(1\).*\[D\]"):
        render(spec, dw=swapped_input)


def test_the_factored_form_is_the_articles_walk() -> None:
    """Per weight: the factor from the layer above, the local derivative, the input, in that order."""
    d = Derivation(hg.Network((2, 4, 4, 1), ["tanh", "tanh", "sigmoid"], "bce"))
    assert d.dl_dw(3, 1, 2).tex == r"(\hat y - y)\,x_{32}"
    tex = d.dl_dw(2, 3, 1).tex
    assert tex == r"(\hat y - y)\,w_{13}^{(3)}\,(1-x_{33}^2)\,x_{21}"
    assert d.dl_dw(1, 1, 1).tex.endswith(r"\big]\,(1-x_{21}^2)\,x_{11}")


def test_unsupported_networks_are_refused_with_a_reason() -> None:
    with pytest.raises(UnsupportedNetwork, match="softmax"):
        Derivation(hg.Network((2, 3, 2), ["softmax", "softmax"], "cross_entropy"))
    with pytest.raises(UnsupportedNetwork, match="leaky_relu"):
        Derivation(hg.Network((2, 2, 1), "leaky_relu"))
    with pytest.raises(ValueError, match="lang"):
        render(ARTICLE, lang="fr")
    with pytest.raises(ValueError, match="fmt"):
        render(ARTICLE, fmt="html")


@pytest.mark.parametrize("spec", [
    HandoutSpec((2, 2, 1), ("elu", "identity")),
    HandoutSpec((2, 2, 2), ("silu", "sigmoid"), "bce", fuse=False),
    HandoutSpec((1, 2, 2, 1), ("softplus", "tanh", "identity")),
], ids=lambda s: s.slug)
def test_other_nets_generate_and_pass_every_check(spec: HandoutSpec) -> None:
    page = render(spec)
    n = spec.network().n_params
    assert page.count("\\frac{\\partial L}{\\partial w_") + page.count("\\frac{\\partial L}{\\partial b_") == n


def test_unfused_bce_says_that_handgrads_gradient_does_not_run_on_symbols() -> None:
    page = render(HandoutSpec((2, 2, 1), ("tanh", "sigmoid"), "bce", fuse=False))
    assert "**[D]** exact" in page and "**[D]** **[H]**" not in page
    assert "does not run on symbols" in page


def test_generation_is_fast_enough_for_the_test_suite() -> None:
    start = time.perf_counter()
    render(HandoutSpec((2, 4, 4, 1), ("tanh", "tanh", "sigmoid"), "bce"), lang="zh", fmt="tex")
    assert time.perf_counter() - start < 20.0


def test_main_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "handout.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_handout()
    assert "wrote" in capsys.readouterr().out
