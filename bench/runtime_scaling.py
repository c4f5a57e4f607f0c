"""How the audit's cost grows with the run: per step, whether the run keeps one scheduler or builds a new
one every epoch (a run rebuilding its scheduler, LR006, or one stage per epoch: hundreds of schedulers).

    python bench/runtime_scaling.py [--epochs 200] [--factor 4] [--batches 5]

Prints, for each shape, the audited time of ``epochs`` and of ``factor * epochs`` epochs and their ratio
over the ratio of steps: near 1.0 is linear, ``factor`` would be quadratic. Asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.optim import lr_scheduler as L  # noqa: E402

from lraudit.runtime import audit  # noqa: E402


def run(epochs: int, batches: int, rebuild: bool, expect) -> float:
    torch.manual_seed(0)
    m = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(4, 8)
    sched = L.StepLR(opt, 3, 0.9)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt, expect=expect):
            for epoch in range(epochs):
                if rebuild:
                    sched = L.StepLR(opt, 3, 0.9) if epoch % 2 == 0 else L.ExponentialLR(opt, 0.99)
                for _ in range(batches):
                    opt.zero_grad()
                    m(x).sum().backward()
                    opt.step()
                    sched.step()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--batches", type=int, default=5)
    args = ap.parse_args()
    for rebuild, expect in ((False, None), (True, None), (True, "scheduler")):
        small = min(run(args.epochs, args.batches, rebuild, expect) for _ in range(3))
        large = min(run(args.epochs * args.factor, args.batches, rebuild, expect) for _ in range(3))
        shape = ("a new scheduler every epoch" if rebuild else "one scheduler") + (
            f", expect={expect!r}" if expect else "")
        print(f"{shape:45s} {args.epochs:5d} epochs {small:7.3f} s   {args.epochs * args.factor:5d} epochs "
              f"{large:7.3f} s   growth over linear {large / small / args.factor:5.2f}")


if __name__ == "__main__":
    main()
