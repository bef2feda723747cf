r"""Certified derivation handouts: every gradient of a small net, in English or Chinese, Markdown or .tex.

``python -m handgrad.reference.docgen.handout`` writes every committed handout (:data:`HANDOUTS`):
``docs/handout.md`` (the article's 2-3-3-1 sigmoid net, English), ``docs/handout.zh.md`` (the same
in Chinese) and ``docs/handouts/`` (.md and .tex, both languages, for the article's net and other
architectures). ``handgrad handout`` (:mod:`handgrad.reference.docgen.handout_cli`) writes one.

A page follows the article's walk from the output layer down: the notation and forward pass,
then for each layer the per-weight closed forms in factored chain-rule form (the factor passed
down from the layer above, times the local derivative, times the input), the :math:`\partial
L/\partial x` passed to the layer below, and the matrix forms; each with how it was certified.
The formulas come from :class:`~handgrad.reference.docgen.derivation.Derivation`, which checks
every one exactly ([D], [H], [M], [R]; see that module) before a page is returned, and the page
runs the general certificates it cites: **[S]** ``prove_activation`` (and ``prove_fused_rule``),
**[L]** ``prove_layer_rules``, **[N]** ``prove_network``. Generation fails
(:class:`HandoutError`) unless every check passes.

A page is built once as a list of blocks (heading, paragraph, display math, table) and rendered
to Markdown (``$$`` blocks, as GitHub renders them) or to a LaTeX fragment a lecturer can
``\input`` (no preamble; it needs ``amsmath``, ``amssymb`` and ``bm``-free ``\boldsymbol``; the Chinese
fragment needs a CJK setup such as ``ctex`` or ``xeCJK``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import handgrad as hg
from handgrad.notation import element_name

from ..proofs import prove_activation, prove_fused_rule, prove_layer_rules, prove_network
from .derivation import Derivation, DerivationError, Formula, LocalRule, UnsupportedNetwork
from .handout_cli import FORMATS, LANGUAGES  # one definition, where parsing stays light
from .latex import break_formula

__all__ = [
    "DOCS",
    "FORMATS",
    "HANDOUTS",
    "HANDOUT_PATH",
    "LANGUAGES",
    "Formula",
    "HandoutError",
    "HandoutSpec",
    "UnsupportedNetwork",
    "main",
    "render",
    "render_handout",
    "write_all",
    "write_handout",
]

DOCS = Path(__file__).resolve().parents[2] / "docs"
HANDOUT_PATH = DOCS / "handout.md"
"""The article's page (English, Markdown)."""

TEX_WIDTH = 100
"""Characters of LaTeX per line of a broken formula in the .tex handouts."""

HandoutError = DerivationError
"""A formula on the page failed one of its checks: the page is not written."""


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """One piece of a page: ``kind`` is comment, h1, h2, p, math or table."""

    kind: str
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()


def _render_blocks(blocks: Sequence[Block], renderers: Mapping[str, Callable[[Block], list[str]]]) -> str:
    """A page from its blocks: each block's lines by the renderer of its kind, then a blank line."""
    lines: list[str] = []
    for b in blocks:
        lines += renderers[b.kind](b)
        lines.append("")
    return "\n".join(lines)


def _md_table(b: Block) -> list[str]:
    head, *body = b.rows
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]


_MD_RENDERERS: dict[str, Callable[[Block], list[str]]] = {
    "comment": lambda b: [f"<!-- {b.text} -->"],
    "h1": lambda b: [f"# {b.text}"],
    "h2": lambda b: [f"## {b.text}"],
    "p": lambda b: [b.text],
    "math": lambda b: ["$$", b.text, "$$"],
    "table": _md_table,
}
"""Markdown, per block kind (math in ``$$`` blocks, which GitHub renders)."""


def _md(blocks: Sequence[Block]) -> str:
    return _render_blocks(blocks, _MD_RENDERERS)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{",
                "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "$": r"\$"}
_INLINE = re.compile(r"\$(?P<math>[^$]+)\$|\*\*(?P<bold>.+?)\*\*|\*(?P<em>[^*]+)\*|`(?P<code>[^`]+)`"
                     r"|\[(?P<link>[^\]]+)\]\((?P<href>[^)]+)\)")


def _tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text)


def _tex_inline(text: str) -> str:
    """The Markdown subset the pages use, as LaTeX: $math$, **bold**, *emphasis*, `code`, [links](href)."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_tex_escape(text[pos:m.start()]))
        if m["math"] is not None:
            out.append(f"${m['math']}$")
        elif m["bold"] is not None:
            out.append(r"\textbf{" + _tex_inline(m["bold"]) + "}")
        elif m["em"] is not None:
            out.append(r"\emph{" + _tex_inline(m["em"]) + "}")
        elif m["code"] is not None:
            out.append(r"\texttt{" + _tex_escape(m["code"]) + "}")
        else:
            out.append(_tex_inline(m["link"]) + r" (\texttt{" + _tex_escape(m["href"]) + "})")
        pos = m.end()
    out.append(_tex_escape(text[pos:]))
    return "".join(out)


def _tex_table(b: Block) -> list[str]:
    head, *body = b.rows
    return [r"\begin{tabular}{p{0.08\linewidth}p{0.55\linewidth}p{0.3\linewidth}}",
            *(" & ".join(_tex_inline(c) for c in r) + r" \\" for r in (head, *body)), r"\end{tabular}"]


_TEX_RENDERERS: dict[str, Callable[[Block], list[str]]] = {
    "comment": lambda b: [f"% {b.text}",
                          "% Needs amsmath and amssymb; \\input it inside a document (xeCJK or ctex for Chinese)."],
    "h1": lambda b: [r"\section*{" + _tex_inline(b.text) + "}"],
    "h2": lambda b: [r"\subsection*{" + _tex_inline(b.text) + "}"],
    "p": lambda b: [_tex_inline(b.text)],
    "math": lambda b: [r"\begin{equation*}", break_formula(b.text, TEX_WIDTH), r"\end{equation*}"],
    "table": _tex_table,
}
"""LaTeX, per block kind (a fragment to ``\\input``; long formulas broken by :func:`break_formula`)."""


def _tex(blocks: Sequence[Block]) -> str:
    return _render_blocks(blocks, _TEX_RENDERERS)


# ---------------------------------------------------------------------------------------------
# What to write
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HandoutSpec:
    """A network to write a handout for: sizes, activations (one per layer), loss, fuse."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str = "squared_error"
    fuse: bool = True

    def network(self) -> hg.Network:
        return hg.Network(self.sizes, list(self.activations), self.loss, fuse=self.fuse)

    @property
    def slug(self) -> str:
        acts = self.activations
        act = acts[0] if len(set(acts)) == 1 else "-".join(acts)
        fused = "" if self.fuse or hg.get_loss(self.loss).fused.get(acts[-1]) is None else "-unfused"
        return f"{'-'.join(map(str, self.sizes))}-{act}-{self.loss}{fused}"

    @classmethod
    def of(cls, net: hg.Network) -> HandoutSpec:
        return cls(net.sizes, tuple(a.name for a in net.activations), net.loss.name, net.fuse)


ARTICLE = HandoutSpec((2, 3, 3, 1), ("sigmoid",) * 3)


def _is_article(spec: HandoutSpec) -> bool:
    return spec == ARTICLE


@dataclass(frozen=True)
class _Committed:
    spec: HandoutSpec
    lang: str
    fmt: str
    path: Path


def _committed() -> tuple[_Committed, ...]:
    specs = (ARTICLE, HandoutSpec((2, 4, 4, 1), ("tanh", "tanh", "sigmoid"), "bce"),
             HandoutSpec((2, 3, 2), ("relu", "softmax"), "cross_entropy"),
             HandoutSpec((3, 3, 1), ("gelu", "gelu"), "squared_error"))
    out = [_Committed(ARTICLE, "en", "md", HANDOUT_PATH), _Committed(ARTICLE, "zh", "md", DOCS / "handout.zh.md")]
    for spec in specs:
        for lang in LANGUAGES:
            for fmt in FORMATS:
                if spec == ARTICLE and fmt == "md":
                    continue
                out.append(_Committed(spec, lang, fmt, DOCS / "handouts" / f"{spec.slug}.{lang}.{fmt}"))
    return tuple(out)


HANDOUTS = _committed()
"""Every committed handout: the article's net and three others, md and tex, en and zh."""


# ---------------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------------

def _join(items: Sequence[str], sep: str, last: str) -> str:
    return items[0] if len(items) == 1 else sep.join(items[:-1]) + last + items[-1]


@dataclass
class _Words:
    """The page's prose in one language (the English strings reproduce the article's page)."""

    lang: str
    t: dict[str, str] = field(default_factory=dict)


_EN = {
    "generated": "Generated by `python -m handgrad.reference.docgen.handout`; do not edit by hand. "
                 "tests/test_handout.py checks that this page is what the generator produces.",
    "title_article": "The article's network, gradient by gradient",
    "title": "The {arch} {acts} network, gradient by gradient",
    "intro": "Every partial derivative of {the_net}, weight by weight, in the article's notation, followed by the "
             "matrix forms. Every formula on this page was checked exactly when the page was generated (legend at "
             "the end); none is typed by hand.",
    "the_article_net": "the article's {arch} {acts} network with {loss}",
    "the_net": "the {arch} {acts} network with {loss}",
    "notation": "Notation and forward pass",
    "input": "Input $x = ({xs})^T$",
    "hidden": "hidden activations {list}", "hidden1": "hidden activation {list}",
    "and": " and ",
    "output1": "output $\\hat y$, label $y$", "outputn": "output $\\hat y = ({ys})^T$, label $y = ({ls})^T$",
    "weights": "$w_{{ij}}^{{(l)}}$ is the weight from unit $j$ of $x^{{(l)}}$ to unit $i$ of the next layer "
               "(element `W{{l}}[i-1, j-1]` in code), $b_i^{{(l)}}$ the bias.",
    "loss_is": "and the loss of one sample is $L = {loss}$, so",
    "labels_sum": " (labels summing to 1)",
    "labels_note": "The labels of a sample sum to 1",
    "why": "which is why the factor ${factor}$ appears wherever a {name} is crossed",
    "cert_rules": "*Certified:* the {names} {rule} by **[S]**", "rule": "rule", "rules": "rules",
    "cert_head": ", the head by **[D]** and **[S]**",
    "output_layer": "Output layer", "hidden_layer": "{ordinal} hidden layer",
    "lead_out1": "Only $\\hat y$ depends on $w_{{1i}}^{{({L})}}$ and $b_1^{{({L})}}$:",
    "lead_outn": "Only $\\hat y_i$ depends on $w_{{ij}}^{{({L})}}$ and $b_i^{{({L})}}$:",
    "lead_fused": "$w_{{ij}}^{{({L})}}$ and $b_i^{{({L})}}$ reach the loss only through $z_i^{{({L})}}$ (every "
                  "$\\hat y_k$ depends on it), and the fused head gives "
                  "$\\partial L/\\partial z_i^{{({L})}}$ directly:",
    "lead_last": "$w_{{ij}}^{{({l})}}$ reaches the loss only through ${x}$, and ${x}$ through {outs}:",
    "lead_deep": "$w_{{ij}}^{{({l})}}$ reaches the loss through ${x}$, which feeds {feeds}; everything before "
                 "{before} is $\\partial L/\\partial {x}$:",
    "feeds1": "${a}$", "feeds2": "both of ${a}$", "feedsn": "all {n} of ${a}$",
    "before_factor": "${factor}$", "before_input": "the input $x_{{{l}j}}$",
    "mark": "*Certified:* {marks} exact, for every weight above{rule}.",
    "mark_rule": "; the rule ${factor}$ by **[S]**", "mark_head": "; the head ${head}$ by **[D]** and **[S]**",
    "passed": "Passed down to the layer below:",
    "passed_cert": "*Certified:* **[M]** equal to the entries of the matrix form "
                   "$\\partial L/\\partial \\boldsymbol x^{{({l})}}$ below, and **[L]** ($W^T$ rule) for every size; "
                   "each is the factor the layer below multiplies.",
    "matrix": "Matrix form:",
    "matrix_cert": "*Certified:* **[M]** equal entry by entry to the per-weight forms above, and **[L]** for every "
                   "layer size.",
    "batches": "Batches",
    "batch_text": "Over a batch of $m$ samples (columns of $X$) handgrad's loss is the mean "
                  "$L = \\frac1m\\sum_{{k=1}}^m {loss_k}$, the article's batch gradient descent; every gradient above "
                  "becomes the mean of its per-sample value, and in matrix "
                  "form $\\partial L/\\partial \\mathbf B^{{(l)}}$ "
                  "sums the per-sample columns ($\\delta\\,\\mathbf 1_m$). *Certified:* **[N]** (with $m = 2$) and "
                  "**[L]** (any $m$).",
    "legend": "How each formula was certified",
    "th": "mark|what was shown|where",
    "D": "the formula equals SymEngine's derivative of the composite loss $L = {composite}$, {undefined} "
         "(expand of the difference is 0){fused}",
    "undefined1": "${f}$ an undefined function with ${rule}$",
    "undefinedn": "{fs} undefined functions with {rules}",
    "D_fused": "; the fused head is taken at its linearization in $z^{{({L})}}$ (exact for first derivatives) and "
               "its $\\partial\\ell/\\partial z^{{({L})}}$ is shown equal "
               "to SymPy's derivative of $\\ell(f_{L}(z), y)${labels}",
    "D_where": "`python -m handgrad.reference.docgen.handout`, `tests/test_handout.py`",
    "H": "the formula equals what handgrad's own `Network.backward_unchecked` computes on symbols for this net "
         "(activations opaque, {rules})",
    "H_skip": "not run for this net: handgrad's `{loss}` gradient validates numbers and does not run on symbols "
              "(**[N]** proves the same backward)",
    "same": "same",
    "M": "the matrix forms, evaluated on matrices of symbols, equal the per-weight forms entry by entry",
    "R": "each displayed local rule ({rules}) equals SymPy's derivative of the activation's shared definition, "
         "for $u > 0$ and for $u < 0$",
    "S": "handgrad's hand-written {name} derivative equals $\\frac{{d}}{{dz}}{f}$ exactly, branch by branch "
         "($z<0$, $z>0$, $z=0$), i.e. ${rule}$",
    "S_many": "handgrad's hand-written {names} derivatives equal the derivatives of their definitions exactly, "
              "branch by branch ($z<0$, $z>0$, $z=0$): {rules}",
    "S_fused": "; the fused rule's $\\partial\\ell/\\partial z$ equals the derivative of its definition, and its "
               "definition equals the loss composed with the activation",
    "S_where_article": "`prove_activation(\"sigmoid\")`, `tests/test_proof.py::test_activation_rule_is_proved`",
    "L": "the layer rules $\\partial L/\\partial W = \\delta a^T$, $\\partial L/\\partial B = \\delta\\mathbf 1$, "
         "$\\partial L/\\partial a = W^T\\delta$, $\\delta = \\partial L/\\partial a \\odot f'(z)$ for symbolic sizes",
    "L_where": "`prove_layer_rules()`, `tests/test_proof.py::test_layer_rules_for_all_sizes`",
    "N_article": "handgrad's backward for this architecture equals the derivative of the composite loss for every "
                 "choice of activation (deterministic, SymEngine)",
    "N_article_where": "`prove_network(article_network())`, `tests/test_proof.py::test_article_network_symbolic`",
    "N": "handgrad's backward for this network equals the derivative of the composite loss over a batch of 2, for "
         "every parameter (method: {method}, run when this page was generated)",
    "see": "See [exact-certificates.md]({prefix}exact-certificates.md) for how the proofs work.",
    "ordinals": "First|Second|Third|Fourth|Fifth|Sixth|Seventh|Eighth|Ninth",
    "numbers": "one|two|three|four|five|six|seven|eight|nine|ten",
    "loss_squared_error": "squared-error loss", "loss_bce": "binary cross-entropy",
    "loss_bce_fused": "binary cross-entropy (fused with the sigmoid)",
    "loss_cross_entropy_fused": "softmax cross-entropy (fused)",
    "act_sigmoid": "$\\sigma(u) = 1/(1+e^{-u})$ is the sigmoid (the article writes $\\delta(u)$)",
    "act_tanh": "$\\tanh u$ is the hyperbolic tangent",
    "act_identity": "the identity $f(u) = u$ leaves its layer linear",
    "act_relu": "$\\operatorname{relu}(u) = \\max(u, 0)$ is the ReLU (derivative 0 at $u = 0$)",
    "act_elu": "$\\operatorname{elu}(u) = u$ for $u > 0$, $e^u - 1$ otherwise, is the ELU",
    "act_softplus": "$\\operatorname{softplus}(u) = \\log(1+e^u)$",
    "act_silu": "$\\operatorname{silu}(u) = u\\,\\sigma(u)$ is the SiLU",
    "act_gelu": "$\\operatorname{gelu}(u) = u\\,\\Phi(u)$ is the GELU ($\\Phi$ the standard normal distribution "
                "function, $\\varphi$ its density)",
    "act_softmax": "$\\hat y_i = e^{z_i}/\\sum_k e^{z_k}$ is the softmax of the last layer",
}

_ZH = {
    "generated": "由 `python -m handgrad.reference.docgen.handout` 生成，请勿手工编辑；"
                 "tests/test_handout.py 检查本页与生成器的输出一致。",
    "title_article": "原文网络的反向传播：逐个权重的梯度",
    "title": "{arch} {acts} 网络的反向传播：逐个权重的梯度",
    "intro": "下面按原文的记号逐个写出{the_net}对每个权重和偏置的偏导数，再给出矩阵形式。"
             "本页每个公式都在生成时经过精确验证（图例见文末），没有一个是手工输入的。",
    "the_article_net": "原文的 {arch} {acts} 网络（{loss}）",
    "the_net": "{arch} {acts} 网络（{loss}）",
    "notation": "记号与正向传播",
    "input": "输入 $x = ({xs})^T$",
    "hidden": "隐藏层输出 {list}", "hidden1": "隐藏层输出 {list}",
    "and": " 和 ",
    "output1": "网络输出 $\\hat y$，标签 $y$", "outputn": "网络输出 $\\hat y = ({ys})^T$，标签 $y = ({ls})^T$",
    "weights": "$w_{{ij}}^{{(l)}}$ 是从 $x^{{(l)}}$ 的第 $j$ 个单元到下一层第 $i$ 个单元的权重"
               "（代码中的 `W{{l}}[i-1, j-1]`），$b_i^{{(l)}}$ 是偏置。",
    "loss_is": "单个样本的损失函数为 $L = {loss}$，因此",
    "labels_sum": "（标签之和为 1）",
    "labels_note": "每个样本的标签之和为 1",
    "why": "所以每经过一个 {name}，链式法则就乘上一个因子 ${factor}$",
    "cert_rules": "*验证*：{names}的导数规则由 **[S]** 证明", "rule": "", "rules": "",
    "cert_head": "，输出端的梯度由 **[D]** 和 **[S]** 验证",
    "output_layer": "输出层", "hidden_layer": "第{ordinal}个隐藏层",
    "lead_out1": "只有 $\\hat y$ 依赖于 $w_{{1i}}^{{({L})}}$ 和 $b_1^{{({L})}}$：",
    "lead_outn": "只有 $\\hat y_i$ 依赖于 $w_{{ij}}^{{({L})}}$ 和 $b_i^{{({L})}}$：",
    "lead_fused": "$w_{{ij}}^{{({L})}}$ 和 $b_i^{{({L})}}$ 只通过 "
                  "$z_i^{{({L})}}$ 影响损失函数（每个 $\\hat y_k$ 都依赖于它），"
                  "融合的输出端直接给出 $\\partial L/\\partial z_i^{{({L})}}$：",
    "lead_last": "$w_{{ij}}^{{({l})}}$ 只通过 ${x}$ 影响损失函数，而 ${x}$ 通过 {outs} 影响损失函数：",
    "lead_deep": "$w_{{ij}}^{{({l})}}$ 通过 ${x}$ 影响损失函数，而 ${x}$ 同时输入到 {feeds}；"
                 "{before} 之前的部分就是 $\\partial L/\\partial {x}$：",
    "feeds1": "${a}$", "feeds2": "${a}$ 两个单元", "feedsn": "${a}$ 这 {n} 个单元",
    "before_factor": "${factor}$", "before_input": "输入 $x_{{{l}j}}$",
    "mark": "*验证*：{marks} 对上面每个权重精确成立{rule}。",
    "mark_rule": "；导数规则 ${factor}$ 由 **[S]** 证明", "mark_head": "；输出端梯度 ${head}$ 由 "
                                                               "**[D]** 和 **[S]** 验证",
    "passed": "传递给下一层的梯度：",
    "passed_cert": "*验证*：与下面矩阵形式 $\\partial L/\\partial \\boldsymbol x^{{({l})}}$ 的各分量相等（**[M]**），"
                   "$W^T$ 规则对任意尺寸成立（**[L]**）；下一层的每个梯度都要乘上这些因子。",
    "matrix": "矩阵形式：",
    "matrix_cert": "*验证*：与上面逐个权重的公式逐元素相等（**[M]**），对任意层宽成立（**[L]**）。",
    "batches": "批量数据",
    "batch_text": "对 $m$ 个样本组成的一批数据（$X$ 的各列），handgrad 的损失函数取平均 "
                  "$L = \\frac1m\\sum_{{k=1}}^m {loss_k}$，即原文的批量梯度下降；上面每个梯度都变为各样本梯度的平均值，"
                  "矩阵形式中 $\\partial L/\\partial \\mathbf B^{{(l)}}$ 对各样本的列求和（$\\delta\\,\\mathbf 1_m$）。"
                  "*验证*：**[N]**（$m = 2$）和 **[L]**（任意 $m$）。",
    "legend": "每个公式的验证方式",
    "th": "标记|验证内容|位置",
    "D": "公式等于 SymEngine 对复合损失函数 $L = {composite}$ 求出的导数，{undefined}（差展开后为 0）{fused}",
    "undefined1": "其中 ${f}$ 是未定义函数，导数取 ${rule}$",
    "undefinedn": "其中 {fs} 是未定义函数，导数分别取 {rules}",
    "D_fused": "；融合的输出端在 $z^{{({L})}}$ 处线性化（对一阶导数精确），其 $\\partial\\ell/\\partial z^{{({L})}}$ "
               "与 SymPy 对 $\\ell(f_{L}(z), y)$ 求出的导数相等{labels}",
    "D_where": "`python -m handgrad.reference.docgen.handout`，`tests/test_handout.py`",
    "H": "公式等于 handgrad 自己的 `Network.backward_unchecked` 在符号上算出的结果（激活函数不透明，{rules}）",
    "H_skip": "本网络不适用：handgrad 的 `{loss}` 梯度会检查数值范围，不能在符号上运行（**[N]** 证明了同一个反向传播）",
    "same": "同上",
    "M": "矩阵形式在符号矩阵上求值，与逐个权重的公式逐元素相等",
    "R": "每个局部导数规则（{rules}）等于 SymPy 对激活函数定义求出的导数，$u > 0$ 与 $u < 0$ 两侧分别验证",
    "S": "handgrad 手写的 {name} 导数与 $\\frac{{d}}{{dz}}{f}$ "
         "精确相等，逐个分支验证（$z<0$、$z>0$、$z=0$），即 ${rule}$",
    "S_many": "handgrad 手写的 {names} 导数与其定义的导数精确相等，逐个分支验证（$z<0$、$z>0$、$z=0$）：{rules}",
    "S_fused": "；融合规则的 $\\partial\\ell/\\partial z$ 等于其定义的导数，且其定义等于损失函数与激活函数的复合",
    "S_where_article": "`prove_activation(\"sigmoid\")`，`tests/test_proof.py::test_activation_rule_is_proved`",
    "L": "层规则 $\\partial L/\\partial W = \\delta a^T$、$\\partial L/\\partial B = \\delta\\mathbf 1$、"
         "$\\partial L/\\partial a = W^T\\delta$、$\\delta = \\partial L/\\partial a \\odot f'(z)$ 对符号尺寸成立",
    "L_where": "`prove_layer_rules()`，`tests/test_proof.py::test_layer_rules_for_all_sizes`",
    "N_article": "对这个结构，无论选择哪种激活函数，handgrad "
                 "的反向传播都等于复合损失函数的导数（确定性方法，SymEngine）",
    "N_article_where": "`prove_network(article_network())`，`tests/test_proof.py::test_article_network_symbolic`",
    "N": "对 2 个样本的批量，handgrad "
         "对本网络的反向传播对每个参数都等于复合损失函数的导数（方法：{method}，生成本页时运行）",
    "see": "证明方法见 [exact-certificates.md]({prefix}exact-certificates.md)。",
    "ordinals": "一|二|三|四|五|六|七|八|九",
    "numbers": "一|二|三|四|五|六|七|八|九|十",
    "loss_squared_error": "平方误差损失", "loss_bce": "二元交叉熵损失",
    "loss_bce_fused": "二元交叉熵损失，与 sigmoid 融合",
    "loss_cross_entropy_fused": "softmax 交叉熵损失，融合",
    "act_sigmoid": "$\\sigma(u) = 1/(1+e^{-u})$ 是 sigmoid 函数（原文记作 $\\delta(u)$）",
    "act_tanh": "$\\tanh u$ 是双曲正切函数",
    "act_identity": "恒等函数 $f(u) = u$ 使该层保持线性",
    "act_relu": "$\\operatorname{relu}(u) = \\max(u, 0)$ 是 ReLU 函数（在 $u = 0$ 处导数取 0）",
    "act_elu": "$\\operatorname{elu}(u)$ 在 $u > 0$ 时为 $u$，否则为 $e^u - 1$",
    "act_softplus": "$\\operatorname{softplus}(u) = \\log(1+e^u)$",
    "act_silu": "$\\operatorname{silu}(u) = u\\,\\sigma(u)$ 是 SiLU 函数",
    "act_gelu": "$\\operatorname{gelu}(u) = u\\,\\Phi(u)$ 是 "
                "GELU 函数（$\\Phi$ 为标准正态分布函数，$\\varphi$ 为其密度）",
    "act_softmax": "$\\hat y_i = e^{z_i}/\\sum_k e^{z_k}$ 是最后一层的 softmax",
}

_TEXTS = {"en": _EN, "zh": _ZH}
_PUNCT = {"en": {"sep": ", ", "semi": "; ", "colon": ":", "stop": "."},
          "zh": {"sep": "、", "semi": "；", "colon": "：", "stop": "。"}}


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

_Entry = tuple[str, Formula, str, tuple[int, int]]


def _lhs(name: str) -> str:
    return f"\\frac{{\\partial L}}{{\\partial {name}}}"


class _Page:
    """Builds the blocks of one handout; the checks are collected as the formulas are laid out."""

    def __init__(self, spec: HandoutSpec, lang: str, link_prefix: str,
                 dw: Callable[[int, int, int], Formula] | None) -> None:
        self.spec, self.lang, self.prefix = spec, lang, link_prefix
        self.T, self.P = _TEXTS[lang], _PUNCT[lang]
        self.net = spec.network()
        self.d = Derivation(self.net)
        self.dw = dw or self.d.dl_dw
        self.L, self.sizes = self.d.L, self.d.sizes
        self.checks: list[_Entry] = []
        self.passed: list[_Entry] = []
        self.article = _is_article(spec)

    # -- helpers ------------------------------------------------------------------------------

    def t(self, key: str, **kw: object) -> str:
        return self.T[key].format(**kw)

    def acts_used(self) -> list[str]:
        """Distinct activations whose local rule appears (not a fused last layer's)."""
        names: list[str] = []
        for l, act in enumerate(self.net.activations, start=1):
            if l == self.L and self.d.head.fused:
                continue
            if act.name not in names:
                names.append(act.name)
        return names

    def rule(self, name: str) -> LocalRule:
        return next(r for r in self.d.rules if r is not None and r.activation == name)

    def displayed_rules(self) -> list[str]:
        return [a for a in self.acts_used() if self.rule(a).factor("x", "z")]

    def net_words(self) -> str:
        acts = [a.name for a in self.net.activations]
        act = acts[0] if len(set(acts)) == 1 else "/".join(acts)
        loss = self.net.loss.name
        key = f"loss_{loss}_fused" if self.d.head.fused else f"loss_{loss}"
        kind = "the_article_net" if self.article else "the_net"
        return self.t(kind, arch="-".join(map(str, self.sizes)), acts=act, loss=self.t(key))

    # -- sections -----------------------------------------------------------------------------

    def blocks(self) -> list[Block]:
        acts = [a.name for a in self.net.activations]
        act = acts[0] if len(set(acts)) == 1 else "/".join(acts)
        title = self.t("title_article") if self.article else \
            self.t("title", arch="-".join(map(str, self.sizes)), acts=act)
        out = [Block("comment", self.t("generated")), Block("h1", title),
               Block("p", self.t("intro", the_net=self.net_words())), Block("h2", self.t("notation"))]
        out += self.forward()
        for l in range(self.L, 0, -1):
            out += self.layer(l)
        out += self.batches()
        out += self.legend()
        return out

    def _unit_list(self, l: int) -> str:
        """x^(l) = (x_{l1}, ...)^T, the outputs of layer l-1."""
        units = ", ".join(self.d.inp(l, i).tex for i in range(1, self.sizes[l - 1] + 1))
        return f"$x^{{({l})}} = ({units})^T$"

    def forward(self) -> list[Block]:
        d, T, P = self.d, self.t, self.P
        xs = ", ".join(d.inp(1, j).tex for j in range(1, self.sizes[0] + 1))
        parts = [T("input", xs=xs)]
        hidden = [self._unit_list(l) for l in range(2, self.L + 1)]
        if hidden:
            key = "hidden" if len(hidden) > 1 else "hidden1"
            parts.append(T(key, list=_join(hidden, ", ", self.t("and"))))
        if d.n_out == 1:
            parts.append(T("output1"))
        else:
            ys = ", ".join(d.yhat(k).tex for k in range(1, d.n_out + 1))
            ls = ", ".join(d.label(k).tex for k in range(1, d.n_out + 1))
            parts.append(T("outputn", ys=ys, ls=ls))
        acts = []
        for act in self.net.activations:
            if act.name not in acts:
                acts.append(act.name)
        act_text = P["semi"].join(self.T[f"act_{a}"] for a in acts)
        para = P["sep"].join(parts) + P["stop"] + " " + T("weights") + " " + act_text + P["colon"]
        if self.lang == "zh":
            para = P["sep"].join(parts) + P["stop"] + T("weights") + act_text + P["colon"]
        eqs = [self.forward_eq(l) for l in range(1, self.L + 1)]
        heads = self.head_eq()
        rules = [f"{self.rule(a).symbol}'(u) = {self.rule(a).rule_tex}" for a in self.displayed_rules()]
        why = [self.t("why", factor=self.rule(a).factor("x", "z"), name=self.rule(a).words[self.lang])
               for a in self.displayed_rules()]
        names = [self.rule(a).words[self.lang] for a in self.displayed_rules()]
        cert = ""
        if names:
            cert = self.t("cert_rules", names=_join(names, ", ", self.t("and")),
                          rule=self.t("rule") if len(names) == 1 else self.t("rules"))
        if self.d.head.fused:
            cert += self.t("cert_head")
        parts_ = []
        if why:
            parts_.append(P["semi"].join(why) + P["stop"])
        if self.d.head.labels_sum_to_one:
            parts_.append(self.t("labels_note") + P["stop"])
        if cert:
            parts_.append(cert + P["stop"])
        tail = ("" if self.lang == "zh" else " ").join(parts_)
        return [Block("p", para), Block("math", ",\\quad ".join(eqs) + ","),
                Block("p", self.t("loss_is", loss=self.d.head.loss_tex)),
                Block("math", ",\\qquad ".join([heads, *rules]) + ","),
                Block("p", tail)]

    def head_eq(self) -> str:
        d = self.d
        if d.head.fused:
            k: int | str = 1 if d.n_out == 1 else "k"
            return f"{_lhs(d.z_tex(self.L, k))} = {d.head.first(k).tex}"  # type: ignore[arg-type]
        if d.n_out == 1:
            return f"{_lhs(d.yhat(1).tex)} = {d.head.first(1).tex}"
        return f"{_lhs(d.yhat('k').tex)} = {d.head.first('k').tex}"  # type: ignore[arg-type]

    def forward_eq(self, l: int) -> str:
        d = self.d
        n_in = self.sizes[l - 1]
        out_single = l == self.L and d.n_out == 1
        i = "1" if out_single else "i"
        lhs = r"\hat y" if out_single else (r"\hat y_i" if l == self.L else f"x_{{{l + 1}i}}")
        if n_in <= 2:
            terms = [f"w_{{{i}{j}}}^{{({l})}} {d.inp(l, j).tex}" for j in range(1, n_in + 1)]
            arg, big = " + ".join(terms) + f" + b_{i}^{{({l})}}", ("\\big(", "\\big)")
        else:
            arg = f"\\sum_{{j=1}}^{{{n_in}}} w_{{{i}j}}^{{({l})}} x_{{{l}j}} + b_{i}^{{({l})}}"
            big = ("\\Big(", "\\Big)")
        act = self.net.activations[l - 1].name
        if act == "identity":
            return f"{lhs} = {arg}"
        if act == "softmax":
            return f"{lhs} = \\frac{{e^{{z_i^{{({l})}}}}}}{{\\sum_k e^{{z_k^{{({l})}}}}}},\\ z_i^{{({l})}} = {arg}"
        return f"{lhs} = {self.rule(act).symbol}{big[0]}{arg}{big[1]}"

    def layer(self, l: int) -> list[Block]:
        d, T = self.d, self.t
        if l == self.L:
            title = T("output_layer")
            key = "lead_fused" if d.head.fused and d.n_out > 1 else "lead_out1" if d.n_out == 1 else "lead_outn"
            lead = T(key, L=l)
        else:
            ordinal = self.T["ordinals"].split("|")[l - 1] if l <= 9 else str(l)
            title = T("hidden_layer", ordinal=ordinal)
            x = f"x_{{{l + 1}i}}"
            if l + 1 == self.L:
                outs = (r"$\hat y$" if d.n_out == 1 else
                        "$" + ", ".join(d.yhat(k).tex for k in range(1, d.n_out + 1)) + "$")
                lead = T("lead_last", l=l, x=x, outs=outs)
            else:
                n = self.sizes[l + 1]
                a = ", ".join(d.inp(l + 2, k).tex for k in range(1, n + 1))
                numbers = self.T["numbers"].split("|")
                feeds = (T("feeds1", a=a) if n == 1 else T("feeds2", a=a) if n == 2 else
                         T("feedsn", a=a, n=numbers[n - 1] if n <= 10 else n))
                factor = self.rule(self.net.activations[l - 1].name).factor(x, f"z_i^{{({l})}}")
                before = T("before_factor", factor=factor) if factor else T("before_input", l=l)
                lead = T("lead_deep", l=l, x=x, feeds=feeds, before=before)
        out = [Block("h2", title), Block("p", lead)]
        out += self.weights(l)
        out.append(Block("p", self.mark(l)))
        if l > 1:
            out.append(Block("p", T("passed")))
            for k in range(1, self.sizes[l - 1] + 1):
                var, f = d.inp(l, k), d.dl_dout(l - 1, k, standalone=True)
                out.append(Block("math", f"{_lhs(var.tex)} = {f.tex}"))
                self.passed.append((f"dL/d{var.tex}", f, f"x{l}", (k - 1, 0)))
            out.append(Block("p", T("passed_cert", l=l)))
        out.append(Block("p", T("matrix")))
        out += [Block("math", tex) for tex in self.matrix(l)]
        out.append(Block("p", T("matrix_cert")))
        return out

    def weights(self, l: int) -> list[Block]:
        out = []
        n, nprev = self.sizes[l], self.sizes[l - 1]
        for i in range(1, n + 1):
            for j in range(1, nprev + 1):
                f = self.dw(l, i, j)
                out.append(Block("math", f"{_lhs(self.d.w(l, i, j).tex)} = {f.tex}"))
                self.checks.append((element_name(f"W{l}", (i - 1, j - 1)), f, f"W{l}", (i - 1, j - 1)))
        for i in range(1, n + 1):
            f = self.d.dl_db(l, i)
            out.append(Block("math", f"{_lhs(self.d.b(l, i).tex)} = {f.tex}"))
            self.checks.append((element_name(f"B{l}", (i - 1, 0)), f, f"B{l}", (i - 1, 0)))
        return out

    def marks(self) -> str:
        return "**[D]** **[H]**" if self.h_runs else "**[D]**"

    def mark(self, l: int) -> str:
        if l == self.L and self.d.head.fused:
            k: int | str = 1 if self.d.n_out == 1 else "k"
            rule = self.t("mark_head", head=self.d.head.first(k).tex)  # type: ignore[arg-type]
        else:
            factor = self.rule(self.net.activations[l - 1].name).factor("x", "z")
            rule = self.t("mark_rule", factor=factor) if factor else ""
        return self.t("mark", marks=self.marks(), rule=rule)

    # -- matrix forms -------------------------------------------------------------------------

    def vec(self, l: int) -> str:
        """The column vector that is the output of layer l-1 (input of layer l); l = L+1: the output."""
        if l == self.L + 1:
            return r"\hat y" if self.d.n_out == 1 else r"\hat{\boldsymbol y}"
        return r"\boldsymbol x" if l == 1 else f"\\boldsymbol x^{{({l})}}"

    def vec_t(self, l: int) -> str:
        return r"\boldsymbol x^{T}" if l == 1 else f"\\boldsymbol x^{{({l})T}}"

    def delta(self, l: int) -> tuple[str, bool, bool]:
        """LaTeX of dL/dz^(l), whether it is a scalar (one output, output layer), whether atomic."""
        d = self.d
        scalar = l == self.L and d.n_out == 1
        if l == self.L and d.head.fused:
            return (r"(\hat y - y)" if scalar else r"(\hat{\boldsymbol y} - \boldsymbol y)"), scalar, True
        g = _lhs(self.vec(l + 1))
        rule = self.rule(self.net.activations[l - 1].name)
        if scalar:
            factor = rule.factor(r"\hat y", f"z^{{({l})}}")
            return (f"{g}\\,{factor}" if factor else g), True, True
        factor = rule.vector(self.vec(l + 1), f"\\boldsymbol z^{{({l})}}")
        return (f"{g} \\odot {factor}" if factor else g), False, not factor

    def matrix(self, l: int) -> list[str]:
        delta, scalar, atomic = self.delta(l)
        wrapped = delta if atomic else f"\\Big({delta}\\Big)"
        rows = [f"\\frac{{\\partial L}}{{\\partial \\mathbf W^{{({l})}}}} = {wrapped}\\,{self.vec_t(l)}",
                f"\\frac{{\\partial L}}{{\\partial \\mathbf B^{{({l})}}}} = {delta}"]
        if l > 1:
            lhs = f"\\frac{{\\partial L}}{{\\partial \\boldsymbol x^{{({l})}}}}"
            rows.append(f"{lhs} = {delta}\\,\\mathbf W^{{({l})T}}" if scalar
                        else f"{lhs} = \\mathbf W^{{({l})T}}{wrapped}")
        return rows

    # -- batches and legend ------------------------------------------------------------------

    def batches(self) -> list[Block]:
        if self.net.loss.name == "squared_error" and self.d.n_out == 1:
            loss_k = r"(\hat y_k - y_k)^2"
        else:
            loss_k = r"\ell(\hat{\boldsymbol y}_k, \boldsymbol y_k)"
        return [Block("h2", self.t("batches")), Block("p", self.t("batch_text", loss_k=loss_k))]

    def legend(self) -> list[Block]:
        T, d, L = self.t, self.d, self.L
        acts = self.acts_used()
        rule_of = {a: self.rule(a) for a in acts}
        undefined = [f"{r.symbol}' = {r.factor(r.symbol, 'z') or '1'}" for r in rule_of.values()]
        if len(acts) == 1:
            und = T("undefined1", f=rule_of[acts[0]].symbol, rule=undefined[0])
        else:
            und = T("undefinedn", fs=_join([f"${r.symbol}$" for r in rule_of.values()], ", ", self.t("and")),
                    rules=_join([f"${u}$" for u in undefined], ", ", self.t("and")))
        if d.head.fused:
            composite = rf"\ell\big(f_{L}(z^{{({L})}}), y\big)"
            fused = T("D_fused", L=L, labels=self.t("labels_sum") if d.head.labels_sum_to_one else "")
        elif d.n_out == 1 and self.net.loss.name == "squared_error":
            composite = f"({self.rule(self.net.activations[-1].name).symbol}(z^{{({L})}}) - y)^2"
            fused = ""
        else:
            composite = rf"\ell\big(f_{L}(z^{{({L})}}), y\big)"
            fused = ""
        h_rules = ", ".join(f"$f'(z) = {rule_of[a].factor('a', 'z') or '1'}$" for a in acts)
        rows = [tuple(T("th").split("|")),
                ("**[D]**", T("D", composite=composite, undefined=und, fused=fused), T("D_where")),
                ("**[H]**", T("H", rules=h_rules) if self.h_runs else T("H_skip", loss=self.net.loss.name),
                 T("same")),
                ("**[M]**", T("M"), T("same"))]
        if not self.article:
            r_rules = ", ".join(f"${rule_of[a].symbol}'(u) = {rule_of[a].rule_tex}$" for a in acts)
            rows.append(("**[R]**", T("R", rules=r_rules), T("same")))
        rows += [self.s_row(), ("**[L]**", T("L"), T("L_where")), self.n_row()]
        return [Block("h2", T("legend")), Block("table", rows=tuple(rows)),
                Block("p", T("see", prefix=self.prefix))]

    def s_row(self) -> tuple[str, str, str]:
        T = self.t
        if self.article:
            r = self.rule("sigmoid")
            return ("**[S]**", T("S", name="sigmoid", f=r.symbol, rule=r.factor(r.symbol, "z")), T("S_where_article"))
        acts = self.acts_used()
        rules = [self.rule(a) for a in acts]
        if len(acts) == 1:
            r = rules[0]
            rule = f"{r.symbol}'(z) = {r.factor(r.symbol, 'z') or '1'}"
            text = T("S", name=r.words[self.lang], f=r.symbol, rule=rule)
        else:
            text = T("S_many", names=_join([r.words[self.lang] for r in rules], ", ", self.t("and")),
                     rules=", ".join(f"${r.symbol}'(z) = {r.factor(r.symbol, 'z') or '1'}$" for r in rules))
        where = [f"`prove_activation(\"{a}\")`" for a in acts]
        if self.d.head.fused:
            text += T("S_fused")
            where.append(f"`prove_fused_rule(\"{self.net.loss.name}\", \"{self.net.activations[-1].name}\")`")
        return ("**[S]**", text, ", ".join(where) + ", `tests/test_handout.py`")

    def n_row(self) -> tuple[str, str, str]:
        if self.article:
            return ("**[N]**", self.t("N_article"), self.t("N_article_where"))
        s = self.spec
        acts = repr(list(s.activations)) if len(set(s.activations)) > 1 else repr(s.activations[0])
        call = f"`prove_network(Network({s.sizes!r}, {acts}, {s.loss!r}))`".replace("'", '"')
        return ("**[N]**", self.t("N", method=self.n_method), call + ", `tests/test_handout.py`")

    # -- certificates run at generation ------------------------------------------------------

    def certify(self) -> None:
        """Run the general certificates the page cites; raise HandoutError if one fails."""
        for a in self.acts_used():
            if not _activation_proved(a):
                raise HandoutError(f"prove_activation({a!r}) failed: the page's [S] does not hold")
        if self.d.head.fused and not _fused_proved(self.net.loss.name, self.net.activations[-1].name):
            raise HandoutError("prove_fused_rule failed: the page's [S] does not hold")
        if not _layers_proved():
            raise HandoutError("prove_layer_rules failed: the page's [L] does not hold")
        proof = prove_network(self.net)
        if not proof.ok:
            raise HandoutError(f"prove_network({self.net.describe()}) failed: {proof}")
        self.n_method = proof.method

    def render(self) -> list[Block]:
        self.certify()
        self.h_runs = self.d.handgrad(self.d.params()) is not None
        blocks = self.blocks()
        self.d.check(self.checks, self.passed)
        return blocks


@cache
def _activation_proved(name: str) -> bool:
    return bool(prove_activation(name).ok)


@cache
def _fused_proved(loss: str, act: str) -> bool:
    return bool(prove_fused_rule(loss, act).ok)


@cache
def _layers_proved() -> bool:
    return bool(prove_layer_rules().ok)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def render(spec: HandoutSpec | hg.Network, *, lang: str = "en", fmt: str = "md", link_prefix: str = "",
           dw: Callable[[int, int, int], Formula] | None = None) -> str:
    r"""The handout of ``spec`` (a :class:`HandoutSpec` or a network) as Markdown or LaTeX.

    Args:
      spec: the network.
      lang: ``"en"`` or ``"zh"``.
      fmt: ``"md"`` (``$$`` blocks) or ``"tex"`` (a fragment to ``\input``).
      link_prefix: prepended to links to other docs pages (``"../"`` from ``docs/handouts/``).
      dw: the per-weight formula builder ``dw(layer, i, j) -> Formula`` (default: the generated
        closed forms); exposed so that a test can hand in a wrong formula and see a check fail.

    Raises:
      HandoutError: naming the first formula (in article notation) that fails a check.
      UnsupportedNetwork: (a ``ValueError``) when the net cannot be displayed.
      ValueError: for an unknown ``lang`` or ``fmt``.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if isinstance(spec, hg.Network):
        spec = HandoutSpec.of(spec)
    if not isinstance(spec, HandoutSpec):
        raise TypeError(f"spec must be a HandoutSpec or a handgrad.Network, got {type(spec).__name__}")
    blocks = _Page(spec, lang, link_prefix, dw).render()
    return _md(blocks) if fmt == "md" else _tex(blocks)


def render_handout(dw: Callable[[int, int, int], Formula] | None = None) -> str:
    """The article's page, ``docs/handout.md`` (English Markdown)."""
    return render(ARTICLE, dw=dw)


def _render_committed(c: _Committed) -> str:
    prefix = "../" if c.path.parent != DOCS else ""
    return render(c.spec, lang=c.lang, fmt=c.fmt, link_prefix=prefix)


def write_handout(path: Path | str = HANDOUT_PATH) -> Path:
    """Check every formula and write the article's page (``docs/handout.md`` by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_handout(), encoding="utf-8")
    return path


def write_all() -> list[Path]:
    """Write every committed handout (:data:`HANDOUTS`)."""
    written = []
    for c in HANDOUTS:
        c.path.parent.mkdir(parents=True, exist_ok=True)
        c.path.write_text(_render_committed(c), encoding="utf-8")
        written.append(c.path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m handgrad.reference.docgen.handout [--out PATH]``: every committed handout, or
    the article's page to PATH."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write only the article's page, to PATH")
    args = parser.parse_args(argv)
    if args.out is not None:
        print(f"wrote {write_handout(args.out)}")
        return 0
    for path in write_all():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
