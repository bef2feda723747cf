"""format_derivation: what ``handgrad derive --latex`` prints for lecture notes."""

from __future__ import annotations

import io
import re
import time

import pytest
from handgrad.reference.docgen.derive_format import _with_progress, format_derivation
from handgrad.reference.docgen.latex import break_formula, integral_floats, split_terms
from test_docgen_render import katex_failures, mathml_problem

import handgrad as hg


def _all(net: hg.Network) -> list[tuple[str, tuple[int, int]]]:
    return [(name, (i, j)) for name, (r, c) in net.param_shapes.items() for i in range(r) for j in range(c)]


def _blocks(text: str) -> list[str]:
    return re.findall(r"^\$\$\n(.*?)\n\$\$$", text, re.S | re.M)


def test_factored_form_of_the_article_is_the_handouts() -> None:
    text = format_derivation(hg.article_network(), [("W3", (0, 0)), ("W2", (0, 1))])
    blocks = _blocks(text)
    assert blocks[0] == r"\frac{\partial L}{\partial w_{11}^{(3)}} = 2(\hat y - y)\,\hat y(1-\hat y)\,x_{31}"
    assert blocks[1] == (r"\frac{\partial L}{\partial w_{12}^{(2)}} = 2(\hat y - y)\,\hat y(1-\hat y)\,w_{11}^{(3)}"
                         r"\,x_{31}(1-x_{31})\,x_{22}")
    assert text.startswith("% dL/dw for 2-3-3-1") and "factored as the article does" in text


def test_long_formulas_are_broken_and_every_block_renders() -> None:
    net = hg.Network((2, 4, 4, 1), ["tanh", "tanh", "sigmoid"], "bce")
    text = format_derivation(net, _all(net), width=90)
    blocks = _blocks(text)
    assert len(blocks) == net.n_params
    broken = [b for b in blocks if b.startswith(r"\begin{aligned}")]
    assert broken, "the first layer's formulas are longer than 90 characters"
    for b in broken:
        assert all(len(line) <= 110 for line in b.splitlines()), b
    assert not katex_failures([(b, True) for b in blocks])
    assert all(mathml_problem(b, True) is None for b in blocks)


def test_elu_prints_integral_floats_as_integers() -> None:
    net = hg.Network((2, 3, 1), "elu")
    text = format_derivation(net, [("W1", (0, 0))], expanded=True)
    assert "1.0" not in text and "x_{11}" in text
    assert not katex_failures([(b, True) for b in _blocks(text)])


def test_softmax_cross_entropy_is_factored_not_expanded() -> None:
    net = hg.Network((2, 3, 2), ["relu", "softmax"], "cross_entropy")
    factored = _blocks(format_derivation(net, [("W1", (0, 0))], width=200))[0]
    assert factored == (r"\frac{\partial L}{\partial w_{11}^{(1)}} = \big[(\hat y_{1} - y_{1})\,w_{11}^{(2)} + "
                        r"(\hat y_{2} - y_{2})\,w_{21}^{(2)}\big]\,\mathbf 1[z_{1}^{(1)} > 0]\,x_{11}")
    expanded = _blocks(format_derivation(net, [("W1", (0, 0))], expanded=True))[0]
    assert expanded != factored and "expanded" not in factored


def test_a_net_without_a_factored_display_falls_back_to_the_oracle_and_says_so() -> None:
    text = format_derivation(hg.Network((2, 2, 1), "leaky_relu"), [("B1", (0, 0))])
    assert "no factored display" in text and len(_blocks(text)) == 1


def test_delimiters() -> None:
    net = hg.article_network()
    assert r"\[" in format_derivation(net, [("B3", (0, 0))], delimiters="brackets")
    assert "$$" not in format_derivation(net, [("B3", (0, 0))], delimiters="none")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"delimiters": "dollar"}, "delimiters"), ({"width": 5}, "width"),
    ({"selected": [("W9", (0, 0))]}, "W9"), ({"selected": [("W1", (5, 0))]}, "W1"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    selected = kwargs.pop("selected", [("W1", (0, 0))])
    with pytest.raises(ValueError, match=match):
        format_derivation(hg.article_network(), selected, **kwargs)


def test_progress_line_for_slow_derivations() -> None:
    err = io.StringIO()
    assert _with_progress("deriving x", lambda: time.sleep(0.4) or 7, err, 0.05) == 7
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("derive: deriving x (more than 0.05 s") and "done in" in lines[1]
    quiet = io.StringIO()
    _with_progress("deriving y", lambda: None, quiet, 5.0)
    assert quiet.getvalue() == ""


def test_latex_helpers() -> None:
    assert integral_floats(r"1.0 x_{11} + 2.0 w - 0.5 b + 10 x") == r"x_{11} + 2 w - 0.5 b + 10 x"
    assert integral_floats(r"x_{1} \left(y + 1 \right)") == r"x_{1} \left(y + 1 \right)"
    assert split_terms(r"a + \left(b + c\right) - d") == ["a", r"+ \left(b + c\right)", "- d"]
    assert break_formula("L = a + b", width=50) == "L = a + b"
    with pytest.raises(ValueError, match="width"):
        break_formula("L = a", width=0)
