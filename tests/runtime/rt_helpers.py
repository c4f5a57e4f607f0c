"""Small models and loops shared by the runtime tests."""
import math

import torch
from torch.optim import lr_scheduler as L


def model(n_in=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 4), torch.nn.Linear(4, 1))


def two_groups(m, lr0=0.1, lr1=0.01, **kw):
    return [{"params": m[0].parameters(), "lr": lr0, **kw}, {"params": m[1].parameters(), "lr": lr1}]


def backward(m, scale=1.0):
    x = torch.randn(4, m[0].in_features)
    (m(x).pow(2).mean() * scale).backward()


def train_step(m, opt):
    opt.zero_grad()
    backward(m)
    opt.step()


def rules(run):
    return sorted({f.rule for f in run.findings})


def by_rule(run, rule):
    out = [f for f in run.findings if f.rule == rule]
    assert out, f"no {rule} in {[str(f) for f in run.findings]}"
    return out[0]


N_STEPS = 30


def _plateau(opt):
    return L.ReduceLROnPlateau(opt, factor=0.5, patience=0)


SCHEDULERS = {
    "StepLR": lambda o: L.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda o: L.MultiStepLR(o, milestones=[5, 11, 20], gamma=0.3),
    "ExponentialLR": lambda o: L.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda o: L.CosineAnnealingLR(o, T_max=N_STEPS, eta_min=0.001),
    "CosineAnnealingWarmRestarts": lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2),
    "LambdaLR": lambda o: L.LambdaLR(o, lambda s: min(1.0, (s + 1) / 5) * 0.97 ** s),
    "LinearLR": lambda o: L.LinearLR(o, start_factor=0.2, total_iters=8),
    "OneCycleLR": lambda o: L.OneCycleLR(o, max_lr=[0.5, 0.05][: len(o.param_groups)], total_steps=N_STEPS),
    "CyclicLR": lambda o: L.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=5),
    "PolynomialLR": lambda o: L.PolynomialLR(o, total_iters=20, power=2.0),
    "ReduceLROnPlateau": _plateau,
    "SequentialLR": lambda o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.1, total_iters=5), L.CosineAnnealingLR(o, T_max=N_STEPS - 5)],
        milestones=[5]),
    "ChainedScheduler": lambda o: L.ChainedScheduler(
        [L.ConstantLR(o, factor=0.5, total_iters=6), L.ExponentialLR(o, gamma=0.95)]),
}


def step_scheduler(sched, i):
    if isinstance(sched, L.ReduceLROnPlateau):
        if i % 3 == 2:  # an "epoch" of three batches; the metric never improves after the first one
            sched.step(1.0 + (i == 2) * -0.5)
    else:
        sched.step()


def canonical(m, opt, sched, n=N_STEPS, groups=1):
    """The canonical loop; returns what the scheduler reported before each optimizer step."""
    reported = []
    for i in range(n):
        reported.append([float(v) for v in sched.get_last_lr()])
        train_step(m, opt)
        step_scheduler(sched, i)
    return reported


def isclose_lists(a, b):
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-12, abs_tol=0) for x, y in zip(a, b))
