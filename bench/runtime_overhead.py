"""What ``audit()`` costs: entering and leaving, per-step time (interleaved, with and without the audit),
and memory.

    python bench/runtime_overhead.py [--rounds 31] [--block 1000] [--mem-steps 1000000] [--tensors 200000]

"audited" is what a run pays on its usual steps (the steady lane carries them); "general path only" is
the cost of a step the lane hands to the checker (around a manual write, a load, a skipped update).
Prints ratios and deltas; asserts nothing about time (numbers depend on the machine; on a shared
machine read the "min" lines, the least disturbed blocks). On a machine with
CUDA it also times a real CUDA training step and runs one under torch.cuda.set_sync_debug_mode("error").
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.optim import lr_scheduler as L  # noqa: E402

from lraudit.runtime import audit  # noqa: E402


def _model(device="cpu", width=64):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)).to(device)


def _time_block(fn, n):
    # CPU time of this thread (torch runs single-threaded here): other processes on a shared machine
    # disturb it much less than wall time
    t = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t) / n


def _noop_hook(opt, args, kwargs):
    return None


class _general_path_only:
    """The audit with its steady lane closed (lraudit/runtime/lane.py): every step takes the checker's
    general path, as the steps around a write, a load or a skipped update do."""

    def __enter__(self):
        from lraudit.runtime import tracker

        self._tracker, self._open = tracker, tracker.open_lane
        tracker.open_lane = lambda tr, sched_info: None

    def __exit__(self, *exc):
        self._tracker.open_lane = self._open


def bench_cpu_step(rounds: int, block: int) -> None:
    """Interleaved blocks: bare, bare + two no-op hooks (the hook floor), audited, audited on the
    general path only."""
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = L.StepLR(opt, step_size=10_000_000)  # stepped every step, the LR stays put
    for p in m.parameters():
        p.grad = torch.randn_like(p)

    def opt_step():
        opt.step()

    def train_step():  # optimizer step + scheduler step, as in a per-batch loop
        opt.step()
        sched.step()

    # cycles the momentum: the audit reads every group's momentum after each of its steps
    sched_onecycle = L.OneCycleLR(opt, max_lr=0.1, total_steps=10_000_000)

    def train_step_onecycle():
        opt.step()
        sched_onecycle.step()

    # a new LR at every step (linear decay, as transformers' warm-up/decay schedules), no momentum written
    sched_linear = L.LambdaLR(opt, lambda s: 1.0 - s / 1e8)

    def train_step_linear():
        opt.step()
        sched_linear.step()

    for label, fn in (("optimizer.step()", opt_step), ("optimizer.step() + StepLR.step()", train_step),
                      ("optimizer.step() + LambdaLR.step() (a new LR every step)", train_step_linear),
                      ("optimizer.step() + OneCycleLR.step() (momentum cycled and recorded)", train_step_onecycle)):
        bare, floor, audited, general = [], [], [], []
        _time_block(fn, block)  # warm-up
        for _ in range(rounds):
            gc.collect()
            bare.append(_time_block(fn, block))
            h1, h2 = opt.register_step_pre_hook(_noop_hook), opt.register_step_post_hook(_noop_hook)
            floor.append(_time_block(fn, block))
            h1.remove()
            h2.remove()
            for times, only_general in ((audited, False), (general, True)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # LR005 in the optimizer.step()-only blocks
                    if only_general:
                        with _general_path_only():
                            a = audit(opt)
                            a.start()
                            times.append(_time_block(fn, block))
                            a.stop()
                    else:
                        a = audit(opt)
                        a.start()
                        times.append(_time_block(fn, block))
                        a.stop()
        for stat in (min, statistics.median):
            b, f, x, g = (stat(v) * 1e6 for v in (bare, floor, audited, general))
            print(f"CPU {label}, {stat.__name__} of {rounds} interleaved blocks of {block} (64-64-1 MLP, SGD "
                  "momentum; thread CPU time):")
            print(f"  bare {b:8.2f} us   two no-op hooks {f:8.2f} us   audited {x:8.2f} us   "
                  f"general path only {g:8.2f} us")
            print(f"  audited/bare = {x / b:.3f}  (+{x - b:.2f} us/step);  audited - hook floor = {x - f:+.2f} us/step;"
                  f"  general path only - hook floor = {g - f:+.2f} us/step")


def bench_enter_exit(n_tensors: int, rounds: int) -> None:
    """Entering and leaving an audit with ``n_tensors`` live tensors on the heap (a heap scan would grow
    with them): ``audit(opt)`` with a scheduler kept in a local variable, and the global ``audit()``."""
    heap = [torch.zeros(1) for _ in range(n_tensors)]
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = L.StepLR(opt, step_size=10)
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    sched.step()

    def targeted():
        a = audit(opt)
        a.start()
        a.stop()

    def global_one_step():
        a = audit()
        a.start()
        opt.step()  # the global audit attaches the optimizer (and finds its scheduler) at its first step
        a.stop()

    for label, fn in (("audit(opt) enter+exit", targeted), ("audit() enter + one step + exit", global_one_step)):
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
            for _ in range(rounds):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        print(f"{label} with {len(heap):,} live tensors: min {min(times) * 1e3:.2f} ms, "
              f"median {statistics.median(times) * 1e3:.2f} ms ({rounds} rounds, wall)")
    del heap


class _NoOpOptimizer(torch.optim.Optimizer):
    def __init__(self, groups):
        super().__init__(groups, {"lr": 0.1})

    def step(self, closure=None):
        return None


def bench_memory(steps: int, groups: int = 8) -> None:
    """Memory of the recording for ``steps`` optimizer steps x ``groups`` groups through the real hooks,
    LR piecewise constant (changed every steps/10 steps, every group, at different values per group)."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    opt = _NoOpOptimizer([{"params": [p], "lr": 0.1 * (1 + g % 3)} for g, p in enumerate(params)])
    every = max(steps // 10, 1)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    a = audit(opt)
    run = a.start()
    for i in range(steps):
        if i and i % every == 0:
            for g in opt.param_groups:
                g["lr"] *= 0.5
        opt.step()
    during = tracemalloc.get_traced_memory()[0] - base
    a.stop()
    elapsed = time.perf_counter() - t
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert run.steps() == steps and len(run.lrs(groups - 1)) == steps and run.findings == []
    raw = steps * groups * 8
    print(f"Memory, {steps:,} steps x {groups} groups, piecewise-constant LR (tracemalloc, real hooks):")
    print(f"  held while running {during / 1e6:.3f} MB; held by the finished run {(after - base) / 1e6:.3f} MB; "
          f"peak {(peak - base) / 1e6:.3f} MB")
    print(f"  vs {raw / 1e6:.0f} MB for a raw float64 array; {elapsed:.1f} s for the loop under tracemalloc")
    # a smooth schedule (a new LR every step) cannot be run-length compressed: 8 bytes per step and
    # distinct group, identical groups share one series
    from lraudit.runtime.series import Trajectory

    traj = Trajectory()
    n = min(steps, 200_000)
    for i in range(n):
        v = 0.1 * (1 - i / n)
        traj.append([v, v, v, v, v * 0.1, v * 0.1, v * 0.1, v * 0.1])
    traj._flush()
    print(f"  smooth schedule, {n:,} steps x 8 groups (two distinct LRs): {traj.nbytes() / 1e6:.2f} MB "
          f"({traj.nbytes() / n:.1f} bytes/step)")


def bench_cuda(rounds: int, block: int) -> None:
    if not torch.cuda.is_available():
        print("CUDA: not available on this machine; GPU figures skipped.")
        return
    dev = "cuda"
    m = _model(dev, width=1024)
    x = torch.randn(256, 1024, device=dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
    sched = L.OneCycleLR(opt, max_lr=1e-3, total_steps=10_000_000)

    def step():
        opt.zero_grad(set_to_none=True)
        m(x).pow(2).mean().backward()
        opt.step()
        sched.step()

    def timed(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / n

    timed(50)
    bare, audited = [], []
    for _ in range(rounds):
        bare.append(timed(block // 10))
        a = audit(opt)
        a.start()
        audited.append(timed(block // 10))
        a.stop()
    b, x_ = statistics.median(bare) * 1e6, statistics.median(audited) * 1e6
    print(f"CUDA training step (1024-wide MLP, batch 256, fused AdamW, OneCycleLR), {torch.cuda.get_device_name()}:")
    print(f"  bare {b:.1f} us  audited {x_:.1f} us  ratio {x_ / b:.4f} (+{x_ - b:.2f} us, {100 * (x_ / b - 1):.2f}%)")

    # no device sync: tensor LR on the GPU, written in place each step, audited in sync-debug "error" mode
    lr = torch.tensor(1e-3, device=dev)
    opt2 = torch.optim.Adam(m.parameters(), lr=lr, fused=True)
    ok = True
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        a = audit(opt2)
        run = a.start()
        for i in range(200):
            lr.fill_(1e-3 * (1 + i % 7))
            opt2.zero_grad(set_to_none=True)
            m(x).pow(2).mean().backward()
            opt2.step()
    except RuntimeError as e:
        ok = False
        print(f"  sync-debug 'error' mode: a synchronisation was raised during training: {e}")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    run = a.stop()  # reading the device copies at the end is allowed
    if ok:
        lrs = run.lrs()
        good = len(lrs) == 200 and all(abs(v - 1e-3 * (1 + i % 7)) < 1e-9 for i, v in enumerate(lrs))
        print(f"  sync-debug 'error' mode, tensor LR on the GPU: 200 steps, no synchronisation; "
              f"trajectory {'correct' if good else 'WRONG'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--mem-steps", type=int, default=1_000_000)
    ap.add_argument("--tensors", type=int, default=200_000)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: intra-op threads only add noise
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    bench_enter_exit(args.tensors, args.rounds)
    bench_cpu_step(args.rounds, args.block)
    bench_memory(args.mem_steps)
    bench_cuda(args.rounds, args.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
