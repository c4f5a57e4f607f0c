"""A bad and a good case for every runtime finding, with the exact rule, step and group."""
import math
import warnings

import pytest
import torch
from rt_helpers import backward, by_rule, model, rules, train_step, two_groups
from torch.optim import lr_scheduler as L

from lraudit.runtime import audit


def sgd(m, lr=0.1, **kw):
    return torch.optim.SGD(m.parameters(), lr=lr, **kw)


def quiet(fn):
    """Run fn() with torch's own scheduler warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


# -- LR001 -----------------------------------------------------------------------------------------
def test_lr001_scheduler_stepped_before_first_optimizer_step():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, step_size=1, gamma=0.5)

    def loop():
        with audit(opt) as run:
            for _ in range(4):
                sched.step()
                train_step(m, opt)
        return run

    run = quiet(loop)
    assert rules(run) == ["LR001"]
    f = by_rule(run, "LR001")
    assert (f.step, f.group, f.optimizer) == (0, 0, "lr-SGD")
    assert "StepLR" in f.message and "after optimizer.step()" in f.message
    assert run.lrs() == [0.05, 0.025, 0.0125, 0.00625]  # the first value (0.1) was skipped


def test_lr001_per_epoch_scheduler_at_top_of_epoch():
    m = model()
    opt = sgd(m)
    sched = L.ExponentialLR(opt, gamma=0.5)

    def loop():
        with audit(opt) as run:
            for epoch in range(2):
                sched.step()
                for _ in range(3):
                    train_step(m, opt)
        return run

    run = quiet(loop)
    assert rules(run) == ["LR001"]


def test_lr001_good_scheduler_after_optimizer():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, step_size=1, gamma=0.5)
    with audit(opt) as run:
        for _ in range(4):
            train_step(m, opt)
            sched.step()
    assert run.findings == []
    assert run.lrs() == [0.1, 0.05, 0.025, 0.0125]


def test_lr001_not_reported_when_optimizer_stepped_before_the_audit():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, step_size=1, gamma=0.5)
    train_step(m, opt)
    with audit(opt) as run:  # the audit starts mid-training, right before a scheduler step
        sched.step()
        train_step(m, opt)
    assert run.findings == []


# -- LR002 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda o: L.StepLR(o, 2, 0.5), lambda o: L.LambdaLR(o, lambda s: 0.9 ** s)])
def test_lr002_manual_write_while_scheduler_drives(make):
    m = model()
    opt = sgd(m)
    sched = make(opt)
    with audit(opt) as run:
        for i in range(6):
            if i == 3:
                for g in opt.param_groups:
                    g["lr"] = 0.5
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR002"]
    f = by_rule(run, "LR002")
    assert (f.step, f.group) == (3, 0)
    assert "0.5" in f.message and "before optimizer step 3" in f.message
    assert "rt_helpers.py:" in f.message  # where: the user code that called optimizer.step()
    assert run.lrs()[3] == 0.5


def test_lr002_write_before_a_chainable_scheduler_step_is_compounded():
    m = model()
    opt = sgd(m)
    sched = L.ExponentialLR(opt, gamma=0.5)
    with audit(opt) as run:
        for i in range(4):
            train_step(m, opt)
            if i == 1:
                opt.param_groups[0]["lr"] = 1.0
            sched.step()
    f = by_rule(run, "LR002")
    assert (f.step, f.group) == (2, 0)
    assert "ExponentialLR.step() was called" in f.message
    assert run.lrs() == [0.1, 0.05, 0.5, 0.25]


def test_lr002_good_manual_schedule_without_scheduler_is_silent():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    with audit(opt) as run:
        for i in range(6):
            for g, base in zip(opt.param_groups, (0.1, 0.01)):
                g["lr"] = base * (i + 1) / 6
            train_step(m, opt)
    assert run.findings == []
    assert run.lrs(1)[-1] == pytest.approx(0.01)


def test_lr002_good_lambda_schedule_and_load_state_dict_resume():
    m = model()
    opt = sgd(m)
    sched = L.LambdaLR(opt, lambda s: 0.5 ** s)
    for _ in range(3):
        train_step(m, opt)
        sched.step()
    ckpt = {"opt": opt.state_dict(), "sched": sched.state_dict()}
    opt2 = sgd(m, lr=0.7)
    sched2 = L.LambdaLR(opt2, lambda s: 0.5 ** s)
    with audit(opt2) as run:
        opt2.load_state_dict(ckpt["opt"])  # resume: the LR changes, legitimately
        sched2.load_state_dict(ckpt["sched"])
        for _ in range(2):
            train_step(m, opt2)
            sched2.step()
    assert run.findings == []
    assert run.lrs() == [0.1 * 0.5 ** 3, 0.1 * 0.5 ** 4]


# -- LR003 -----------------------------------------------------------------------------------------
def test_lr003_plateau_step_without_metric_is_explained_on_the_exception():
    m = model()
    opt = sgd(m)
    sched = L.ReduceLROnPlateau(opt)
    a = audit(opt)
    with pytest.raises(TypeError) as info:
        with a as run:
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR003"]
    assert by_rule(run, "LR003").step == 1
    assert any("LR003" in n for n in getattr(info.value, "__notes__", []))


def test_lr003_good_plateau_with_metric():
    m = model()
    opt = sgd(m)
    sched = L.ReduceLROnPlateau(opt)
    with audit(opt) as run:
        train_step(m, opt)
        sched.step(1.0)
    assert run.findings == []


# -- LR004 -----------------------------------------------------------------------------------------
def test_lr004_only_some_groups_updated_without_scheduler():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    with audit(opt) as run:
        for i in range(4):
            if i == 2:
                opt.param_groups[0]["lr"] = 0.05
            train_step(m, opt)
    assert rules(run) == ["LR004"]
    f = by_rule(run, "LR004")
    assert (f.step, f.group) == (2, 0)
    assert "only param group(s) 0" in f.message


def test_lr004_only_some_groups_with_scheduler_is_also_lr002():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    sched = L.StepLR(opt, 10)
    with audit(opt) as run:
        for i in range(4):
            if i == 2:
                opt.param_groups[1]["lr"] = 0.5
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR002", "LR004"]
    assert (by_rule(run, "LR004").step, by_rule(run, "LR004").group) == (2, 1)


def test_lr004_ratio_flattened_while_a_ratio_keeping_scheduler_drives():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    sched = L.ExponentialLR(opt, 0.9)
    with audit(opt) as run:
        for i in range(4):
            if i == 2:
                for g in opt.param_groups:
                    g["lr"] = 0.02  # one value into every group: the 10:1 ratio is gone
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR002", "LR004"]
    f = by_rule(run, "LR004")
    assert (f.step, f.group) == (2, 0)
    assert "ratios" in f.message


def test_lr004_good_all_groups_scaled_together():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    with audit(opt) as run:
        for i in range(4):
            for g in opt.param_groups:
                g["lr"] *= 0.5
            train_step(m, opt)
    assert run.findings == []


# -- LR005 -----------------------------------------------------------------------------------------
def test_lr005_scheduler_built_before_audit_never_stepped():
    m = model()
    opt = sgd(m)
    sched = L.CosineAnnealingLR(opt, T_max=10)  # noqa: F841 - never stepped, that is the bug
    with audit(opt) as run:
        for _ in range(10):
            train_step(m, opt)
    assert rules(run) == ["LR005"]
    f = by_rule(run, "LR005")
    assert (f.step, f.group) == (0, 0)
    assert "CosineAnnealingLR" in f.message and "10 steps" in f.message
    assert run.lrs() == [0.1] * 10


@pytest.mark.parametrize("replaced_after", [True, False])
def test_lr005_a_scheduler_replaced_by_one_that_steps(replaced_after):
    """Lightning's lr_find builds the module's StepLR, then swaps in its own scheduler that steps: the
    idle StepLR is no LR005 (the LR was not constant). A scheduler built after the other stopped
    stepping, and then never stepped itself, still is."""
    m = model()
    opt = sgd(m)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    with audit(opt) as run:
        if replaced_after:
            idle = L.StepLR(opt, 1)  # noqa: F841 - replaced before it ever steps
            swapped_in = L.ExponentialLR(opt, gamma=0.5)
            for _ in range(6):
                train_step(m, opt)
                swapped_in.step()
        else:
            first = L.ExponentialLR(opt, gamma=0.5)
            for _ in range(3):
                train_step(m, opt)
                first.step()
            idle = L.StepLR(opt, 1)  # noqa: F841 - built afterwards, never stepped while 6 updates ran
            for _ in range(6):
                train_step(m, opt)
    assert run.lrs() == used
    assert rules(run) == ([] if replaced_after else ["LR005"])


def test_lr005_scheduler_built_inside_never_stepped():
    m = model()
    opt = sgd(m)
    with audit(opt) as run:
        train_step(m, opt)
        sched = L.StepLR(opt, 1)  # noqa: F841
        for _ in range(5):
            train_step(m, opt)
    f = by_rule(run, "LR005")
    assert (f.step, rules(run)) == (1, ["LR005"])


def test_lr005_good_children_of_sequential_are_not_unstepped_schedulers():
    m = model()
    opt = sgd(m)
    a, b = L.LinearLR(opt, 0.1, total_iters=3), L.ExponentialLR(opt, 0.9)
    sched = L.SequentialLR(opt, [a, b], milestones=[3])
    with audit(opt) as run:
        for _ in range(8):
            train_step(m, opt)
            sched.step()
    assert run.findings == []


# -- LR006 -----------------------------------------------------------------------------------------
def test_lr006_scheduler_rebuilt_every_epoch():
    m = model()
    opt = sgd(m)
    with audit(opt) as run:
        for epoch in range(3):
            sched = L.StepLR(opt, step_size=2, gamma=0.5)
            for _ in range(2):
                train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR006"]
    f = by_rule(run, "LR006")
    assert (f.step, f.group) == (2, 0)
    assert "2 re-creations" in f.message
    assert run.lrs() == [0.1] * 6  # it never decays: every new StepLR restarts its count


def test_lr006_optimizer_rebuilt_inside_the_loop():
    m = model()
    opt = sgd(m, momentum=0.9)
    with audit() as run:
        for epoch in range(2):
            if epoch:
                opt = sgd(m, momentum=0.9)
            for _ in range(2):
                train_step(m, opt)
    assert rules(run) == ["LR006"]
    f = by_rule(run, "LR006")
    assert (f.optimizer, f.step) == ("lr-SGD", 2)
    assert [name for name, *_ in run.series()] == ["lr-SGD", "lr-SGD-1"]


def _linear_decay(total):  # transformers' get_linear_schedule_with_warmup without warm-up: 0 at `total`
    return lambda s: max(0.0, (total - s) / total)


@pytest.mark.parametrize("steps_first, expected", [(4, []), (2, ["LR006"])])
def test_lr006_a_new_schedule_after_one_that_decayed_to_zero_is_a_new_phase(steps_first, expected):
    """Two Trainer.train() calls in one audit: the second schedule is a new phase once the first ran
    down to 0 (its end), and still LR006 when the first is rebuilt half-way."""
    m = model()
    opt = sgd(m)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    with audit(opt) as run:
        for steps in (steps_first, 4):
            for g in opt.param_groups:  # each train() starts from the configured LR
                g["lr"] = g["initial_lr"] = 0.1
            sched = L.LambdaLR(opt, _linear_decay(4))
            for _ in range(steps):
                train_step(m, opt)
                sched.step()
    assert rules(run) == expected
    assert run.lrs() == used


def test_lr006_good_scheduler_built_once():
    m = model()
    opt = sgd(m)
    with audit(opt) as run:
        sched = L.StepLR(opt, step_size=2, gamma=0.5)
        for epoch in range(3):
            for _ in range(2):
                train_step(m, opt)
            sched.step()
    assert run.findings == []
    assert run.lrs() == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05]


# -- LR009 -----------------------------------------------------------------------------------------
def test_lr009_cosine_sized_in_epochs_stepped_per_batch():
    m = model()
    opt = sgd(m)
    sched = L.CosineAnnealingLR(opt, T_max=3)  # 3 "epochs"...
    with audit(opt) as run:
        for _ in range(6):  # ...stepped per batch
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR009"]
    f = by_rule(run, "LR009")
    assert (f.step, f.group) == (4, 0)  # steps 0..3 use epochs 0..T_max; step 4 uses epoch 4 > T_max
    assert "T_max=3" in f.message
    assert run.lrs()[4] > run.lrs()[3]  # climbing again


def test_lr009_onecycle_past_total_raises_and_is_explained():
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.OneCycleLR(opt, max_lr=1.0, total_steps=4)
    with pytest.raises(ValueError):
        with audit(opt) as run:
            for _ in range(6):
                train_step(m, opt)
                sched.step()
    assert [f.rule for f in run.findings] == ["LR009"]  # once, though OneCycleLR then raised
    f = by_rule(run, "LR009")
    assert f.step == 4  # the step that used the past-the-end LR
    assert "OneCycleLR" in f.message


@pytest.mark.parametrize("make", [lambda o: L.CosineAnnealingLR(o, T_max=6),
                                  lambda o: L.OneCycleLR(o, max_lr=1.0, total_steps=6)])
def test_lr009_good_canonical_loop_computes_but_never_uses_the_past_end_lr(make):
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = make(opt)
    with audit(opt) as run:
        for _ in range(6):
            train_step(m, opt)
            sched.step()  # the last one computes a past-the-end LR that no step uses
    assert run.findings == []


# -- LR011 -----------------------------------------------------------------------------------------
def test_lr011_two_independent_schedulers():
    m = model()
    opt = sgd(m)
    warm = L.LinearLR(opt, start_factor=0.1, total_iters=3)
    cos = L.CosineAnnealingLR(opt, T_max=10)
    with audit(opt) as run:
        for _ in range(6):
            train_step(m, opt)
            warm.step()
            cos.step()
    assert rules(run) == ["LR011"]
    f = by_rule(run, "LR011")
    assert (f.step, f.group) == (1, 0)  # step 1 is the first to use an LR both have written
    assert "LinearLR" in f.message and "CosineAnnealingLR" in f.message


@pytest.mark.parametrize("compose", ["sequential", "chained"])
def test_lr011_good_composed_schedulers(compose):
    m = model()
    opt = sgd(m)
    warm = L.LinearLR(opt, start_factor=0.1, total_iters=3)
    decay = L.ExponentialLR(opt, gamma=0.9)
    sched = (L.SequentialLR(opt, [warm, decay], milestones=[3]) if compose == "sequential"
             else L.ChainedScheduler([warm, decay]))
    with audit(opt) as run:
        for _ in range(6):
            train_step(m, opt)
            sched.step()
    assert run.findings == []


def test_lr011_good_manual_handover_between_schedulers():
    m = model()
    opt = sgd(m)
    warm = L.LinearLR(opt, start_factor=0.1, total_iters=3)
    with audit(opt) as run:
        for i in range(6):
            train_step(m, opt)
            if i < 3:
                warm.step()
            else:
                if i == 3:
                    cos = L.CosineAnnealingLR(opt, T_max=3)
                cos.step()
    assert run.findings == []


# -- LR013 -----------------------------------------------------------------------------------------
def test_lr013_scheduler_stepped_every_micro_batch_under_accumulation():
    m = model()
    opt = sgd(m)
    sched = L.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    with audit(opt) as run:
        for i in range(8):
            backward(m)
            if (i + 1) % 4 == 0:
                opt.step()
                opt.zero_grad()
            sched.step()
    assert rules(run) == ["LR013"]  # not LR001, although 3 scheduler steps precede the first update
    f = by_rule(run, "LR013")
    assert (f.step, f.group) == (0, 0)
    # 3 steps before the first update, 4 between two: the count before the first is no rate
    assert f.message.startswith("LambdaLR.step() ran 3 times before the first step of lr-SGD (all param "
                                "groups): the schedule runs ahead of training, as when scheduler.step() "
                                "runs every micro-batch under gradient accumulation.")
    assert "x faster" not in f.message
    assert run.steps() == 2


def test_lr013_good_scheduler_inside_the_accumulation_condition():
    m = model()
    opt = sgd(m)
    sched = L.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    with audit(opt) as run:
        for i in range(8):
            backward(m)
            if (i + 1) % 4 == 0:
                opt.step()
                opt.zero_grad()
                sched.step()
    assert run.findings == []
    assert run.lrs() == [0.1, 0.05]


def _amp_loop(opt, m, sched, bad_steps, n=5):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    for i in range(n):
        opt.zero_grad()
        loss = m(torch.randn(4, 3)).pow(2).mean() * (math.inf if i in bad_steps else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
    return scaler


@pytest.mark.parametrize("fused", [False, True])
def test_lr013_gradscaler_skipped_first_step_is_lr013_not_lr001(fused):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1, fused=fused)
    sched = L.StepLR(opt, step_size=1, gamma=0.5)
    with audit(opt) as run:
        quiet(lambda: _amp_loop(opt, m, sched, bad_steps={0}))
    assert rules(run) == ["LR013"]
    f = by_rule(run, "LR013")
    assert (f.step, f.group) == (0, 0)
    assert "GradScaler skipped 1" in f.message
    assert run.steps() == 4  # the skipped update is not a step: fused and non-fused agree
    assert run.lrs() == [0.05, 0.025, 0.0125, 0.00625]


@pytest.mark.parametrize("fused", [False, True])
def test_lr013_gradscaler_skip_mid_run(fused):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1, fused=fused)
    sched = L.StepLR(opt, step_size=1, gamma=0.5)
    with audit(opt) as run:
        quiet(lambda: _amp_loop(opt, m, sched, bad_steps={2}))
    assert rules(run) == ["LR013"]
    assert by_rule(run, "LR013").step == 2
    assert run.lrs() == [0.1, 0.05, 0.0125, 0.00625]


@pytest.mark.parametrize("fused", [False, True])
def test_lr013_good_gradscaler_without_skips(fused):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1, fused=fused)
    sched = L.StepLR(opt, step_size=1, gamma=0.5)
    with audit(opt) as run:
        _amp_loop(opt, m, sched, bad_steps=set())
    assert run.findings == []
    assert run.steps() == 5


def test_lr013_accelerate_accumulation_plain_vs_prepared_scheduler():
    from accelerate import Accelerator

    acc = Accelerator(cpu=True, gradient_accumulation_steps=2)
    m = model()
    opt = acc.prepare_optimizer(sgd(m))
    plain = L.StepLR(opt, 1, 0.5)

    def loop(sched):
        with audit(opt) as run:
            for _ in range(6):
                with acc.accumulate(m):
                    acc.backward(m(torch.randn(4, 3)).pow(2).mean())
                    opt.step()
                    sched.step()
                    opt.zero_grad()
        return run

    run = quiet(lambda s=plain: loop(s))  # stepped every micro-batch: twice per update
    assert rules(run) == ["LR013"]
    assert run.lrs() == [0.05, 0.0125, 0.003125]
    del plain  # otherwise still attached to opt, and never stepped in the next run: LR005
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] = 0.1
    prepared = acc.prepare_scheduler(L.StepLR(opt, 1, 0.5))  # steps only when the update happens
    run = loop(prepared)
    assert run.findings == []
    assert run.lrs() == [0.1, 0.05, 0.025]


# -- LR014 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,word", [(float("nan"), "NaN"), (float("inf"), "infinite"), (-0.01, "negative")])
def test_lr014_invalid_lr(bad, word):
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    with audit(opt) as run:
        train_step(m, opt)
        opt.param_groups[1]["lr"] = bad
        opt.param_groups[0]["lr"] = 0.2
        train_step(m, opt)
    assert rules(run) == ["LR014"]
    f = by_rule(run, "LR014")
    assert (f.step, f.group) == (1, 1)
    assert word in f.message


def test_lr014_from_a_schedule_formula():
    m = model()
    opt = sgd(m)
    sched = L.LambdaLR(opt, lambda s: 1.0 - s / 2)  # negative from step 3
    with audit(opt) as run:
        for _ in range(5):
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR014"]
    assert by_rule(run, "LR014").step == 3


def test_lr014_good_zero_lr_warmup_start_is_valid():
    m = model()
    opt = sgd(m)
    sched = L.LambdaLR(opt, lambda s: s / 3 if s < 3 else 1.0)  # LR 0 at step 0
    with audit(opt) as run:
        for _ in range(5):
            train_step(m, opt)
            sched.step()
    assert run.findings == []
    assert run.lrs()[0] == 0.0


# -- LR015 -----------------------------------------------------------------------------------------
def test_lr015_callable_expectation_mismatch():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, step_size=3, gamma=0.5)
    with audit(opt, expect=lambda s: 0.1 * 0.5 ** (s // 2)) as run:
        for _ in range(6):
            train_step(m, opt)
            sched.step()
    assert rules(run) == ["LR015"]
    f = by_rule(run, "LR015")
    assert (f.step, f.group) == (2, 0)
    lines = f.message.splitlines()
    assert "step" in lines[1] and "expected" in lines[1]
    assert lines[2].split()[:2] == ["2", "0"]  # the first divergence: step 2, group 0


def test_lr015_good_callable_per_group_and_sequence():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    sched = L.StepLR(opt, step_size=3, gamma=0.5)
    with audit(opt, expect=lambda s: [0.1 * 0.5 ** (s // 3), 0.01 * 0.5 ** (s // 3)], rtol=1e-9) as run:
        for _ in range(6):
            train_step(m, opt)
            sched.step()
    assert run.findings == []
    opt2 = sgd(m)
    with audit(opt2, expect=[0.1, 0.1, 0.2]) as run2:
        for i in range(3):
            if i == 2:
                opt2.param_groups[0]["lr"] = 0.2
            train_step(m, opt2)
    assert run2.findings == []


def test_lr015_sequence_length_mismatch():
    m = model()
    opt = sgd(m)
    with audit(opt, expect=[0.1, 0.1, 0.1]) as run:
        for _ in range(2):
            train_step(m, opt)
    f = by_rule(run, "LR015")
    assert "took 2 optimizer steps" in f.message and "has 3" in f.message


def test_lr015_expect_scheduler_per_step_catches_accumulation_drift():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, step_size=2, gamma=0.5)
    with audit(opt, expect="scheduler-per-step") as run:
        for i in range(8):
            backward(m)
            if i % 2 == 1:
                opt.step()
                opt.zero_grad()
            sched.step()
    assert rules(run) == ["LR013", "LR015"]  # LR013 explains the early scheduler step: no LR001
    assert by_rule(run, "LR013").step == 0
    f = by_rule(run, "LR015")
    assert "StepLR alone gives with one step per optimizer step" in f.message
    assert f.step == 1
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]  # the shadow left the real one alone


def test_lr015_tolerance():
    m = model()
    opt = sgd(m)
    with audit(opt, expect=lambda s: 0.1 * (1 + 1e-8)) as run:
        train_step(m, opt)
    assert run.findings == []
    with audit(opt, expect=lambda s: 0.1 * (1 + 1e-8), rtol=0.0) as run:
        train_step(m, opt)
    assert rules(run) == ["LR015"]
    with audit(opt, expect=lambda s: 0.1 + 1e-3, rtol=0.0, atol=1e-2) as run:
        train_step(m, opt)
    assert run.findings == []


def test_lr015_expect_per_optimizer_dict():
    g, d = model(), model()
    opt_g, opt_d = sgd(g), sgd(d, lr=0.2)
    sched_d = L.StepLR(opt_d, 1, 0.5)
    with audit([opt_g, opt_d], expect={opt_g: [0.1, 0.1], "lr-SGD-1": "scheduler"}) as run:
        for _ in range(2):
            train_step(g, opt_g)
            train_step(d, opt_d)
            opt_d.param_groups[0]["lr"] *= 1.0
            sched_d.step()
    assert run.findings == []
    with audit([opt_g, opt_d], expect={1: [0.05, 0.05]}) as run:
        for _ in range(2):
            train_step(g, opt_g)
            train_step(d, opt_d)
            sched_d.step()
    assert [(f.rule, f.optimizer, f.step) for f in run.findings] == [("LR015", "lr-SGD-1", 1)]


def test_lr015_expect_scheduler_cannot_simulate_plateau():
    from lraudit.runtime import LRAuditWarning

    m = model()
    opt = sgd(m)
    sched = L.ReduceLROnPlateau(opt)
    with pytest.warns(LRAuditWarning, match="cannot simulate ReduceLROnPlateau"):
        with audit(opt, expect="scheduler") as run:
            train_step(m, opt)
            sched.step(1.0)
    assert run.findings == []


def test_lr015_broken_expectation_is_a_warning_not_a_crash():
    from lraudit.runtime import LRAuditWarning

    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    with pytest.warns(LRAuditWarning, match="gave 3 LRs for 2 param groups"):
        with audit(opt, expect=lambda s: [0.1, 0.01, 0.5]) as run:
            train_step(m, opt)
    assert run.findings == []
