"""How the static analysis scales with the size of one module: the cost ratio per doubling.

    python bench/static_scaling.py                 # every shape, sizes 50..800 (4 doublings)
    python bench/static_scaling.py --shape tests --start 100 --doublings 3
    python bench/static_scaling.py --max-seconds 60   # stop a shape once one size takes longer

Each shape is a synthetic module generated at growing size N, checked with every rule selected
(``lraudit.engine.check_text``: prescan, libcst parse, model, rules, suppressions) in this process,
one core. A near-linear analysis costs about 2x per doubling; a quadratic one 4x, a cubic one 8x.

Shapes:
  tests       a unittest module shaped like torch's own scheduler tests: N test methods, each
              building one optimizer and one scheduler and stepping both in a loop
  functions   N small module-level training functions (optimizer, scheduler, loop, steps)
  steps       one training loop holding N optimizer/scheduler step pairs under conditions
  schedulers  one optimizer and N schedulers, all stepped in one loop (an LR011 finding)
  nesting     N statements nested in loops and conditions (depth N // 10), plus a long elif chain
  writes      one loop with N manual LR writes to param groups beside a scheduler
  helpers     N module-level helpers calling each other in a chain, the last one stepping

Prints, per shape, the best CPU seconds of a few runs (this process, a full garbage collection before
each) and the findings per size, with the ratio to the previous size. Times are measured, never
asserted. The machine's other load still shows: read the trend over several doublings.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lraudit.config import resolve_settings  # noqa: E402
from lraudit.engine import check_text  # noqa: E402

HEADER = "import torch\nfrom torch.optim import SGD\nfrom torch.optim.lr_scheduler import StepLR, ExponentialLR\n\n"


def shape_tests(n: int) -> str:
    out = [HEADER, "import unittest\n\n\nclass TestLRScheduler(unittest.TestCase):\n"]
    out.append("    def setUp(self):\n        self.model = torch.nn.Linear(2, 2)\n"
               "        self.opt = SGD(self.model.parameters(), lr=0.1)\n\n")
    for i in range(n):
        out.append(
            f"    def test_step_{i}(self):\n"
            f"        scheduler = StepLR(self.opt, step_size={i % 7 + 1}, gamma=0.{i % 9 + 1})\n"
            f"        targets = [0.1 * 0.5 ** (e // 3) for e in range({i % 5 + 3})]\n"
            f"        for epoch in range(len(targets)):\n"
            f"            self.opt.step()\n"
            f"            scheduler.step()\n"
            f"            self.assertAlmostEqual(self.opt.param_groups[0]['lr'], targets[epoch])\n\n"
        )
    return "".join(out)


def shape_functions(n: int) -> str:
    out = [HEADER]
    for i in range(n):
        out.append(
            f"def train_{i}(model, loader):\n"
            f"    optimizer = SGD(model.parameters(), lr=0.{i % 9 + 1})\n"
            f"    scheduler = StepLR(optimizer, step_size=10)\n"
            f"    for epoch in range(10):\n"
            f"        for x, y in loader:\n"
            f"            loss = model(x).sum()\n"
            f"            loss.backward()\n"
            f"            optimizer.step()\n"
            f"        scheduler.step()\n\n\n"
        )
    return "".join(out)


def shape_steps(n: int) -> str:
    out = [HEADER, "def train(model, loader, args):\n",
           "    optimizer = SGD(model.parameters(), lr=0.1)\n",
           "    scheduler = StepLR(optimizer, step_size=10)\n",
           "    for epoch in range(10):\n",
           "        for i, (x, y) in enumerate(loader):\n"]
    for i in range(n):
        out.append(f"            if args.mode == {i}:\n"
                   f"                optimizer.step()\n"
                   f"                scheduler.step()\n")
    return "".join(out)


def shape_schedulers(n: int) -> str:
    out = [HEADER, "def train(model, loader):\n", "    optimizer = SGD(model.parameters(), lr=0.1)\n"]
    for i in range(n):
        out.append(f"    s{i} = ExponentialLR(optimizer, gamma=0.9)\n")
    out.append("    for epoch in range(10):\n        optimizer.step()\n")
    for i in range(n):
        out.append(f"        s{i}.step()\n")
    return "".join(out)


def shape_nesting(n: int) -> str:
    depth = max(1, min(n // 10, 90))
    out = [HEADER, "def train(model, loader, args):\n",
           "    optimizer = SGD(model.parameters(), lr=0.1)\n",
           "    scheduler = StepLR(optimizer, step_size=10)\n"]
    indent = "    "
    for level in range(depth):
        out.append(f"{indent}for e{level} in range(2):\n" if level % 2 == 0 else f"{indent}if args.x{level}:\n")
        indent += "    "
    per_level = max(1, n - depth)
    out.append(f"{indent}if args.k == 0:\n{indent}    optimizer.step()\n")
    for i in range(1, per_level):
        out.append(f"{indent}elif args.k == {i}:\n{indent}    scheduler.step()\n")
    return "".join(out)


def shape_writes(n: int) -> str:
    out = [HEADER, "def train(model, loader, args):\n",
           "    optimizer = SGD(model.parameters(), lr=0.1)\n",
           "    scheduler = StepLR(optimizer, step_size=10)\n",
           "    for epoch in range(10):\n",
           "        optimizer.step()\n",
           "        scheduler.step()\n"]
    for i in range(n):
        out.append(f"        if epoch == {i}:\n            optimizer.param_groups[0]['lr'] = 0.{i % 9 + 1}\n")
    return "".join(out)


def shape_helpers(n: int) -> str:
    """N helpers in a chain (each calls the next; only the last one steps), called from one loop."""
    out = [HEADER]
    for i in range(n):
        callee = f"helper_{i + 1}(model, x)" if i + 1 < n else "model.opt.step()"
        out.append(f"def helper_{i}(model, x):\n    y = x + {i}\n    {callee}\n\n\n")
    out.append("def train(model, loader):\n    model.opt = SGD(model.parameters(), lr=0.1)\n"
               "    scheduler = StepLR(model.opt, step_size=10)\n    for x in loader:\n"
               "        helper_0(model, x)\n        scheduler.step()\n")
    return "".join(out)


SHAPES: Dict[str, Callable[[int], str]] = {
    "tests": shape_tests,
    "functions": shape_functions,
    "steps": shape_steps,
    "schedulers": shape_schedulers,
    "nesting": shape_nesting,
    "writes": shape_writes,
    "helpers": shape_helpers,
}


def measure(source: str, settings, repeats: int) -> tuple:
    """Best CPU seconds of ``repeats`` runs (a full collection before each, so that the garbage of a
    previous size is never collected on this one's clock), findings, notes."""
    best = None
    for _ in range(max(1, repeats)):
        gc.collect()
        t0 = time.process_time()
        result = check_text(source, "synthetic.py", settings)
        seconds = time.process_time() - t0
        best = seconds if best is None else min(best, seconds)
        if seconds > 2.0:
            break  # large sizes are stable enough alone
    if result.errors:
        raise SystemExit(f"synthetic module not checked: {result.errors}")
    return best, len(result.findings), [n for n in getattr(result, "notes", [])]


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="shapes to run (default: all)")
    parser.add_argument("--start", type=int, default=50, help="first size N")
    parser.add_argument("--doublings", type=int, default=4, help="how many times N doubles")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop a shape after a size this slow")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per size (CPU time)")
    args = parser.parse_args(argv)
    settings = resolve_settings(["."], isolated=True)
    worst = 0.0
    for name in args.shape or list(SHAPES):
        print(f"{name}:")
        previous = None
        n = args.start
        for _ in range(args.doublings + 1):
            source = SHAPES[name](n)
            seconds, findings, notes = measure(source, settings, args.repeats)
            ratio = f"{seconds / previous:5.2f}x" if previous else "     -"
            if previous and previous >= 0.05:
                worst = max(worst, seconds / previous)
            lines = source.count("\n")
            note = f"  cut short: {notes[0]['message']}" if notes else ""
            print(f"  N={n:>6}  {lines:>7} lines  {seconds:8.3f} s  {ratio} per doubling  {findings:>5} findings{note}")
            previous = max(seconds, 1e-6)
            if seconds > args.max_seconds:
                print("  (stopped: too slow to double again)")
                break
            n *= 2
    print(f"worst ratio per doubling (sizes over 0.05 s): {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
