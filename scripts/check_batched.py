r"""The batched pass against case by case: the same certificate on random architectures.

``certify_backward`` decides a short run's traps and random draws in batches (judge/certify.py,
``_BatchedRunner``) and must give exactly the certificate the case-by-case runner gives. This
script certifies handgrad's own (correct) backward on ``--archs`` architectures of the soak's pool
(scripts/soak.py ``make_pool``: depth 1-5, widths 1-8, every activation and loss, fused and
unfused; every third case float32) both ways and compares the certificates field for field
(``tests/test_certify_batched.py``'s comparison: everything but the timing and the hash)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/check_batched.py --archs 60 --seed 20261205

It prints one line per architecture and a summary; it exits 1 if a certificate differs or a
correct backward fails (a mismatch or an error: a false alarm), 0 otherwise. A certificate refused
because no case could be decided (a softmax over one unit makes every prediction exactly 1, outside
the oracles' domain) is counted apart: not a false alarm, and the same both ways. Two runs of 60
architectures took about 190 s each on the 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument("--examples", type=int, default=12)
    args = ap.parse_args(argv)
    sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]
    from handgrad.reference import certify_backward
    from handgrad.reference.judge import certify as certify_module
    from soak import make_pool
    from test_certify_batched import _comparable, settle_spy

    import handgrad as hg

    start, same, settled, refused, alarms = time.time(), 0, 0, 0, 0
    limit = certify_module.BATCH_MAX_SECONDS
    for k, arch in enumerate(make_pool(args.archs, args.seed)):
        def backward(params: Any, X: Any, Y: Any, arch: Any = arch) -> Any:
            widths = (X.shape[0], *(params[f"W{l}"].shape[0] for l in range(1, len(arch.sizes))))
            return hg.Network(widths, list(arch.activations), arch.loss, fuse=arch.fuse).backward(params, X, Y)

        dtype = "float32" if k % 3 == 0 else "float64"
        kwargs = dict(fuse=arch.fuse, dtype=dtype, examples=args.examples, seed=k, raise_on_failure=False,
                      expect_long=True)
        try:
            certify_module.BATCH_MAX_SECONDS = limit
            with settle_spy() as ends:
                batched = certify_backward(backward, arch.sizes, list(arch.activations), arch.loss, **kwargs)
            certify_module.BATCH_MAX_SECONDS = -1.0
            alone = certify_backward(backward, arch.sizes, list(arch.activations), arch.loss, **kwargs)
        finally:
            certify_module.BATCH_MAX_SECONDS = limit
        equal = _comparable(batched) == _comparable(alone)
        same += equal
        settled += bool(ends) and set(ends) == {"settled"}  # every batch settled, none abandoned
        refused += not alone.ok and alone.failure is None
        alarms += alone.failure is not None
        print(f"{k} {'-'.join(map(str, arch.sizes))} {'/'.join(arch.activations)} {arch.loss} "
              f"{'fused' if arch.fuse else 'unfused'} {dtype}: {'same' if equal else 'DIFFERENT'} certificate, "
              f"batched pass {ends or ['not used']}, "
              f"{'certified' if alone.ok else 'FALSE ALARM' if alone.failure is not None else 'refused'} "
              f"({alone.certified} cases)", flush=True)
    print(f"{args.archs} architectures: {same} same certificate, {settled} settled without a fallback, {alarms} false "
          f"alarms, {refused} refused with nothing decidable; {time.time() - start:.0f} s")
    return 0 if same == args.archs and alarms == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
