"""``handgrad certify`` in users' conventions (issue 11 "Done when": the CLI accepts --layout,
--labels, --reduction, --l2, names) and with the certificate's options (--policy, --quorum,
--nondeterminism-tolerance): parsed, checked (one line, exit 2), carried through the job runner and
the process pool, shown under the table and in the report files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from handgrad.reference.cli import main
from handgrad.reference.judge import tolerance
from handgrad.reference.judge.conventions import Conventions

USER_MODULE = "cli_conventions_user"
USER_CODE = textwrap.dedent('''
    """A CS231n-style two-layer net (samples as rows, W1 (D, H), b1 (H,), integer labels) and a
    torch-layout net with MSELoss's mean, written by a user in their own conventions."""
    import numpy as np


    def cs231n(params, X, y, reg=0.0, summed=False):
        W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
        N = X.shape[0]
        h = np.maximum(0, X @ W1 + b1)
        scores = h @ W2 + b2
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        loss = -np.log(probs[np.arange(N), y]).mean() + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        dscores = probs.copy()
        dscores[np.arange(N), y] -= 1
        if not summed:
            dscores /= N
        grads = {"W2": h.T @ dscores + 2 * reg * W2, "b2": dscores.sum(axis=0)}
        dh = dscores @ W2.T
        dh[h <= 0] = 0
        grads["W1"] = X.T @ dh + 2 * reg * W1
        grads["b1"] = dh.sum(axis=0)
        return loss, grads


    def cs231n_summed(params, X, y):
        """Gradients of the SUM over the batch (correct when reduction='sum' is declared)."""
        return cs231n(params, X, y, summed=True)


    def cs231n_l2(params, X, y):
        """The loss with reg * sum W^2 (correct when l2=0.05 is declared)."""
        return cs231n(params, X, y, reg=0.05)


    def torch_mse(params, X, Y):
        W1, b1, W2, b2 = (params[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
        h = np.tanh(X @ W1.T + b1)
        dy = 2 * (h @ W2.T + b2 - Y) / Y.size
        dh = dy @ W2 * (1 - h ** 2)
        return {"fc1.weight": dh.T @ X, "fc1.bias": dh.sum(axis=0), "fc2.weight": dy.T @ h,
                "fc2.bias": dy.sum(axis=0)}


    class ArticleModel:
        """The article's net as a model object: a params dict and backward(X, Y)."""

        def __init__(self):
            self.params = {}

        def backward(self, X, Y):
            p, m = self.params, X.shape[1]
            a = [X]
            for l in (1, 2):
                z = p[f"W{l}"] @ a[-1] + p[f"B{l}"]
                a.append(np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z)))))
            grads, g = {}, 2 * (a[2] - Y) / m
            for l in (2, 1):
                delta = g * a[l] * (1 - a[l])
                grads[f"W{l}"], grads[f"B{l}"] = delta @ a[l - 1].T, delta.sum(axis=1, keepdims=True)
                g = p[f"W{l}"].T @ delta
            return grads


    model = ArticleModel()


    def bce_net(params, X, Y):
        """handgrad's own 3-4-1 tanh/sigmoid BCE backward, as a user's function."""
        import handgrad as hg

        return hg.Network((3, 4, 1), ["tanh", "sigmoid"], "bce").backward(params, X, Y)
''')

CS231N = ["--arch", "4-5-3", "--activation", "relu,softmax", "--loss", "cross_entropy",
          "--layout", "rows", "--names", "W1/b1", "--labels", "integer"]
TORCH = ["--backward", f"{USER_MODULE}:torch_mse", "--arch", "3-4-2", "--activation", "tanh,identity",
         "--layout", "torch", "--names", "fc1.weight/fc1.bias", "--reduction", "mean_all"]
BUDGET_FOLLOWS = getattr(tolerance, "FOLLOWS_DECLARED_LOSS", False)


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the user's module in it, as the current folder (sys.path and sys.modules restored)."""
    (tmp_path / f"{USER_MODULE}.py").write_text(USER_CODE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    if USER_MODULE in sys.modules:
        monkeypatch.delitem(sys.modules, USER_MODULE)
    return tmp_path


def _cs231n(function: str, *extra: str) -> list[str]:
    return ["certify", "--backward", f"{USER_MODULE}:{function}", *CS231N, *extra]


def _one_line_error(err: str, *pieces: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("handgrad certify: error: "), err
    for piece in pieces:
        assert piece in err, err


# -- the conventions reach certify_backward, and the run says what was declared ------------------

def test_cs231n_rows_integer_labels_certify_and_the_report_files_say_so(
        user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(_cs231n("cs231n", "--examples", "2", "--report-dir", str(user_dir)))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "declared: layout rows, names W1/b1, labels integer\n" in out
    assert "CERTIFIED: all 1 subject(s)" in out
    settings = json.loads((user_dir / "handgrad-report.json").read_text())["settings"]
    assert settings["declared"]["conventions"]["layout"] == "rows"
    assert settings["declared"]["conventions"]["labels"] == "integer"
    assert settings["declared"]["policy"] == "textbook" and settings["declared"]["quorum"] == 0.8
    md = (user_dir / "handgrad-report.md").read_text()
    assert "\nDeclared: layout rows, names W1/b1, labels integer.\n" in md


def test_the_report_hash_seals_the_declarations(user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from handgrad.reference.judge.reports import content_hash

    assert main(_cs231n("cs231n", "--examples", "1", "--quiet", "--report-dir", str(user_dir))) == 0
    capsys.readouterr()
    d = json.loads((user_dir / "handgrad-report.json").read_text())
    assert d["sha256"] == content_hash(d)
    d["settings"]["declared"]["conventions"]["layout"] = "columns"
    assert d["sha256"] != content_hash(d)
    assert d["sha256"] in (user_dir / "handgrad-report.md").read_text()


def test_a_sum_over_the_batch_undeclared_is_refused_in_the_users_names_with_its_cause(
        user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(_cs231n("cs231n_summed", "--examples", "2", "--no-report"))
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "NOT CERTIFIED: 1 of 1 subject(s)" in out
    assert "dW1[" in out and "(the article's w_" in out  # the user's name first, the article's beside
    assert "likely cause" in out and "sum over the batch where the mean is expected" in out
    assert "y = [" in out and "(integer labels)" in out  # labels printed as the user passes them


def test_reduction_sum_declared_certifies_or_is_refused_in_one_line(
        user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Until the budget follows reduction='sum' (FOLLOWS_DECLARED_LOSS) the run is refused with
    the reason (exit 2, nothing run); once it does, the summed code certifies."""
    rc = main(_cs231n("cs231n_summed", "--reduction", "sum", "--examples", "2", "--no-report"))
    captured = capsys.readouterr()
    if BUDGET_FOLLOWS:
        assert rc == 0, captured.out
        assert "declared: layout rows, names W1/b1, labels integer, reduction sum" in captured.out
    else:
        assert rc == 2 and captured.out == ""
        _one_line_error(captured.err, "cannot be certified yet", "reduction='sum'", "budget")


def test_l2_declared_certifies_or_is_refused_in_one_line(user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(_cs231n("cs231n_l2", "--l2", "0.05", "--examples", "2", "--no-report"))
    captured = capsys.readouterr()
    if BUDGET_FOLLOWS:
        assert rc == 0, captured.out
        assert "l2 0.05" in captured.out
    else:
        assert rc == 2 and captured.out == ""
        _one_line_error(captured.err, "cannot be certified yet", "l2=0.05")


@pytest.mark.parametrize("declaration", [["--reduction", "sum"], ["--l2", "0.05"]], ids=["sum", "l2"])
def test_a_declared_loss_the_budget_does_not_follow_is_one_line(declaration: list[str], user_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal of ``check_oracles_support`` (the budget not following the declared loss, as
    before it did) is one line and exit 2, before any case."""
    monkeypatch.setattr(tolerance, "FOLLOWS_DECLARED_LOSS", False, raising=False)
    rc = main(_cs231n("cs231n", *declaration, "--no-report"))
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    _one_line_error(captured.err, "cannot be certified yet", "budget", "rescaled after the fact")


def test_torch_layout_with_msellosss_mean_certifies(user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["certify", *TORCH, "--examples", "2", "--no-report"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "declared: layout torch, names fc1.weight/fc1.bias, reduction mean_all" in out


def test_a_model_object_is_certified_through_its_params(user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["certify", "--backward", f"{USER_MODULE}:model", "--arch", "2-3-1", "--activation", "sigmoid",
               "--method", "backward", "--examples", "2", "--no-report"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "CERTIFIED: all 1 subject(s)" in out


def test_the_declarations_are_what_certify_backward_receives(user_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--policy strict, --quorum, --nondeterminism-tolerance and the conventions, as the call's arguments."""
    import handgrad.reference.judge.certify as certify
    from handgrad.reference.judge.tolerance import STRICT_POLICY

    seen: list[dict[str, Any]] = []
    real = certify.certify_backward

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(certify, "certify_backward", spy)
    rc = main(_cs231n("cs231n", "--policy", "strict", "--quorum", "0.5", "--nondeterminism-tolerance", "1e-12",
                      "--examples", "2", "--no-report"))
    out = capsys.readouterr().out
    assert rc == 0, out
    kwargs = seen[0]  # the CLI's call (certify_backward then calls itself in the article's conventions)
    assert kwargs["policy"] == STRICT_POLICY and kwargs["quorum"] == 0.5
    assert kwargs["nondeterminism_tolerance"] == 1e-12
    assert kwargs["conventions"] == Conventions(layout="rows", names="W1/b1", labels="integer")
    assert "declared: layout rows, names W1/b1, labels integer; policy strict, quorum 0.5, " \
           "nondeterminism tolerance 1e-12" in out


def test_declaring_conventions_but_not_labels_draws_every_label_family(
        user_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--names alone (labels left at their default) still draws BCE's exact 0/1 labels, as a run
    without declarations does; only a declared --labels narrows the families."""
    rc = main(["certify", "--backward", f"{USER_MODULE}:bce_net", "--arch", "3-4-1", "--activation", "tanh,sigmoid",
               "--loss", "bce", "--names", "W1/B1", "--examples", "2", "--oracles", "sympy,jax", "--quiet",
               "--report-dir", str(user_dir)])
    assert rc == 0, capsys.readouterr().out
    (cert,) = json.loads((user_dir / "handgrad-report.json").read_text())["subjects"][0]["certificates"]
    assert {"hard", "soft"} <= set(cert["decided"]["labels"])
    capsys.readouterr()
    rc = main(["certify", "--backward", f"{USER_MODULE}:bce_net", "--arch", "3-4-1", "--activation", "tanh,sigmoid",
               "--loss", "bce", "--labels", "binary", "--examples", "2", "--oracles", "sympy,jax", "--quiet",
               "--report-dir", str(user_dir)])
    assert rc == 0, capsys.readouterr().out
    (cert,) = json.loads((user_dir / "handgrad-report.json").read_text())["subjects"][0]["certificates"]
    assert set(cert["decided"]["labels"]) == {"hard"}


def test_the_default_quorum_is_certify_backwards() -> None:
    from handgrad.reference.cli.declarations import DEFAULT_QUORUM
    from handgrad.reference.judge.certify import QUORUM

    assert DEFAULT_QUORUM == QUORUM


# -- the declarations cross the process pool ------------------------------------------------------

def _jobs() -> list[Any]:
    from handgrad.reference.cli.declarations import Declared
    from handgrad.reference.cli.runner import _Job

    conv = Conventions(layout="rows", names="W1/b1", labels="integer")
    declared = Declared(tuple((k, getattr(conv, k)) for k in conv.__dataclass_fields__), "strict", 0.5, 0.0)
    return [_Job(0, f"{USER_MODULE}:cs231n", "backward", (4, 5, 3), ("relu", "softmax"), "cross_entropy", True,
                 "float64", 1, False, 8, ("sympy", "jax"), seed, f"{USER_MODULE}:cs231n", declared)
            for seed in (0, 1)]


def test_a_job_is_plain_values_and_rebuilds_its_conventions() -> None:
    job = _jobs()[0]
    again = pickle.loads(pickle.dumps(job))
    assert again == job
    assert again.declared.rebuild_conventions() == Conventions(layout="rows", names="W1/b1", labels="integer")
    assert again.declared.certify_options()["policy"].level == "strict"


def test_the_declarations_survive_the_process_pool(user_dir: Path) -> None:
    """Two spawned workers load the user's backward by its spec and rebuild the conventions: the
    certificates are those of the same jobs run here."""
    from handgrad.reference.cli.progress import _Progress
    from handgrad.reference.cli.runner import _hypothesis_home, _run_job, _run_parallel

    jobs = _jobs()
    cache = user_dir / "jax-cache"
    with _hypothesis_home():
        pooled = _run_parallel(jobs, 2, [], _Progress(2, None), str(cache))
        here = [_run_job(j) for j in jobs]
    assert any(cache.iterdir()), "the workers kept no compiled function (Note [JAX compilation cache])"
    for a, b in zip(pooled, here, strict=True):
        assert a.ok and b.ok
        assert (a.cases, a.certified, a.architecture) == (b.cases, b.certified, b.architecture)
        assert "cross_entropy" in a.architecture


# -- bad declarations: one line, exit 2, before any case ------------------------------------------

BAD = [
    (["--layout", "rows"], ["--layout declares the conventions of your backward", "--backward"]),
    (["--labels", "onehot", "--losses", "bce"], ["--labels declares"]),
    (["--reduction", "sum", "--half"], ["--reduction, --half declare the conventions"]),
    (["--quorum", "0"], ["--quorum", "(0, 1]"]),
    (["--quorum", "1.5"], ["--quorum", "(0, 1]"]),
    (["--nondeterminism-tolerance", "-1"], ["--nondeterminism-tolerance", ">= 0"]),
    (["--nondeterminism-tolerance", "inf"], ["--nondeterminism-tolerance", "finite"]),
    (["--policy", "lax"], ["--policy", "textbook", "strict"]),
    (["--method", "loss"], ["--method apply to --backward only"]),
]
BAD_WITH_BACKWARD = [
    (["--l2", "-1"], ["--l2 must be a finite number >= 0", "-1"]),
    (["--l2", "nan"], ["--l2 must be a finite number >= 0"]),
    (["--l2", "x"], ["--l2", "invalid float value"]),
    (["--labels", "binary"], ["--labels binary does not fit loss 'cross_entropy'", "bce"]),
    (["--no-bias", "3"], ["--no-bias names layer 3", "layers 1..2"]),
    (["--no-bias", "one"], ["--no-bias takes layer numbers"]),
    (["--half"], ["--half declares the 1/2 of a squared error", "'cross_entropy'"]),
    (["--names", "foo"], ["--names 'foo' is neither a scheme"]),
    (["--names", "a{l},b{x}"], ["--names templates need a {l}"]),
    (["--flat-targets"], ["--flat-targets needs a one-output net", "3 outputs"]),
    (["--method", "grads"], ["--method names the gradient method of a model object"]),
]


@pytest.mark.parametrize(("argv", "pieces"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_declarations_of_the_registry_run(argv: list[str], pieces: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["certify", *argv, "--no-report"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    _one_line_error(captured.err, *pieces)


@pytest.mark.parametrize(("argv", "pieces"), BAD_WITH_BACKWARD, ids=[" ".join(a) for a, _ in BAD_WITH_BACKWARD])
def test_bad_declarations_of_a_users_backward(argv: list[str], pieces: list[str], user_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(_cs231n("cs231n", *argv, "--no-report"))
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    _one_line_error(captured.err, *pieces)


# -- once through the console script ---------------------------------------------------------------

def test_console_script_with_conventions(user_dir: Path) -> None:
    exe = shutil.which("handgrad", path=str(Path(sys.executable).parent)) or shutil.which("handgrad")
    assert exe is not None, "the handgrad console script is not installed (pip install -e .)"
    cache = user_dir / "jax-cache"
    env = {**os.environ, "HANDGRAD_JAX_CACHE": str(cache)}
    run = subprocess.run([exe, *_cs231n("cs231n", "--examples", "1", "--no-report")], capture_output=True,
                         text=True, timeout=600, check=False, cwd=user_dir, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "declared: layout rows, names W1/b1, labels integer" in run.stdout
    assert any(cache.iterdir()), "a command-line run keeps its compiled functions in $HANDGRAD_JAX_CACHE"
    bad = subprocess.run([exe, "certify", "--layout", "rows"], capture_output=True, text=True, timeout=600,
                         check=False, cwd=user_dir)
    assert bad.returncode == 2 and bad.stdout == ""
    _one_line_error(bad.stderr, "--layout declares")
