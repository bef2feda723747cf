"""The ``handgrad`` command: every subcommand in-process through ``main([...])``, the installed
console script once, a table of bad arguments (exit 2, one line, no traceback), a correct and a
buggy user backward, the report files, the chart and CITATION.cff."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from handgrad.reference.cli import UsageError, latex_to_text, main, parse_sizes, parse_weight

import handgrad as hg

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


# -- the console script and --help ------------------------------------------------------------

def test_console_script_help() -> None:
    exe = shutil.which("handgrad", path=str(Path(sys.executable).parent)) or shutil.which("handgrad")
    assert exe is not None, "the handgrad console script is not installed (pip install -e .)"
    run = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    for cmd in ("certify", "derive", "handout", "prove", "demo"):
        assert cmd in run.stdout


@pytest.mark.parametrize("cmd", ["certify", "derive", "handout", "prove", "demo"])
def test_subcommand_help_has_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: handgrad {cmd}")
    assert "examples:" in out and f"handgrad {cmd}" in out.split("examples:")[1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"handgrad {hg.__version__}"


# -- bad arguments ------------------------------------------------------------------------------

ARCH = ["--arch", "2-3-1", "--activation", "sigmoid"]
BAD = [
    ([], "choose a command"),
    (["bogus"], "invalid choice"),
    (["certify", "--examples", "0"], "positive integer"),
    (["certify", "--examples", "many"], "positive integer"),
    (["certify", "--dtype", "float16"], "invalid choice"),
    (["certify", "--activations", "swish"], "unknown activation 'swish'"),
    (["certify", "--losses", "hinge"], "unknown loss 'hinge'"),
    (["certify", "--activations", "relu;rm"], "comma-separated names"),
    (["certify", "--oracles", "torch"], "unknown oracle 'torch'"),
    (["certify", "--oracles", "fd"], "at least 2 independent references"),
    (["certify", "--oracles", "jax,jax"], "at least 2 independent references"),
    (["certify", "--seed", "-1"], "integer in [0, 2**32)"),
    (["certify", "--quiet", "--progress"], "not allowed with"),
    (["certify", *ARCH], "describes the architecture of --backward"),
    (["certify", "--vary-shapes"], "--backward only"),
    (["certify", "--backward", "nocolon", *ARCH], "must be module:function"),
    (["certify", "--backward", "no_such_module_xyz:f", *ARCH], "cannot import module 'no_such_module_xyz'"),
    (["certify", "--backward", "user_backward_example:missing", *ARCH], "has no attribute 'missing'"),
    (["certify", "--backward", "user_backward_example:NOT_CALLABLE", *ARCH], "is not callable (it is of type int)"),
    (["certify", "--backward", "user_backward_example:correct"], "needs --arch and --activation"),
    (["certify", "--backward", "user_backward_example:correct", "--arch", "2-x-1", "--activation", "sigmoid"],
     "like 2-3-3-1"),
    (["certify", "--backward", "user_backward_example:correct", "--activations", "relu", *ARCH],
     "restrict the registry run"),
    (["certify", "--report-dir", "user_backward_example.py"], "is not a folder"),
    (["derive", "--arch", "2-0-1", "--activation", "sigmoid"], "at least 1"),
    (["derive", "--arch", "2-3-3-1", "--activation", "sigmoid", "--weight", "w_99^(3)"], "out of range"),
    (["derive", "--arch", "2-3-3-1", "--activation", "sigmoid", "--weight", "w_11^(7)"], "layer 7 does not exist"),
    (["derive", "--arch", "2-3-3-1", "--activation", "sigmoid", "--weight", "W3[0]"], "a weight has two indices"),
    (["derive", "--arch", "2-3-3-1", "--activation", "sigmoid", "--weight", "__import__('os').system('x')"],
     "cannot read"),
    (["derive", "--activation", "sigmoid"], "required: --arch"),
    (["prove", "--arch", "2-3-1", "--activation", "sigmoid,tanh,relu"], "lists 3 names but the architecture has 2"),
    (["prove", *ARCH, "--loss", "hinge"], "unknown loss 'hinge'"),
    (["prove", "--arch", "2-3-1", "--activation", "identity", "--loss", "bce"], "expects predictions in"),
    (["prove", *ARCH, "--method", "magic"], "invalid choice"),
    (["prove", *ARCH, "--import", "no_such_plugin_xyz"], "cannot import module 'no_such_plugin_xyz'"),
    (["demo", "--steps", "-3"], "positive integer"),
    (["demo", "--rate", "nan"], "finite number"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_arguments_one_line_exit_2(argv: list[str], message: str, in_tests_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and captured.out == ""
    assert "\n" not in err, err
    assert err.startswith("handgrad") and ": error: " in err, err
    assert message in err, err


def test_parse_sizes() -> None:
    assert parse_sizes("2-3-3-1") == (2, 3, 3, 1)
    for bad in ("2", "2-", "-2-1", "2--1", "2-3.5-1", "2 - 3", "1e3-2"):
        with pytest.raises(UsageError):
            parse_sizes(bad)


SIZES = (2, 3, 3, 1)


@pytest.mark.parametrize("text", ["w_12^(2)", "w12^(2)", "w_{12}^{(2)}", "w_{1,2}^{(2)}", "W2[0,1]", "W2[0, 1]",
                                  " w_12^(2) "])
def test_parse_weight_spellings(text: str) -> None:
    assert parse_weight(text, SIZES) == [("W2", (0, 1))]


def test_parse_weight_biases_tensors_and_all() -> None:
    assert parse_weight("b_3^(1)", SIZES) == [("B1", (2, 0))] == parse_weight("B1[2]", SIZES)
    assert parse_weight("B1[2,0]", SIZES) == [("B1", (2, 0))]
    assert parse_weight("W3", SIZES) == [("W3", (0, j)) for j in range(3)]
    everything = parse_weight("all", SIZES)
    assert len(everything) == 2 * 3 + 3 + 3 * 3 + 3 + 3 + 1 == 25
    assert everything[0] == ("W1", (0, 0)) and everything[-1] == ("B3", (0, 0))
    assert parse_weight("w_{10,1}^{(1)}", (1, 12, 1)) == [("W1", (9, 0))]
    assert parse_weight("W_12^(2)", SIZES) == [("W2", (0, 1))]  # the article's capital


def test_parse_weight_reads_every_notation_name_of_a_wide_net() -> None:
    """Every element of a net with widths up to 12, named by handgrad.notation in plain text, LaTeX
    and code form, reads back as itself; the two names that used to collide stay apart."""
    from handgrad.notation import code_name, element_latex, element_name

    sizes = (12, 11, 12, 3)
    everything = parse_weight("all", sizes)
    assert len(everything) == 12 * 11 + 11 + 11 * 12 + 12 + 12 * 3 + 3
    for tensor, index in everything:
        for name in (element_name(tensor, index), element_latex(tensor, index), code_name(tensor, index)):
            assert parse_weight(name, sizes) == [(tensor, index)], name
    assert parse_weight("w_1,13^(1)", (13, 11, 1)) == [("W1", (0, 12))]
    assert parse_weight("w_11,3^(1)", (13, 11, 1)) == [("W1", (10, 2))]


def test_derive_names_wide_elements_with_the_notation_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", "--arch", "12-2-1", "--activation", "tanh", "--weight", "W1[1,10]"]) == 0
    formula = capsys.readouterr().out.splitlines()[-1]
    assert formula.startswith("dL/dw_2,11^(1) = ") and "x_1,11" in formula, formula


# -- certify ------------------------------------------------------------------------------------

def test_certify_registry_subset_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["certify", "--losses", "squared_error", "--examples", "2", "--jobs", "1", "--report-dir",
               str(tmp_path / "out"), "--progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.out
    out = captured.out
    # 2 drawn cases on each of the 3 architectures, plus every architecture's traps
    row = re.search(r"^loss squared_error\s+3\s+(\d+)\s+(\d+)\s+\d+\s+\S+\s+certified$", out, re.M)
    assert row and int(row[1]) > 6 and int(row[2]) >= 6, out
    assert "CERTIFIED: all 1 subject(s)" in out
    assert "[" in captured.err and "#" in captured.err  # the progress bar, on stderr
    md, js, png = (tmp_path / "out" / f"handgrad-report.{e}" for e in ("md", "json", "png"))
    data = json.loads(js.read_text())
    assert data["ok"] is True and data["settings"]["examples_per_architecture"] == 2
    (subject,) = data["subjects"]
    assert subject["subject"] == "loss squared_error" and subject["status"] == "certified"
    assert subject["cases"] == int(row[1]) and len(subject["certificates"]) == 3
    assert set(subject["per_tensor_ratio"]) == {"W1", "B1", "W2", "B2"}
    assert all(0 <= r <= 1 for r in subject["per_tensor_ratio"].values())
    text = md.read_text()
    assert f"| loss squared_error | 3 | {row[1]} |" in text and "![worst error-to-budget" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_certify_user_backward_correct(in_tests_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["certify", "--backward", "user_backward_example:correct", "--arch", "2-3-1", "--activation",
               "sigmoid", "--examples", "4", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = re.search(r"^user_backward_example:correct\s+1\s+(\d+)\s+(\d+)\s+0\s+\S+\s+certified$", out, re.M)
    assert row and int(row[1]) == int(row[2]) > 4, out  # the 4 drawn cases and the traps, all decided
    assert json.loads((tmp_path / "handgrad-report.json").read_text())["ok"] is True


def test_certify_user_backward_bug_is_named(in_tests_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["certify", "--backward", "user_backward_example:wrong_first_layer", "--sizes", "2-3-1",
               "--activation", "sigmoid", "--examples", "4", "--report-dir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "NOT CERTIFIED: user_backward_example:wrong_first_layer on 2-3-1" in out
    # The report names the tensor and the element in article notation, with every source's value.
    assert re.search(r"disagree on dL/d(w_\d\d|b_\d)\^\(1\) \((W1|B1)\[", out), out
    assert "hand = " in out and "JAX = " in out and "reproduce: handgrad.reference.build_case(" in out
    assert "subject" not in out.splitlines()[0]  # --quiet: no table
    data = json.loads((tmp_path / "handgrad-report.json").read_text())
    assert data["ok"] is False and data["subjects"][0]["status"] == "FAILED"
    failure = data["subjects"][0]["certificates"][0]["failure"]
    assert {m["tensor"] for m in failure["mismatches"]} <= {"W1", "B1"}
    md = (tmp_path / "handgrad-report.md").read_text()
    assert "**NOT certified**" in md and "W1" in md


def test_certify_without_matplotlib_writes_the_rest(in_tests_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import handgrad.reference.cli.plot

    monkeypatch.setattr(handgrad.reference.cli.plot, "matplotlib_available", lambda: False)
    rc = main(["certify", "--backward", "user_backward_example:correct", "--arch", "2-2-1", "--activation",
               "sigmoid", "--examples", "2", "--report-dir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "note: matplotlib is not installed: no chart" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handgrad-report.json", "handgrad-report.md"]
    assert json.loads((tmp_path / "handgrad-report.json").read_text())["chart"] is None
    assert "![" not in (tmp_path / "handgrad-report.md").read_text()


# -- derive -------------------------------------------------------------------------------------

ARTICLE = ["derive", "--arch", "2-3-3-1", "--activation", "sigmoid"]


def test_derive_article_weight_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARTICLE, "--weight", "w_11^(3)"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# dL/dw for 2-3-3-1 sigmoid/sigmoid/sigmoid, squared_error")
    assert lines[1].startswith("#")
    (formula,) = lines[2:]
    assert formula.startswith("dL/dw_11^(3) = ")
    for piece in ("yhat", "x_31", "(1 - yhat)", "(yhat - y)"):
        assert piece in formula, formula
    # The code's 0-based name selects the same weight.
    assert main([*ARTICLE, "--weight", "W3[0,0]"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == formula


def test_derive_latex_and_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARTICLE, "--weight", "w_{11}^{(3)}", "--latex", "--expanded"]) == 0
    tex = capsys.readouterr().out.splitlines()
    assert tex[0].startswith("% ") and tex[1].startswith("% ")
    assert tex[3] == "$$" and tex[4].startswith(r"\frac{\partial L}{\partial w_{11}^{(3)}} = ")
    assert "x_{31}" in tex[4] and r"\left(1 - \hat y\right)" in tex[4]
    assert main([*ARTICLE]) == 0  # --weight all (the default): 25 parameters, W1, B1, W2, ...
    formulas = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(formulas) == 25
    assert formulas[0].startswith("dL/dw_11^(1) = ") and formulas[6].startswith("dL/db_1^(1) = ")
    assert formulas[-1].startswith("dL/db_1^(3) = ")


def test_derive_kinks_read_as_conditions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", "--arch", "2-2-1", "--activation", "relu,identity", "--weight", "w_11^(1)"]) == 0
    formula = capsys.readouterr().out.splitlines()[-1]
    assert formula.startswith("dL/dw_11^(1) = ") and "(x_11 if z_1^(1) > 0 else 0)" in formula, formula


def test_latex_to_text_reader() -> None:
    tex = r"\frac{\partial L}{\partial b_{2}^{(1)}} = \sqrt{\pi} \operatorname{erfc}{\left(x_{11} \right)}"
    assert latex_to_text(tex) == "dL/db_2^(1) = sqrt(pi) erfc(x_11)"
    assert latex_to_text(r"\frac{\partial L}{\partial w_{12,3}^{(2)}} = \left(z_{1}^{(1)}\right)^{2}") \
        == "dL/dw_12,3^(2) = (z_1^(1))^2"
    # Anything it does not know is refused (the command then prints the LaTeX), never guessed.
    assert latex_to_text(r"\frac{\partial L}{\partial w_{11}^{(1)}} = \mathbb{R}") is None
    assert latex_to_text(r"\frac{\partial L}{\partial w_{11}^{(1)}} = \frac{1}{2") is None
    assert latex_to_text("no equation") is None


_NAME = re.compile(r"([wbz])_(?:(\d+),(\d+)|(\d)(\d)|(\d+))\^\((\d+)\)|x_(?:(\d+),(\d+)|(\d)(\d))")


def _identifier(m: re.Match[str]) -> str:
    g = m.groups()
    if g[0] is not None:
        idx = [v for v in g[1:6] if v is not None]
        return f"{g[0]}_{'_'.join(idx)}_L{g[6]}"
    k, i = (g[7], g[8]) if g[7] is not None else (g[9], g[10])
    return f"x_{k}_{i}"


@pytest.mark.parametrize(("sizes", "acts", "loss"), [
    ((2, 3, 3, 1), ("sigmoid", "sigmoid", "sigmoid"), "squared_error"),
    ((2, 2, 1), ("gelu", "sigmoid"), "bce"),
    ((2, 2, 2), ("tanh", "softmax"), "cross_entropy"),
    ((2, 2, 2), ("softplus", "identity"), "softmax_cross_entropy"),
], ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else v)
def test_text_form_equals_the_oracles_closed_form(sizes: tuple[int, ...], acts: tuple[str, ...], loss: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    r"""Read the printed text back (our own output, not user input) and evaluate it with 50 significant
    digits, with x_ki, z_i^(l) and yhat bound to the forward values computed at 50 digits, against
    the oracle's closed form of the composite loss evaluated by mpmath at 50 digits and rounded to the
    nearest float64 (``grads_mp``; one sample, so the batch mean is the per-sample value). Both are
    the same real number; 50-digit evaluation of these O(1)-valued expressions is accurate far below
    a float64 ulp, so they must agree to within the rounding of the reference: ulp(reference)."""
    import numpy as np
    import sympy as sp
    from handgrad.reference.oracles.ops import SYMPY_OPS
    from handgrad.reference.oracles.sympy_oracle import get_sympy_oracle
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    assert main(["derive", "--arch", "-".join(map(str, sizes)), "--activation", ",".join(acts), "--loss", loss]) == 0
    formulas = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    net = hg.Network(sizes, list(acts), loss)
    rng = np.random.default_rng(7)
    params = {k: rng.uniform(-1, 1, shape) for k, shape in net.param_shapes.items()}
    X = rng.uniform(-1, 1, (sizes[0], 1))
    Y = rng.dirichlet(np.ones(sizes[-1]))[:, None]
    want = get_sympy_oracle(net).grads_mp(params, X, Y, dps=50)

    def f50(v: float) -> sp.Float:
        return sp.Float(float(v), 50)

    values: dict[str, sp.Expr] = {f"x_1_{j + 1}": f50(X[j, 0]) for j in range(sizes[0])}
    a = np.array([[f50(v)] for v in X[:, 0]], dtype=object)
    for l, act in enumerate(net.activations, start=1):
        W, B = params[f"W{l}"], params[f"B{l}"]
        z = np.array([[sum(f50(W[i, j]) * a[j, 0] for j in range(sizes[l - 1])) + f50(B[i, 0])]
                      for i in range(sizes[l])], dtype=object)
        a = np.asarray(act.definition(z, SYMPY_OPS), dtype=object).reshape(sizes[l], 1)
        a = np.array([[sp.N(v, 50)] for v in a[:, 0]], dtype=object)
        for i in range(sizes[l]):
            values[f"z_{i + 1}_L{l}"] = z[i, 0]
            values[f"x_{l + 1}_{i + 1}"] = a[i, 0]
    for i in range(sizes[-1]):
        values[f"yhat_{i + 1}"], values[f"y_{i + 1}"] = a[i, 0], f50(Y[i, 0])
    values["yhat"], values["y"] = values["yhat_1"], values["y_1"]
    for name, shape in net.param_shapes.items():
        for i in range(shape[0]):
            for j in range(shape[1]):
                key = f"w_{i + 1}_{j + 1}_L{name[1:]}" if name[0] == "W" else f"b_{i + 1}_L{name[1:]}"
                values[key] = f50(params[name][i, j])
    local: dict[str, object] = {k: sp.Symbol(k) for k in values}
    local.update(exp=sp.exp, erfc=sp.erfc, erf=sp.erf, sqrt=sp.sqrt, log=sp.log, tanh=sp.tanh, pi=sp.pi)
    binding = {sp.Symbol(k): v for k, v in values.items()}
    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    names = parse_weight("all", sizes)
    assert len(formulas) == len(names)
    for line, (name, (i, j)) in zip(formulas, names, strict=True):
        rhs = _NAME.sub(_identifier, line.split(" = ", 1)[1])
        got = sp.N(parse_expr(rhs, local_dict=local, transformations=transformations).subs(binding), 50)
        ref = float(want[name][i, j])
        assert abs(float(got) - ref) <= float(np.spacing(abs(ref))), (line, got, ref)


# -- prove and demo -----------------------------------------------------------------------------

def test_prove_article_network(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--arch", "2-3-3-1", "--activation", "sigmoid"]) == 0
    out = capsys.readouterr().out
    assert "2-3-3-1 sigmoid/sigmoid/sigmoid, squared_error: PROVED (25 parameters" in out
    assert "activation sigmoid: PROVED" in out and "loss squared_error: PROVED" in out
    assert out.rstrip().endswith("PROVED: handgrad's backward for 2-3-3-1 sigmoid/sigmoid/sigmoid, squared_error")


def test_prove_modular_fused(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["prove", "--arch", "3-4-3", "--activation", "tanh,softmax", "--loss", "cross_entropy",
               "--method", "modular", "--network-only"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "exact randomized identity test" in out and "The local rules" not in out


def test_prove_refutes_a_users_wrong_derivative(in_tests_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["prove", "--import", "user_plugin_example", "--arch", "2-2-1", "--activation",
                   "bad_sigmoid,identity"])
    finally:
        if "bad_sigmoid" in hg.activation_names():
            hg.unregister_activation("bad_sigmoid")
    out = capsys.readouterr().out
    assert rc == 1
    assert "activation bad_sigmoid: NOT PROVED" in out and "[  refuted]" in out
    assert out.rstrip().splitlines()[-1].startswith("NOT PROVED: handgrad's backward for 2-2-1 bad_sigmoid/identity")


def test_demo_prints_the_article_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    assert [int(line.split()[1]) for line in lines] == [0, 20, 40, 60, 80, 99]
    trajectory, _ = hg.train_article(seed=0, out=None)
    assert lines[-1] == (f"iteration  99  prediction {trajectory[99].prediction:.8f}  "
                         f"loss {trajectory[99].loss:.8f}")


def test_demo_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "7", "--rate", "0.5", "--seed", "3", "--print-every", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[1]) for line in lines] == [0, 3, 6]


# -- the chart and CITATION.cff -----------------------------------------------------------------

def test_chart_handles_zero_inf_and_over_budget(tmp_path: Path) -> None:
    from handgrad.reference.cli.plot import plot_error_budget

    path = plot_error_budget({"ok subject": {"W1": 0.0, "B1": 0.3}, "buggy": {"W1": 4e12, "B1": float("inf")}},
                             tmp_path / "chart.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="non-empty"):
        plot_error_budget({}, tmp_path / "x.png")


def test_citation_cff() -> None:
    text = (ROOT / "CITATION.cff").read_text()
    fields = dict(re.findall(r"^([a-z-]+):[ ]*(.*)$", text, re.M))
    folded = {k: " ".join(v.split()) for k, v in re.findall(r"^([a-z-]+): >-\n((?:  .*\n)+)", text, re.M)}
    fields.update(folded)  # YAML folded scalars (">-"): the indented lines joined by spaces
    assert fields["cff-version"] == "1.2.0"
    assert fields["title"].startswith("handgrad")
    assert fields["version"] == hg.__version__
    assert fields["date-released"].strip('"') == "2026-11-26"
    assert fields["license"] == "MIT"
    assert {"message", "authors", "abstract", "type"} <= set(fields)
    assert re.search(r"^authors:\n  - name: handgrad contributors$", text, re.M)
    assert "\t" not in text


@pytest.mark.slow  # ~10 s: each spawned worker imports JAX and compiles its own oracles
def test_certify_jobs_do_not_change_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two worker processes (spawned) give the same certificates as one process: each architecture is
    certified from its own seed, wherever it runs."""
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / jobs
        assert main(["certify", "--losses", "softmax_cross_entropy", "--examples", "2", "--jobs", jobs,
                     "--report-dir", str(out), "--quiet"]) == 0
        data = json.loads((out / "handgrad-report.json").read_text())
        runs[jobs] = [(c["architecture"], c["cases"], c["certified"], c["per_tensor"])
                      for s in data["subjects"] for c in s["certificates"]]
    capsys.readouterr()
    assert runs["1"] == runs["2"] and len(runs["1"]) == 3


def _documented_commands() -> list[str]:
    from handgrad.reference.cli import build_parser

    good = (ROOT / "docs" / "cli.md").read_text().split("## Bad arguments")[0]  # (those must fail)
    lines = [line[2:] for line in good.splitlines() if line.startswith("$ handgrad")]
    help_text = build_parser().format_help()
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for parser in sub.values():
        help_text += parser.format_help()
    lines += [line.strip() for line in help_text.splitlines() if line.strip().startswith("handgrad ")]
    return lines


def test_documented_commands_parse() -> None:
    """Every command shown in docs/cli.md (outside its bad-arguments section) and in the --help
    epilogs is accepted by the parser."""
    import shlex

    from handgrad.reference.cli import build_parser

    commands = _documented_commands()
    assert len(commands) > 20
    for command in commands:
        argv = shlex.split(command.split("   ")[0].split(" | ")[0])[1:]  # drop "handgrad", a remark, a shell pipe
        build_parser().parse_args(argv)


# -- derive --latex and handout: lecture material --------------------------------------------------

def test_derive_latex_is_the_factored_form_in_math_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", "--arch", "2-3-1", "--weight", "w_11^(2)", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "$$\n\\frac{\\partial L}{\\partial w_{11}^{(2)}} = 2(\\hat y - y)\\,\\hat y(1-\\hat y)\\,x_{21}\n$$" in out
    assert main(["derive", "--arch", "2-3-1", "--weight", "w_11^(2)", "--latex", "--expanded"]) == 0
    expanded = capsys.readouterr().out
    assert "$$" in expanded and "expanded" in expanded and "\\left(1 - \\hat y\\right)" in expanded


def test_derive_expanded_needs_latex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", "--arch", "2-3-1", "--expanded"]) == 2
    assert "--expanded goes with --latex" in capsys.readouterr().err


def test_handout_command_writes_the_article_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "handout.md"
    assert main(["handout", "--arch", "2-3-3-1", "--out", str(out)]) == 0
    root = Path(__file__).resolve().parents[1]
    assert out.read_text(encoding="utf-8") == (root / "docs" / "handout.md").read_text(encoding="utf-8")
    assert main(["handout", "--arch", "2-3-3-1", "--loss", "no_such_loss"]) == 2
    assert "no_such_loss" in capsys.readouterr().err


def test_certify_refuses_a_long_run_without_yes(in_tests_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from handgrad.reference.judge.scale import LONG_RUN_SECONDS, estimate_seconds

    args = ["certify", "--backward", "user_backward_example:correct", "--arch", "784-256-128-10",
            "--activation", "sigmoid", "--no-report"]
    assert estimate_seconds((784, 256, 128, 10), 30, 8, ("sympy", "jax", "fd")) > LONG_RUN_SECONDS
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "784-256-128-10 is estimated at" in err and "--yes" in err and err.count("\n") == 1
