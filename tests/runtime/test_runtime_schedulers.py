"""Every torch scheduler: the recorded trajectory is what the scheduler itself reports, step by step,
the canonical loop gives no finding, and expect="scheduler" agrees with the real run."""
import pytest
import torch
from rt_helpers import N_STEPS, SCHEDULERS, canonical, model, train_step, two_groups

from lraudit.runtime import audit

NAMES = sorted(SCHEDULERS)


def _sgd(m, groups):
    if groups == 1:
        return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    return torch.optim.SGD(two_groups(m), lr=0.1, momentum=0.9)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_recorded_equals_scheduler_report(name, groups):
    m = model()
    opt = _sgd(m, groups)
    sched = SCHEDULERS[name](opt)
    with audit(opt, strict=True) as run:
        reported = canonical(m, opt, sched)
    assert run.steps() == N_STEPS
    for g in range(groups):
        assert run.lrs(group=g) == [row[g] for row in reported], name  # bit for bit
    assert run.findings == []
    assert len({v for v in run.lrs()}) > 1, "the schedule should move in this test"


@pytest.mark.parametrize("name", NAMES)
def test_scheduler_built_inside_the_block(name):
    m = model()
    opt = _sgd(m, 1)
    with audit(opt, strict=True) as run:
        sched = SCHEDULERS[name](opt)
        reported = canonical(m, opt, sched)
    assert run.lrs() == [row[0] for row in reported]
    assert run.findings == []


@pytest.mark.parametrize("name", [n for n in NAMES if n != "ReduceLROnPlateau"])
@pytest.mark.parametrize("built_inside", [False, True])
def test_expect_scheduler_matches_the_canonical_loop(name, built_inside):
    m = model()
    opt = _sgd(m, 2)
    if not built_inside:
        sched = SCHEDULERS[name](opt)
    with audit(opt, strict=True, expect="scheduler") as run:
        if built_inside:
            sched = SCHEDULERS[name](opt)
        canonical(m, opt, sched)
    assert run.findings == []
    # the shadow never touched the real optimizer: its LR is where the real loop left it
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]


def test_global_audit_records_the_same_trajectory():
    m = model()
    with audit(strict=True) as run:  # every optimizer, created inside the block
        opt = _sgd(m, 2)
        sched = SCHEDULERS["OneCycleLR"](opt)
        reported = canonical(m, opt, sched)
    assert [s[:3] for s in run.series()] == [("lr-SGD", "SGD", "pg1"), ("lr-SGD", "SGD", "pg2")]
    assert run.lrs(1) == [row[1] for row in reported]


def test_per_epoch_scheduler_is_silent():
    m = model()
    opt = _sgd(m, 1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with audit(opt, strict=True) as run:
        for epoch in range(3):
            for _ in range(4):
                train_step(m, opt)
            sched.step()
    assert run.lrs() == [0.1] * 4 + [0.05] * 4 + [0.025] * 4


def test_warm_restarts_stepped_with_fractional_epochs():
    """CosineAnnealingWarmRestarts' documented per-batch form: scheduler.step(epoch + i / iters)."""
    m = model()
    opt = _sgd(m, 2)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)
    reported = []
    with audit(opt, strict=True) as run:
        for epoch in range(4):
            for i in range(5):
                reported.append(sched.get_last_lr())
                train_step(m, opt)
                sched.step(epoch + (i + 1) / 5)
    assert run.lrs(0) == [r[0] for r in reported] and run.lrs(1) == [r[1] for r in reported]
    assert run.findings == []


def test_optimizer_never_stepped_is_listed_empty():
    m = model()
    opt = _sgd(m, 2)
    with audit(opt) as run:
        pass
    assert run.steps() == 0
    assert run.to_dict()["optimizers"] == [
        {"name": "lr-SGD", "class": "SGD", "groups": [{"name": "pg1", "lr": []}, {"name": "pg2", "lr": []}],
         "steps": 0}]
    assert [s.name for s in run.series()] == ["lr-SGD/pg1", "lr-SGD/pg2"]


def test_custom_scheduler_class_defined_inside_the_block():
    m = model()
    opt = _sgd(m, 1)
    with audit(opt, strict=True, expect="scheduler") as run:

        class Halving(torch.optim.lr_scheduler.LRScheduler):
            def get_lr(self):
                return [base * 0.5 ** self.last_epoch for base in self.base_lrs]

        class HalvingWithStep(Halving):
            def step(self):  # an override that calls the base step: still one scheduler step
                super().step()

        sched = HalvingWithStep(opt)
        reported = canonical(m, opt, sched, n=5)
    assert run.lrs() == [r[0] for r in reported] == [0.1 * 0.5 ** k for k in range(5)]
    assert run.findings == []
    assert not hasattr(HalvingWithStep.__dict__["step"], "__lraudit_original__")  # unwrapped at exit
