"""Size of the trajectory file (version 2) for long runs, and the time to write and read it back.

    python bench/trajectory_size.py [--steps 100000] [--groups 8]

The trajectory is recorded through the audit's own storage (what the hooks feed), saved with
``Run.save`` and read back with the reader ``lraudit report`` uses; every value is checked on the way.
Prints bytes; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lraudit.runtime.run import OptimizerSeries, Run  # noqa: E402
from lraudit.runtime.series import Trajectory  # noqa: E402
from lraudit.runtime.trajectory_file import load  # noqa: E402


def cosine(k, steps, base):
    return base * 0.5 * (1 + math.cos(math.pi * k / steps))


SCHEDULES = {
    "constant LR (decay / no-decay pairs, two values)": lambda k, j, n: 3e-4 if j % 2 else 1e-3,
    "step decay x0.1 every n/4 steps": lambda k, j, n: 1e-3 * 0.1 ** (k * 4 // n),
    "smooth cosine, every group the same LR": lambda k, j, n: cosine(k, n, 1e-3),
    "smooth cosine, 2 distinct LRs (decay / no-decay)": lambda k, j, n: cosine(k, n, 1e-3 if j % 2 else 5e-4),
    "smooth cosine, 8 distinct LRs (layer-wise decay)": lambda k, j, n: cosine(k, n, 1e-3 * 0.8 ** j),
}


def measure(label, lr_at, steps, groups, folder):
    traj = Trajectory()
    for k in range(steps):
        traj.append([lr_at(k, j, steps) for j in range(groups)])
    run = Run()
    run._freeze([OptimizerSeries("lr-AdamW", "AdamW", [f"pg{j + 1}" for j in range(groups)], traj, steps)], [])
    path = os.path.join(folder, "lr.json")
    t = time.perf_counter()
    run.save(path)
    saved = time.perf_counter() - t
    t = time.perf_counter()
    [opt] = load(path).optimizers
    loaded = time.perf_counter() - t
    for j in range(groups):
        assert opt.groups[j].lr == [lr_at(k, j, steps) for k in range(steps)], (label, j)
    size = os.path.getsize(path)
    run.save(path + ".gz")
    gz = os.path.getsize(path + ".gz")
    v1 = len(json.dumps({"version": 1, "optimizers": [{"name": opt.name, "class": opt.cls, "steps": steps, "groups": [
        {"name": g.name, "lr": g.lr} for g in opt.groups]}], "findings": []}))  # what version 1 wrote
    print(f"  {label}:\n    {size:,} bytes (.json.gz: {gz:,}); version 1 wrote {v1:,} bytes; "
          f"save {saved:.2f} s, read back {loaded:.2f} s")


def measure_hooks(steps, groups, folder):
    """The same through the real optimizer hooks of an audit: a parameterless optimizer stepped ``steps``
    times, 8 groups at a constant LR, then a cosine schedule (CosineAnnealingLR stepped every step)."""
    try:
        import torch
    except ImportError:
        print("  (torch not installed: the real-hooks runs are skipped)")
        return
    from lraudit.runtime import audit

    class NoOp(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 1e-3})

        def step(self, closure=None):
            return None

    for label, cosine_schedule in (("constant LR", False), ("CosineAnnealingLR, 8 groups at 2 LRs", True)):
        params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
        opt = NoOp([{"params": [p], "lr": 1e-3 if j % 2 else 5e-4} for j, p in enumerate(params)])
        with audit(opt) as run:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if cosine_schedule else None
            for _ in range(steps):
                opt.step()
                if sched is not None:
                    sched.step()
        path = run.save(os.path.join(folder, "hooks.json"))
        print(f"  real hooks, {label}: {os.path.getsize(path):,} bytes ({run.steps():,} steps recorded)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=8)
    args = ap.parse_args(argv)
    print(f"Trajectory file, {args.steps:,} steps x {args.groups} groups:")
    with tempfile.TemporaryDirectory() as folder:
        for label, lr_at in SCHEDULES.items():
            measure(label, lr_at, args.steps, args.groups, folder)
        measure_hooks(args.steps, args.groups, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
