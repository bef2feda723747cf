"""Train the small learning problems with every optimizer and variant; save the loss curves.

    python scripts/plot_training.py [--out docs/img/training_curves.png]

Left: XOR (2-4-1 tanh/sigmoid, BCE), batch gradient descent, one curve per optimizer. Right: the
seeded two-class half-moons (200 samples, 2-8-1 tanh/sigmoid, BCE), plain GD and Adam under
the three variants, against epochs (an epoch is 1 step for batch GD, 10 for mini-batch b = 20,
200 for SGD). Everything is seeded, so the figure is reproducible. matplotlib is the optional
``plots`` extra, imported here only.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

import handgrad as hg
from handgrad import optim, training

XOR_OPTIMIZERS = {
    "GD (lr 0.5)": optim.gd(0.5),
    "Momentum (0.5, beta 0.9)": optim.momentum(0.5, 0.9),
    "Nesterov (0.5, beta 0.9)": optim.nesterov(0.5, 0.9),
    "AdaGrad (0.3)": optim.adagrad(0.3),
    "RMSProp (0.02)": optim.rmsprop(0.02),
    "Adam (0.05)": optim.adam(0.05),
    "AdamW (0.05, wd 1e-3)": optim.adamw(0.05, weight_decay=1e-3),
}


def xor_curves(epochs: int) -> dict[str, np.ndarray]:
    X, Y = training.xor_data()
    net = hg.Network((2, 4, 1), ("tanh", "sigmoid"), "bce")
    p0 = net.init(np.random.default_rng(0), weight_scale=1.0)
    return {name: training.batch_gd(net, p0, X, Y, opt, epochs=epochs).epoch_losses
            for name, opt in XOR_OPTIMIZERS.items()}


def moons_curves(epochs: int) -> dict[str, np.ndarray]:
    X, Y = training.two_class_data(200, seed=0)
    net = hg.Network((2, 8, 1), ("tanh", "sigmoid"), "bce")
    p0 = net.init(np.random.default_rng(0), weight_scale=1.0)
    out = {}
    for oname, make in (("GD 0.5", lambda: optim.gd(0.5)), ("Adam 0.02", lambda: optim.adam(0.02))):
        out[f"{oname}, batch"] = training.batch_gd(net, p0, X, Y, make(), epochs=epochs).epoch_losses
        out[f"{oname}, mini-batch 20"] = training.minibatch_gd(net, p0, X, Y, make(), batch_size=20,
                                                               epochs=epochs, seed=0).epoch_losses
        out[f"{oname}, SGD"] = training.sgd(net, p0, X, Y, make(), epochs=epochs, seed=0).epoch_losses
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/img/training_curves.png"))
    parser.add_argument("--xor-epochs", type=int, default=400)
    parser.add_argument("--moons-epochs", type=int, default=60)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    xor = xor_curves(args.xor_epochs)
    moons = moons_curves(args.moons_epochs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for name, losses in xor.items():
        axes[0].semilogy(losses, label=name)
    axes[0].set(title="XOR, batch gradient descent", xlabel="epoch (= step)", ylabel="loss on all samples (BCE)")
    styles = {"batch": "-", "mini-batch 20": "--", "SGD": ":"}
    for name, losses in moons.items():
        variant = name.split(", ")[1]
        axes[1].semilogy(losses, styles[variant], color="C0" if name.startswith("GD") else "C3", label=name)
    axes[1].set(title="two-class half-moons (n = 200): the three variants", xlabel="epoch",
                ylabel="loss on all samples (BCE)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    for title, curves in (("XOR", xor), ("moons", moons)):
        for name, losses in curves.items():
            print(f"  {title:5s} {name:28s} loss {losses[0]:.4f} -> {losses[-1]:.2e}")


if __name__ == "__main__":
    main()
