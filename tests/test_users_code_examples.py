"""The worked examples of docs/certify-your-backward.md (issue 11, "Done when"): each certifies its
correct code in a few lines and refuses a wrong variant with the diagnosis shown.

The examples live in docs/examples/*.py (runnable scripts); the page's code blocks are verbatim
excerpts of them and its quoted diagnoses are what these tests see.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from handgrad.reference import CertificationError
from handgrad.reference.judge import tolerance

import handgrad as hg

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
PAGE = ROOT / "docs" / "certify-your-backward.md"
FAST = {"examples": 6}  # the traps plus six drawn cases: every failing variant fails on a trap


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"handgrad_docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(certify, code) -> CertificationError:
    with pytest.raises(CertificationError) as info:
        certify(code, **FAST)
    return info.value


def quoted_causes() -> list[str]:
    """The page's quoted 'likely cause:' lines, without their bracketed numbers."""
    return [line.strip().split(" [")[0] for line in PAGE.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("likely cause:")]


def assert_quoted(message: str, start: str) -> None:
    """The page quotes this failure's diagnosis exactly as it is printed."""
    quotes = [q for q in quoted_causes() if q.startswith(start)]
    assert quotes, f"the page quotes no diagnosis starting {start!r}"
    assert all(q in message for q in quotes), (quotes, message)


@pytest.mark.skipif(not getattr(tolerance, "FOLLOWS_DECLARED_LOSS", False),
                    reason="the budget does not follow a declared L2 penalty yet (tolerance.FOLLOWS_DECLARED_LOSS)")
def test_cs231n_two_layer_net_with_l2_is_certified_and_its_slip_diagnosed():
    ex = load("cs231n_two_layer")
    cert = ex.certify(ex.TwoLayerNet(), **FAST)
    assert cert.ok and cert.subject == "TwoLayerNet" and "cross_entropy[l2=0.05]" in cert.text()
    assert cert.decided["labels"] == ["onehot"]  # integer labels are drawn as one-hot cases only
    failure = refused(ex.certify, ex.ForgotTheTwo())
    assert [d.cause for d in failure.report.diagnoses] == ["l2"]
    message = str(failure)
    assert "likely cause: the L2 term has half the declared coefficient (0.05 W instead of 0.1 W)" in message
    assert "y = [" in message and "(integer labels)" in message  # the case as the model received it
    assert_quoted(message, "likely cause: the L2 term")
    assert ex.CONVENTIONS.l2 == ex.REG and ex.CONVENTIONS.l2 not in (0,)
    assert "cross_entropy[l2=0.05]" not in hg.loss_names()  # registered for the call only


def test_torch_layout_mse_loss_is_certified_and_its_slip_diagnosed():
    ex = load("torch_mse")
    cert = ex.certify(ex.backward, **FAST)
    assert cert.ok and "squared_error[mean over 3 outputs]" in cert.text()
    failure = refused(ex.certify, ex.backward_mean_over_batch_only)
    (found,) = failure.report.diagnoses
    assert found.cause == "factor" and found.evidence["factor"] == 3
    message = str(failure)
    assert "disagree on grads['fc1.weight'][" in message and "(the article's w_" in message
    assert "reduction='mean_all' declares their mean" in message
    assert_quoted(message, "likely cause: every tensor (grads['fc1.weight']")


def test_the_articles_net_as_a_class_is_certified_and_its_slip_diagnosed():
    ex = load("article_net")
    cert = ex.certify(ex.ArticleNet(), **FAST)
    assert cert.ok and cert.subject == "ArticleNet"
    failure = refused(ex.certify, ex.TransposedW2())
    assert [d.cause for d in failure.report.diagnoses] == ["transpose"]
    assert failure.report.diagnoses[0].tensors == ("W2",)
    assert_quoted(str(failure), "likely cause: dW2 is the transpose")


def test_a_failure_in_the_users_conventions_is_rebuilt_and_refereed_as_the_page_says():
    # docs: "Reproducing a failure": the declared loss registered, the case rebuilt from the
    # report's recipe, the user's code wrapped; the same mismatch and the same diagnosis.
    from handgrad.reference import build_case, referee  # noqa: F401  (the recipe's names)
    from handgrad.reference.cases.spec import CaseSpec  # noqa: F401
    from handgrad.reference.judge.conventions import declared_loss, registered_loss, wrap_backward

    ex = load("torch_mse")
    report = refused(ex.certify, ex.backward_mean_over_batch_only).report
    recipe = report.reproduce
    assert recipe.startswith("handgrad.reference.build_case(CaseSpec(")
    with registered_loss(declared_loss("squared_error", ex.CONVENTIONS, 3)):
        net, params, X, Y = eval(recipe.removeprefix("handgrad.reference."))  # the report's own line
        again = referee(net, params, X, Y, wrap_backward(ex.backward_mean_over_batch_only, ex.CONVENTIONS, net))
    assert again.verdict == "mismatch" and again.mismatches[0].label == report.mismatches[0].label
    assert [d.sentence for d in again.diagnoses] == [d.sentence for d in report.diagnoses]


def _blocks(page: str) -> list[tuple[str, str]]:
    """(example file, body) of every code block whose first line names a docs/examples file."""
    out = []
    for body in re.findall(r"```python\n(.*?)```", page, flags=re.S):
        first, _, rest = body.partition("\n")
        found = re.fullmatch(r"# (docs/examples/\w+\.py)", first.strip())
        if found:
            out.append((found.group(1), rest))
    return out


def test_the_pages_code_blocks_are_the_tested_examples_verbatim():
    blocks = _blocks(PAGE.read_text(encoding="utf-8"))
    assert {f for f, _ in blocks} == {f"docs/examples/{n}.py" for n in ("cs231n_two_layer", "torch_mse", "article_net")}
    for name, body in blocks:
        source = (ROOT / name).read_text(encoding="utf-8")
        for chunk in re.split(r"^\s*\.\.\.\n", body, flags=re.M):  # a line '...' elides a part of the file
            assert chunk.strip() and chunk in source, f"{name}: not verbatim:\n{chunk}"


def test_a_failure_in_declared_conventions_says_how_to_rebuild_its_declared_loss() -> None:
    from handgrad.reference import Conventions, certify_backward

    import handgrad as hg

    net = hg.Network((3, 4, 2), ["tanh", "identity"], "squared_error")

    def quartered(params, X, Y):  # neither the mean over the 2 outputs nor anything declared
        return {k: v / 4 for k, v in net.backward(params, X, Y).items()}

    cert = certify_backward(quartered, (3, 4, 2), ["tanh", "identity"], "squared_error",
                            conventions=Conventions(reduction="mean_all"), examples=3, raise_on_failure=False)
    assert not cert.ok
    assert ("register the declared loss 'squared_error[mean over 2 outputs]' again" in cert.text()
            and "declared_loss('squared_error', conventions, 2)" in cert.text()), cert.text()
