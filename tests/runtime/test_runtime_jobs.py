"""The runtime audit on jobs as they really run (issue 10, LR017-LR019, per-thread state).

Every recorded value is checked against an independent record: a step pre-hook of the test's own
(``own_record``), which sees the LR each update is about to use.
"""
import copy
import gc
import math
import sys
import threading
import warnings

import pytest
import torch
from rt_helpers import backward, by_rule, model, rules, train_step, two_groups
from torch.optim import lr_scheduler as L

from lraudit import LRAuditError
from lraudit.runtime import LRAuditWarning, audit


def sgd(m, lr=0.1, **kw):
    return torch.optim.SGD(m.parameters(), lr=lr, **kw)


def own_record(opt):
    """The LRs every update of ``opt`` is about to use, seen by a pre-hook of the test's own."""
    seen = []
    handle = opt.register_step_pre_hook(lambda o, a, k: seen.append([float(g["lr"]) for g in o.param_groups]))
    return seen, handle


def column(rows, j=0):
    return [r[j] for r in rows]


def halving(step):
    return 0.5 ** step


def checkpoint_after(n, make_sched=lambda o: L.LambdaLR(o, halving), momentum=0.9):
    m = model()
    opt = sgd(m, momentum=momentum)
    sched = make_sched(opt)
    for _ in range(n):
        train_step(m, opt)
        sched.step()
    return {"opt": opt.state_dict(), "sched": sched.state_dict(), "lr": opt.param_groups[0]["lr"]}


# -- item 1: discovery without a heap scan, resume, loads during the audit -----------------------------
@pytest.fixture
def no_heap_scan(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("lraudit scanned the heap")

    monkeypatch.setattr(gc, "get_referrers", refuse)
    monkeypatch.setattr(gc, "get_objects", refuse)


def test_resumed_scheduler_whose_state_was_touched_is_found_at_start(no_heap_scan):
    ck = checkpoint_after(3)
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.LambdaLR(opt, halving)
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])  # touches sched.__dict__: gc.get_referrers(opt) returns that dict
    with audit(opt) as run:
        for _ in range(4):
            train_step(m, opt)  # the resumed loop forgot sched.step()
    assert rules(run) == ["LR005"]
    assert "LambdaLR drives lr-SGD but was never stepped while the optimizer took 4 steps" in run.findings[0].message


@pytest.mark.parametrize("mode", ["scheduler", "scheduler-per-step"])
def test_correct_resume_is_silent_under_expect_scheduler(mode, no_heap_scan):
    ck = checkpoint_after(3)
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.LambdaLR(opt, halving)
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])
    seen, h = own_record(opt)
    with audit(opt, expect=mode) as run:
        for _ in range(5):
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.findings == []  # before: an off-by-one LR015 at every step
    assert run.lrs() == column(seen) == [0.1 * 0.5 ** k for k in range(3, 8)]


def test_loads_during_the_audit_reanchor_the_expectation():
    ck = checkpoint_after(2, lambda o: L.StepLR(o, 1, 0.5))
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.StepLR(opt, 1, 0.5)
    seen, h = own_record(opt)
    with audit(opt, expect="scheduler") as run:
        for i in range(6):
            if i == 3:  # a resume in the middle of the audit, back to the checkpoint's state
                opt.load_state_dict(ck["opt"])
                sched.load_state_dict(ck["sched"])
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.findings == []  # the load is no manual write, and the expectation follows it
    assert run.lrs() == column(seen) == [0.1, 0.05, 0.025, 0.025, 0.0125, 0.00625]


def test_lr018_closed_form_scheduler_built_after_the_optimizer_load():
    ck = checkpoint_after(3)
    m = model()
    opt = sgd(m, momentum=0.9)
    seen, h = own_record(opt)
    with audit(opt) as run:
        opt.load_state_dict(ck["opt"])
        sched = L.LambdaLR(opt, halving)  # rewrites the restored LR at construction
        sched.load_state_dict(ck["sched"])  # restores its count, not the LR
        reported = sched.get_last_lr()[0]
        for _ in range(3):
            train_step(m, opt)
            sched.step()
    h.remove()
    assert reported == pytest.approx(0.0125) and ck["lr"] == pytest.approx(0.0125)
    assert column(seen)[0] == 0.1 != reported  # the independent record: the update used 0.1
    assert run.lrs() == column(seen)
    f = by_rule(run, "LR018")
    assert rules(run) == ["LR018"] and (f.step, f.group) == (0, 0)
    assert "uses lr 0.1 in group 0 while the restored LambdaLR.get_last_lr() says 0.0125" in f.message
    assert "built after optimizer.load_state_dict()" in f.message


def test_lr018_silent_in_the_documented_order():
    ck = checkpoint_after(3)
    m = model()
    opt = sgd(m, momentum=0.9)
    seen, h = own_record(opt)
    with audit(opt) as run:
        sched = L.LambdaLR(opt, halving)
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        for _ in range(3):
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.findings == []
    assert run.lrs() == column(seen) == [0.1 * 0.5 ** k for k in range(3, 6)]


@pytest.mark.parametrize("cls", ["LambdaLR", "StepLR"])
def test_lr019_optimizer_restored_scheduler_not(cls):
    make = {"LambdaLR": lambda o: L.LambdaLR(o, halving), "StepLR": lambda o: L.StepLR(o, 1, 0.5)}[cls]
    ck = checkpoint_after(3, make)
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = make(opt)
    seen, h = own_record(opt)
    with audit(opt) as run:
        opt.load_state_dict(ck["opt"])  # the scheduler's state is forgotten
        for _ in range(3):
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.lrs() == column(seen)
    assert rules(run) == ["LR019"]
    f = run.findings[0]
    assert f"but {cls}, which drove it then, and its state was neither loaded" in f.message
    if cls == "LambdaLR":  # closed form: back to the start of the schedule after its first step
        assert column(seen)[1] == 0.05 and "jumps back to the start" in f.message
    else:  # chainable: decays the restored LR on its restarted count
        assert column(seen)[1] == pytest.approx(0.00625) and "restarted count" in f.message


@pytest.mark.parametrize("how", ["load", "last_epoch", "ctor_last_epoch", "step_epoch"])
def test_lr019_silent_when_the_scheduler_is_restored_or_repositioned(how):
    ck = checkpoint_after(3, lambda o: L.StepLR(o, 1, 0.5))
    m = model()
    opt = sgd(m, momentum=0.9)
    seen, h = own_record(opt)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")  # step(epoch) is deprecated
        with audit(opt) as run:
            if how != "ctor_last_epoch":
                sched = L.StepLR(opt, 1, 0.5)
            opt.load_state_dict(ck["opt"])
            if how == "load":
                sched.load_state_dict(ck["sched"])
            elif how == "last_epoch":
                sched.last_epoch = 3
            elif how == "ctor_last_epoch":
                sched = L.StepLR(opt, 1, 0.5, last_epoch=2)
            for i in range(3):
                train_step(m, opt)
                if how == "step_epoch":
                    sched.step(4 + i)
                else:
                    sched.step()
    h.remove()
    assert [f.rule for f in run.findings if f.rule in ("LR018", "LR019")] == []
    assert run.lrs() == column(seen)


# -- LR017: groups added after the scheduler ------------------------------------------------------------
def test_lr017_lambda_lr_is_explained_before_torch_raises():
    m = model()
    opt = torch.optim.SGD(m[0].parameters(), lr=0.1)
    sched = L.LambdaLR(opt, halving)
    got = []
    with pytest.raises(ValueError) as info:
        with audit(opt, on_finding=lambda f: got.append((f.rule, sched.last_epoch))) as run:
            train_step(m, opt)
            sched.step()
            opt.add_param_group({"params": m[1].parameters(), "lr": 0.3})
            train_step(m, opt)
            sched.step()  # torch 2.13: ValueError zip() argument 2 is shorter than argument 1
    assert got == [("LR017", 1)]  # found before torch's step ran (its count is still 1)
    assert rules(run) == ["LR017"]
    f = run.findings[0]
    assert f.group == 1 and "built for 1 (param group(s) 1 added after it was built" in f.message
    assert "raises ValueError at this step: zip() argument 2 is shorter than argument 1" in f.message
    assert any("LR017" in n for n in info.value.__notes__)


def test_lr017_says_what_the_scheduler_does_to_the_new_group_at_its_next_change():
    """StepLR at a step that changes no group: the message looks ahead to the decay that does, and that
    is what the real run then does to the added group (the test's own record)."""
    m = model()
    opt = torch.optim.SGD(m[0].parameters(), lr=0.1)
    sched = L.StepLR(opt, step_size=2, gamma=0.5)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append([g["lr"] for g in o.param_groups]))
    with audit(opt) as run:
        for _ in range(2):
            train_step(m, opt)
            sched.step()
        opt.add_param_group({"params": m[1].parameters(), "lr": 0.01})
        for _ in range(3):  # the first step after the new group changes nothing (last_epoch 3), the next decays
            train_step(m, opt)
            sched.step()
        train_step(m, opt)
    assert rules(run) == ["LR017"]
    assert ("In torch {} it schedules group(s) 1 from their own current LR with factors meant for other "
            "groups (group 1: 0.01 -> 0.005 at its step 2 from here)".format(torch.__version__.split("+")[0])
            in run.findings[0].message)
    assert [row[1] for row in used[2:]] == [0.01, 0.01, 0.005, 0.005]  # what torch did
    assert run.lrs(1) == [0.01, 0.01, 0.005, 0.005]


def test_lr017_strict_immediate_raises_instead_of_the_step():
    m = model()
    opt = torch.optim.SGD(m[0].parameters(), lr=0.1)
    sched = L.OneCycleLR(opt, max_lr=0.5, total_steps=10)
    with pytest.raises(LRAuditError) as info:
        with audit(opt, strict="immediate"):
            train_step(m, opt)
            sched.step()
            opt.add_param_group({"params": m[1].parameters(), "lr": 0.3})
            train_step(m, opt)
            sched.step()
    assert sched.last_epoch == 1  # the real step never ran
    assert [f.rule for f in info.value.findings] == ["LR017"]
    assert "raises KeyError at this step: 'initial_lr'" in str(info.value)


def test_lr017_silent_when_the_scheduler_is_rebuilt_after_the_new_group():
    m = model()
    opt = torch.optim.SGD(m[0].parameters(), lr=0.1)
    sched = L.LambdaLR(opt, halving)
    seen, h = own_record(opt)
    with audit(opt) as run:
        for i in range(4):
            if i == 2:  # unfreeze, then a new schedule over every group: a new phase, not LR006
                opt.add_param_group({"params": m[1].parameters(), "lr": 0.3})
                sched = L.LambdaLR(opt, [halving, halving])
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.findings == []
    assert run.lrs(0) == column(seen) and run.lrs(1) == [r[1] for r in seen[2:]]


# -- item 2: phases ----------------------------------------------------------------------------------
def _reset(m):
    for layer in m:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


@pytest.mark.parametrize("fresh_model", [False, True])
def test_kfold_new_optimizer_per_fold_is_a_phase(fresh_model):
    m = model()
    records = []
    with audit() as run:
        for fold in range(3):
            if fresh_model:
                m = model()
            else:
                _reset(m)  # same parameters, re-initialised
            opt = sgd(m, momentum=0.9)
            sched = L.StepLR(opt, 2, 0.5)
            seen, _ = own_record(opt)
            records.append(seen)
            for _ in range(4):
                train_step(m, opt)
                sched.step()
    assert run.findings == []
    assert [run.lrs(optimizer=k) for k in range(3)] == [column(r) for r in records]


def test_linear_probe_then_full_finetune_is_a_phase():
    m = model()
    with audit() as run:
        probe = torch.optim.AdamW(m[1].parameters(), lr=1e-3)
        for _ in range(3):
            train_step(m, probe)
        full = torch.optim.AdamW(m.parameters(), lr=1e-5)
        sched = L.CosineAnnealingLR(full, T_max=3)
        for _ in range(3):
            train_step(m, full)
            sched.step()
    assert run.findings == []


def test_lr006_optimizer_rebuilt_every_epoch_with_a_new_lr():
    m = model()
    with audit() as run:
        for epoch in range(4):
            opt = sgd(m, lr=0.1 * 0.9 ** epoch, momentum=0.9)  # a schedule by rebuilding: momentum restarts
            for _ in range(2):
                train_step(m, opt)
    assert "LR006" in rules(run)
    assert "the weights carried on: momentum and moment estimates restart" in by_rule(run, "LR006").message


def test_scheduler_restarted_after_its_schedule_ended_is_a_phase():
    m = model()
    opt = sgd(m)
    with audit(opt) as run:
        for stage in range(2):
            sched = L.CosineAnnealingLR(opt, T_max=3)
            for _ in range(3):
                train_step(m, opt)
                sched.step()
    assert run.findings == []


class GradualWarmup(L.LRScheduler):
    """A warm-up wrapper as in the well-known GradualWarmupScheduler: it steps ``after_scheduler`` itself,
    only once the warm-up is over."""

    def __init__(self, optimizer, total_epoch, after_scheduler):
        self.total_epoch = total_epoch
        self.after_scheduler = after_scheduler
        self.finished = False
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch > self.total_epoch:
            return self.after_scheduler.get_last_lr()
        return [b * (self.last_epoch + 1) / (self.total_epoch + 1) for b in self.base_lrs]

    def step(self, epoch=None):
        if self.last_epoch >= self.total_epoch:
            self.after_scheduler.step()
            self.last_epoch += 1
            self._last_lr = self.after_scheduler.get_last_lr()
        else:
            super().step()


@pytest.mark.parametrize("steps", [3, 8])
def test_scheduler_held_by_a_stepped_warmup_wrapper_counts_as_stepped(steps):
    m = model()
    opt = sgd(m)
    cosine = L.CosineAnnealingLR(opt, T_max=10)
    warm = GradualWarmup(opt, 5, cosine)
    seen, h = own_record(opt)
    with audit(opt) as run:
        for _ in range(steps):
            train_step(m, opt)
            warm.step()
    h.remove()
    assert run.findings == []  # not LR005 for the cosine stepped by the wrapper after the warm-up
    assert run.lrs() == column(seen)


def test_plateau_stepped_on_a_baseline_validation_is_not_lr001():
    m = model()
    opt = sgd(m)
    plateau = L.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    seen, h = own_record(opt)
    with audit(opt) as run:
        plateau.step(1.0)  # baseline validation before training
        for epoch in range(3):
            train_step(m, opt)
            plateau.step(1.0 + epoch)
    h.remove()
    assert run.findings == []
    assert run.lrs() == column(seen) == [0.1, 0.05, 0.025]  # patience 0, the loss never improves


def test_lr004_judges_the_write_a_clamp_at_a_floor_wrote_every_group():
    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.002), lr=0.1)
    min_lr = float("1e-3")
    seen, h = own_record(opt)
    with audit(opt) as run:
        for epoch in range(6):
            for _ in range(2):
                train_step(m, opt)
            for g in opt.param_groups:  # group 1 reaches its floor first, then stays there
                g["lr"] = max(g["lr"] * 0.5, min_lr)
    h.remove()
    assert run.findings == []
    assert run.lrs(0) == column(seen, 0) and run.lrs(1) == column(seen, 1)
    assert run.lrs(1)[-1] == min_lr and run.lrs(0)[-1] == pytest.approx(0.1 * 0.5 ** 5)


def test_lr004_clamp_with_one_group_at_its_floor_from_the_start():
    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.001), lr=0.1)
    min_lr = float("1e-3")  # an equal value written back is still a write
    with audit(opt) as run:
        for epoch in range(3):
            train_step(m, opt)
            for g in opt.param_groups:
                g["lr"] = max(g["lr"] * 0.5, min_lr)
    assert run.findings == []


def test_lr004_still_reported_when_only_one_group_is_written():
    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.01), lr=0.1)
    with audit(opt) as run:
        for epoch in range(3):
            train_step(m, opt)
            opt.param_groups[0]["lr"] = max(opt.param_groups[0]["lr"] * 0.5, 1e-3)
    assert rules(run) == ["LR004"]


# -- item 4: wrappers ----------------------------------------------------------------------------------
class LookaheadLike(torch.optim.Optimizer):
    """timm's Lookahead in shape: a torch Optimizer subclass that never runs Optimizer.__init__ (so no
    step hooks of its own), shares its base optimizer's param groups and slow-updates the weights."""

    def __init__(self, base_optimizer, alpha=0.5, k=2):
        self._base_optimizer = base_optimizer
        self.param_groups = base_optimizer.param_groups
        self.defaults = base_optimizer.defaults
        self.state = {}
        self.alpha, self.k, self.count = alpha, k, 0
        self.slow = [p.detach().clone() for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._base_optimizer.step(closure)
        self.count += 1
        if self.count % self.k == 0:
            for slow, p in zip(self.slow, [p for g in self.param_groups for p in g["params"]]):
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none=True):
        self._base_optimizer.zero_grad(set_to_none)

    def state_dict(self):
        return self._base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self._base_optimizer.load_state_dict(state_dict)


@pytest.mark.parametrize("global_audit", [False, True])
def test_lookahead_like_wrapper_is_unwrapped(global_audit):
    m = model()
    base = sgd(m)
    look = LookaheadLike(base)
    sched = L.CosineAnnealingLR(look, T_max=3)  # sized in epochs, stepped per batch: LR009
    seen, h = own_record(base)
    with audit(None if global_audit else look) as run:
        for _ in range(6):
            look.zero_grad()
            backward(m)
            look.step()
            sched.step()
    h.remove()
    assert [s[:2] for s in run.series()] == [("lr-SGD", "SGD")]
    assert run.steps() == 6 and run.lrs() == column(seen)
    assert rules(run) == ["LR009"]  # not LR013 on a tracker with 0 steps


def test_engine_exposing_a_zero_style_optimizer_is_unwrapped():
    class ZeroLike:  # no torch optimizer itself
        def __init__(self, optimizer):
            self.optimizer = optimizer

        @property
        def param_groups(self):
            return self.optimizer.param_groups

    class Engine(torch.nn.Module):
        def __init__(self, module, optimizer):
            super().__init__()
            self.module = module
            self.optimizer = ZeroLike(optimizer)

    m = model()
    opt = sgd(m)
    engine = Engine(m, opt)
    with audit(engine) as run:
        train_step(m, opt)
    assert run.lrs() == [0.1]


def test_an_object_that_cannot_be_hooked_gets_one_warning_and_training_goes_on():
    class NotInitialised(torch.optim.Optimizer):
        def __init__(self, params):
            self.param_groups = [{"params": list(params), "lr": 0.1}]

        def step(self, closure=None):
            return None

    m = model()
    with pytest.warns(LRAuditWarning, match="cannot audit NotInitialised") as record:
        with audit(NotInitialised(m.parameters())) as run:
            pass
    assert len([w for w in record if "cannot audit" in str(w.message)]) == 1
    assert run.series() == []


# -- item 5: closures ------------------------------------------------------------------------------------
def test_lbfgs_records_the_lr_read_before_the_closure():
    m = model()
    opt = torch.optim.LBFGS(m.parameters(), lr=0.5, max_iter=3)
    seen, h = own_record(opt)
    x = torch.randn(8, 3)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 1:
            opt.param_groups[0]["lr"] = 0.25  # LBFGS already read 0.5 for this step
        opt.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        return loss

    with audit(opt) as run:
        opt.step(closure)
        opt.step(closure)
    h.remove()
    assert run.lrs() == column(seen) == [0.5, 0.25]


def test_sgd_with_a_closure_still_records_the_lr_after_it():
    m = model()
    opt = sgd(m, lr=0.5)
    before = [p.detach().clone() for p in m.parameters()]
    x = torch.randn(8, 3)

    def closure():
        opt.param_groups[0]["lr"] = 0.25  # SGD reads the LR after calling the closure
        opt.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        return loss

    with audit(opt) as run:
        opt.step(closure)
    p0, g0 = before[0], next(m.parameters())
    grad = g0.grad
    used = ((p0 - g0.detach()) / grad)[grad.abs() > 1e-6]  # plain SGD: p_new = p - lr * grad
    assert torch.allclose(used, torch.full_like(used, 0.25), rtol=1e-4)
    assert run.lrs() == [0.25]


# -- item 6: live findings -------------------------------------------------------------------------------
def test_findings_grow_during_the_run_and_the_callback_gets_each():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    got = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with audit(opt, on_finding=got.append) as run:
            sched.step()  # LR001
            for i in range(3):
                train_step(m, opt)
                if i == 1:
                    during = [f.rule for f in run.findings]
                    warned = [str(w.message).split()[0] for w in caught if issubclass(w.category, LRAuditWarning)]
                sched.step()
    assert during == ["LR001"] and warned == ["LR001"]  # known (and warned) before the run ended
    assert [f.rule for f in got] == ["LR001"] and rules(run) == ["LR001"]


def test_strict_immediate_raises_at_the_first_finding_before_the_update():
    m = model()
    opt = sgd(m)
    with pytest.raises(LRAuditError) as info:
        with audit(opt, strict="immediate") as run:
            train_step(m, opt)
            opt.param_groups[0]["lr"] = float("nan")
            before = [p.detach().clone() for p in m.parameters()]
            train_step(m, opt)  # raises in the pre-hook: the update never ran
    assert [f.rule for f in info.value.findings] == ["LR014"]
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    # the refused step is not recorded: step k is the k-th update applied
    assert rules(run) == ["LR014"] and run.steps() == 1 and run.lrs() == [0.1]


@pytest.mark.parametrize("targeted", [True, False])  # audit(opt)'s hooks, audit()'s global ones
def test_strict_immediate_records_only_the_updates_applied(targeted):
    """A manual write found at the next update's start: raised there, that update never runs, and the
    run records exactly the updates applied (counted and read by the test's own hooks)."""
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 100)
    applied, used = [], []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    opt.register_step_post_hook(lambda o, a, k: applied.append(used[-1]))
    with pytest.raises(LRAuditError) as info:
        with audit(opt if targeted else None, strict="immediate") as run:
            for it in range(10):
                if it == 5:
                    opt.param_groups[0]["lr"] = 0.5  # fights StepLR: LR002, decided at the next update
                train_step(m, opt)
                sched.step()
    # audit()'s global pre-hook runs before the optimizer's own ones: the test's pre-hook then never saw
    # the refused update
    assert [f.rule for f in info.value.findings] == ["LR002"] and len(applied) == 5
    assert len(used) == (6 if targeted else 5)
    assert run.steps() == 5 and run.lrs() == applied
    assert [(f.rule, f.step) for f in run.findings] == [("LR002", 5)]


def test_strict_immediate_on_a_finding_after_the_update_raises_between_steps():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    with pytest.raises(LRAuditError):
        with audit(opt, strict="immediate"):
            sched.step()
            train_step(m, opt)
            after_first = [p.detach().clone() for p in m.parameters()]
            train_step(m, opt)  # LR001 becomes certain after this update (not LR013): raised after it
    with torch.no_grad():
        assert not all(torch.equal(a, b) for a, b in zip(after_first, m.parameters()))  # that update completed


def test_strict_value_is_checked():
    with pytest.raises(ValueError):
        audit(None, strict="later")


# -- item 7: cost ------------------------------------------------------------------------------------------
def test_entering_and_leaving_never_scans_the_heap(no_heap_scan):
    tensors = [torch.zeros(1) for _ in range(20_000)]  # a heap to scan, if anything did
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 2)
    with audit(opt) as run:
        train_step(m, opt)
        sched.step()
    with audit() as run2:
        train_step(m, opt)
    assert run.lrs() == [0.1] and run2.lrs() == [0.1] and len(tensors) == 20_000


# -- issue 13 item 7: per-thread state -------------------------------------------------------------------
def test_two_threads_each_auditing_their_own_optimizer():
    barrier = threading.Barrier(2, timeout=20)
    results = {}

    def work(name):
        m = model()
        opt = sgd(m)

        def factor(step):
            if step:
                barrier.wait()  # both threads are inside a scheduler step at once
            return 0.9 ** step

        sched = L.LambdaLR(opt, factor)
        seen, _ = own_record(opt)
        with audit(opt) as run:
            for _ in range(4):
                train_step(m, opt)
                sched.step()
        results[name] = (run, seen)

    threads = [threading.Thread(target=work, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in "ab":
        run, seen = results[name]
        assert run.findings == []  # a process-wide nesting counter gave LR002 here
        assert run.lrs() == column(seen) and all(math.isclose(v, 0.1 * 0.9 ** k) for k, v in enumerate(run.lrs()))


# -- a real stack: accelerate's save_state / load_state -------------------------------------------------
def test_accelerate_resume_with_load_state_is_silent_and_exact(tmp_path):
    accelerate = pytest.importorskip("accelerate")

    def build():
        acc = accelerate.Accelerator(cpu=True)
        m = model()
        opt = sgd(m, momentum=0.9)
        sched = L.LambdaLR(opt, halving)
        return (acc, *acc.prepare(m, opt, sched))

    acc, m, opt, sched = build()
    for _ in range(3):
        opt.zero_grad()
        backward(m)
        opt.step()
        sched.step()
    acc.save_state(str(tmp_path / "ckpt"))

    acc, m, opt, sched = build()
    seen, h = own_record(opt.optimizer)
    with audit(opt, expect="scheduler") as run:
        acc.load_state(str(tmp_path / "ckpt"))  # optimizer and scheduler, in accelerate's order
        for _ in range(3):
            opt.zero_grad()
            backward(m)
            opt.step()
            sched.step()
    h.remove()
    assert run.findings == []
    assert run.lrs() == column(seen) == [0.1 * 0.5 ** k for k in range(3, 6)]


def test_rolling_the_optimizer_back_to_a_state_its_scheduler_agrees_with_is_no_lr019(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    acc = accelerate.Accelerator(cpu=True)
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.LambdaLR(opt, halving)
    m, opt, sched = acc.prepare(m, opt, sched)
    for _ in range(3):
        opt.zero_grad()
        backward(m)
        opt.step()
        sched.step()
    state = opt.state_dict()
    with audit(opt) as run:
        opt.load_state_dict(state)  # the scheduler's state is not restored
        for _ in range(2):
            opt.zero_grad()
            backward(m)
            opt.step()
            sched.step()
    assert rules(run) == []  # the scheduler was never reset: it stands where the restored LR is


def test_warnings_turned_into_errors_are_raised_at_exit_not_inside_a_step():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LRAuditWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        with pytest.raises(LRAuditWarning, match="LR001"):
            with audit(opt):
                sched.step()
                for _ in range(3):
                    train_step(m, opt)  # never interrupted by the warning
                    sched.step()
                steps_done = 3
    assert steps_done == 3


def test_torchs_warnings_about_a_scheduler_step_name_the_line_that_called_it():
    import inspect

    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    lines = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with audit(opt):
            lines["before"] = inspect.currentframe().f_lineno + 1
            sched.step()  # before optimizer.step(): torch warns
            train_step(m, opt)
            lines["epoch"] = inspect.currentframe().f_lineno + 1
            sched.step(3)  # an explicit epoch: torch warns it is deprecated
            train_step(m, opt)
    torch_said = {str(w.message)[:30]: (w.filename, w.lineno) for w in caught
                  if w.category is UserWarning}
    assert torch_said == {"Detected call of `lr_scheduler": (__file__, lines["before"]),
                          "The epoch parameter in `schedu": (__file__, lines["epoch"])}


def test_a_warning_turned_into_an_error_in_the_block_is_not_replaced_by_lraudits():
    m, other = model(), model()
    opt, other_opt = sgd(m), sgd(other)
    sched = L.StepLR(opt, 1, 0.5)  # never stepped: LR005 at exit
    other_sched = L.ExponentialLR(other_opt, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="Detected call of `lr_scheduler.step") as info:
            with audit(opt):
                train_step(m, opt)
                train_step(m, opt)
                other_sched.step()  # before its optimizer's first step: torch's warning, an error here
    assert type(info.value) is UserWarning  # not lraudit's LR005 warning raised over it
    if sys.version_info >= (3, 11):  # exception notes
        assert any("LR005 scheduler-never-stepped" in note for note in info.value.__notes__)  # not lost
    assert sched.last_epoch == 0


def test_one_audit_per_epoch_with_the_scheduler_stepped_after_the_block():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    seen, h = own_record(opt)
    runs = []
    for _ in range(3):
        with audit(opt) as run:
            for _ in range(4):
                train_step(m, opt)
        runs.append(run)
        sched.step()
    h.remove()
    # the first audit cannot tell this from a forgotten step, and its message says what to do
    assert [(f.rule, f.step) for f in runs[0].findings] == [("LR005", 0)]
    assert "stepped after the audited block (one audit per epoch)" in runs[0].findings[0].message
    # the scheduler moved between the audits: stepped outside them, not LR005 again
    assert [r.findings for r in runs[1:]] == [[], []]
    assert [lr for r in runs for lr in r.lrs()] == column(seen) == [0.1] * 4 + [0.05] * 4 + [0.025] * 4


def test_a_resumed_scheduler_never_stepped_is_lr005_at_every_audit():
    ck = checkpoint_after(2, lambda o: L.StepLR(o, 1, 0.5))
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.StepLR(opt, 1, 0.5)
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])
    seen, h = own_record(opt)
    found = []
    for _ in range(2):
        with audit(opt) as run:
            for _ in range(3):
                train_step(m, opt)
        found.append([(f.rule, f.step) for f in run.findings])
    h.remove()
    assert found == [[("LR005", 0)], [("LR005", 0)]]  # it never moves: nothing steps it
    assert column(seen) == [0.025] * 6


def _warmup_then_main(opt, main):
    warm = L.LinearLR(opt, 0.1, total_iters=3)
    return warm, main(opt)


@pytest.mark.parametrize("bug", [False, True], ids=["restored in torch's order", "main built after the load"])
def test_lr018_with_a_finished_warm_up_and_the_main_schedule_restored(bug):
    decay = lambda o: L.LambdaLR(o, lambda e: 0.8 ** e)  # noqa: E731 (closed form: its construction writes)
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    warm, main = _warmup_then_main(opt, decay)
    for it in range(6):
        train_step(m, opt)
        (warm if it < 3 else main).step()
    saved_lr = opt.param_groups[0]["lr"]
    ck = {"opt": opt.state_dict(), "warm": warm.state_dict(), "main": main.state_dict()}

    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    seen, h = own_record(opt)
    with audit(opt) as run:
        if bug:
            opt.load_state_dict(ck["opt"])
            warm, main = _warmup_then_main(opt, decay)  # LambdaLR's construction rewrites the restored LR
        else:
            warm, main = _warmup_then_main(opt, decay)
            opt.load_state_dict(ck["opt"])
        warm.load_state_dict(ck["warm"])
        main.load_state_dict(ck["main"])
        for _ in range(3):
            train_step(m, opt)
            main.step()
    h.remove()
    assert run.lrs() == column(seen)
    if bug:
        assert column(seen)[0] != saved_lr
        assert [(f.rule, f.step) for f in run.findings] == [("LR018", 0)]
        assert "restored LambdaLR.get_last_lr()" in run.findings[0].message  # the one still running
    else:
        assert column(seen)[0] == saved_lr  # the main schedule's, not the finished warm-up's get_last_lr()
        assert run.findings == []  # before: LR018 against the warm-up's last LR


def _two_stages(write_then, keep_stepping=False):
    """Stage 1: a schedule that ends (LinearLR decaying to 0 over 4 steps). Then the LR is written for
    stage 2, which ``write_then`` builds a scheduler for (or None)."""
    m = model()
    opt = sgd(m)
    first = L.LambdaLR(opt, lambda e: max(0.0, 1 - e / 4))
    seen, h = own_record(opt)
    with audit(opt) as run:
        for _ in range(4):
            train_step(m, opt)
            first.step()
        opt.param_groups[0]["lr"] = 0.05  # the next stage's LR
        second = write_then(opt)
        for _ in range(3):
            train_step(m, opt)
            if second is not None:
                second.step()
            if keep_stepping:
                first.step()
    h.remove()
    return run, column(seen)


def test_a_write_after_the_schedule_ended_sets_the_next_stage():
    run, seen = _two_stages(lambda o: L.StepLR(o, 1, 0.5))
    assert seen == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.05, 0.025, 0.0125], rel=1e-12)
    assert run.findings == []  # before: LR002, the ended schedule taken as still fighting the write
    run, seen = _two_stages(lambda o: None)  # stage 2 at a constant LR
    assert seen[4:] == [0.05] * 3 and run.findings == []


def test_a_write_the_ended_schedule_still_overwrites_is_lr002():
    run, seen = _two_stages(lambda o: None, keep_stepping=True)
    assert seen[4:] == [0.05, 0.0, 0.0]  # LambdaLR recomputes from its base: the write lasted one update
    assert [(f.rule, f.step) for f in run.findings] == [("LR002", 4)]


def _stage_two_after_a_load(state_of):
    m = model()
    opt = sgd(m, momentum=0.9)
    first = L.StepLR(opt, 1, 0.5)
    for _ in range(3):
        train_step(m, opt)
        first.step()
    seen, h = own_record(opt)
    with audit(opt) as run:
        opt.load_state_dict(state_of(opt))
        warm = L.LambdaLR(opt, lambda e: min(1.0, (e + 1) / 3))  # the next stage's warm-up, built fresh
        for _ in range(3):
            train_step(m, opt)
            warm.step()
    h.remove()
    assert run.lrs() == column(seen)
    return run, column(seen)


def test_an_optimizer_handed_its_own_state_is_not_a_resume():
    """accelerate's AcceleratedOptimizer loads ``optimizer.state_dict()`` when it wraps an optimizer: a
    Trainer for a second stage over the same optimizer is no resume."""
    run, seen = _stage_two_after_a_load(lambda opt: opt.state_dict())
    assert seen == pytest.approx([0.1 / 3, 0.2 / 3, 0.1], rel=1e-12)
    assert run.findings == []  # before: LR019, the new stage's scheduler taken as not restored
    ck = checkpoint_after(2, lambda o: L.StepLR(o, 1, 0.5))
    run, _ = _stage_two_after_a_load(lambda opt: ck["opt"])  # a checkpoint of another step: a resume
    assert [f.rule for f in run.findings] == ["LR019"]


class MultiplierLR(L.LRScheduler):
    """detectron2's LRMultiplier in shape: its state is ``base_lrs`` and ``last_epoch`` only."""

    def __init__(self, optimizer, max_iter):
        self.max_iter = max_iter
        super().__init__(optimizer)

    def state_dict(self):
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self):
        return [base * (0.1 if self.last_epoch >= self.max_iter // 2 else 1.0) for base in self.base_lrs]


def test_a_scheduler_state_without_its_last_lr_is_not_compared_with_get_last_lr():
    m = model()
    opt = sgd(m, lr=0.02, momentum=0.9)
    sched = MultiplierLR(opt, 40)
    for _ in range(25):
        train_step(m, opt)
        sched.step()
    ck = {"opt": opt.state_dict(), "sched": sched.state_dict()}
    opt = sgd(m, lr=0.02, momentum=0.9)
    sched = MultiplierLR(opt, 40)
    seen, h = own_record(opt)
    with audit(opt) as run:
        opt.load_state_dict(ck["opt"])  # torch's order: build, load the optimizer, load the scheduler
        sched.load_state_dict(ck["sched"])
        assert sched.get_last_lr() == [0.02]  # stale: the fresh construction's
        for _ in range(5):
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.lrs() == column(seen) == pytest.approx([0.002] * 5, rel=1e-12)  # the uninterrupted run's
    assert run.findings == []  # before: LR018 against the stale get_last_lr()


@pytest.mark.parametrize("restored", [True, False])
def test_an_optimizer_rebuilt_and_restored_in_process_is_a_resume_not_lr006(restored):
    m = model()
    opt = sgd(m, momentum=0.9)
    sched = L.StepLR(opt, 5, 0.5)
    seen, h = own_record(opt)
    with audit(None) as run:
        for _ in range(10):
            train_step(m, opt)
            sched.step()
        ck = {"opt": opt.state_dict(), "sched": sched.state_dict()}
        h.remove()
        opt = sgd(m, momentum=0.9)  # same parameters, same settings: a rebuild
        sched = L.StepLR(opt, 5, 0.5)
        if restored:
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
        more, h = own_record(opt)
        for _ in range(5):
            train_step(m, opt)
            sched.step()
    h.remove()
    assert run.lrs(optimizer=0) == column(seen) == [0.1] * 5 + [0.05] * 5
    assert run.lrs(optimizer=1) == column(more) == ([0.025] * 5 if restored else [0.1] * 5)
    if restored:
        assert run.findings == []  # before: LR006, "momentum restarts", though it was restored
    else:
        assert [f.rule for f in run.findings] == ["LR006"]


def test_lr001_on_a_resume_built_with_last_epoch_and_stepped_before_the_updates():
    """``MultiStepLR(..., last_epoch=start - 1)`` (the documented resume) stepped at each epoch's start:
    every epoch uses the next one's LR. Unlike a last_epoch set by hand, the constructor moves the
    step count with it."""
    m = model()
    opt = sgd(m)
    for g in opt.param_groups:
        g["initial_lr"] = 0.1
    sched = L.MultiStepLR(opt, [4], 0.1, last_epoch=1)  # resumed at epoch 2
    seen, h = own_record(opt)
    with audit(opt) as run:
        for _ in range(2, 5):
            sched.step()  # before the epoch's updates
            for _ in range(2):
                train_step(m, opt)
    h.remove()
    assert column(seen) == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.01], rel=1e-12)  # epoch 3 at 0.01
    assert [(f.rule, f.step) for f in run.findings] == [("LR001", 0)]


def test_lr018_an_optimizer_restored_from_an_older_checkpoint_than_its_schedulers():
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    warm, main = L.LinearLR(opt, 0.1, total_iters=3), L.StepLR(opt, 2, 0.5)
    checkpoints = []
    for it in range(9):
        train_step(m, opt)
        (warm if it < 3 else main).step()
        checkpoints.append({"opt": copy.deepcopy(opt.state_dict()), "warm": warm.state_dict(),
                            "main": main.state_dict()})
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    warm, main = L.LinearLR(opt, 0.1, total_iters=3), L.StepLR(opt, 2, 0.5)
    seen, h = own_record(opt)
    with audit(opt) as run:
        opt.load_state_dict(checkpoints[2]["opt"])  # the end of the warm-up: LR 0.1
        warm.load_state_dict(checkpoints[8]["warm"])
        main.load_state_dict(checkpoints[8]["main"])  # the main schedule at 0.025
        for _ in range(2):
            train_step(m, opt)
            main.step()
    h.remove()
    assert column(seen)[0] == pytest.approx(0.1) and main.get_last_lr() != [0.1]
    # the finished warm-up's last LR (the base LR) agrees; the running main schedule decides
    assert [(f.rule, f.step) for f in run.findings] == [("LR018", 0)]
    assert "StepLR.get_last_lr()" in run.findings[0].message


def test_a_roll_back_to_a_snapshot_held_by_reference_is_a_resume():
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    sched = L.StepLR(opt, 1, 0.5)
    with audit(opt) as run:
        for it in range(6):
            train_step(m, opt)
            sched.step()
            if it == 1:
                snap = opt.state_dict()  # no copy: the live state tensors, the LRs of that time
        opt.load_state_dict(snap)  # back to lr 0.025 while the scheduler stays at its step 6
        for _ in range(2):
            train_step(m, opt)
            sched.step()
    assert [f.rule for f in run.findings] == ["LR019"]


def _rebuilt_every_epoch(make, load=None):
    m = model()
    opt = make(m)
    sched = L.StepLR(opt, 2, 0.5)
    with audit(None) as run:
        for epoch in range(3):
            if epoch:
                opt = make(m)
                sched = L.StepLR(opt, 2, 0.5)
                if load is not None:
                    opt.load_state_dict(load)
                    sched.load_state_dict(load_sched)
            for _ in range(2):
                train_step(m, opt)
                sched.step()
            if epoch == 0 and load is not None:
                load, load_sched = copy.deepcopy(opt.state_dict()), sched.state_dict()
    return run


def test_lr006_for_rebuilds_whose_state_was_made_by_the_constructor_or_loaded_again():
    # Adagrad fills its state in its constructor: a rebuild is still a restart
    run = _rebuilt_every_epoch(lambda m: torch.optim.Adagrad(m.parameters(), lr=0.1))
    assert [f.rule for f in run.findings] == ["LR006", "LR006"]
    # the same checkpoint loaded into every rebuild: each epoch restarts from it
    run = _rebuilt_every_epoch(lambda m: torch.optim.Adam(m.parameters(), lr=0.1), load={})
    # the first load is a resume; the third optimizer, loaded with it again, restarts what both before it
    # had trained (each optimizer's series gets its LR006)
    assert [(f.rule, f.optimizer) for f in run.findings] == [("LR006", "lr-Adam"), ("LR006", "lr-Adam-1")]


@pytest.mark.parametrize("stage_two", ["LambdaLR", "LambdaLR, initial_lr set too", "LinearLR"])
def test_a_write_lost_to_a_stale_initial_lr_of_the_next_stages_scheduler(stage_two):
    """Stage 2 writes its LR and builds a new scheduler; LambdaLR takes its base from the 'initial_lr' the
    stage-1 scheduler left in the group (torch's setdefault), so the written LR is never used."""
    m = model()
    opt = sgd(m)
    first = L.StepLR(opt, 3, 0.5)
    seen, h = own_record(opt)
    with audit(opt) as run:
        for _ in range(6):
            train_step(m, opt)
            first.step()
        for g in opt.param_groups:
            g["lr"] = 0.01
            if stage_two == "LambdaLR, initial_lr set too":
                g["initial_lr"] = 0.01
        second = (L.LinearLR(opt, 0.5, total_iters=2) if stage_two == "LinearLR"
                  else L.LambdaLR(opt, lambda k: 0.9 ** k))
        for _ in range(3):
            train_step(m, opt)
            second.step()
    h.remove()
    stage = column(seen)[6:]
    if stage_two == "LambdaLR":
        assert stage == pytest.approx([0.1, 0.09, 0.081], rel=1e-12)  # from the stale 0.1, not 0.01
        assert [(f.rule, f.step) for f in run.findings] == [("LR002", 6)]
        assert "takes its base LR from the group's 'initial_lr' (0.1" in run.findings[0].message
    else:
        expected = [0.01, 0.009, 0.0081] if stage_two.startswith("LambdaLR") else [0.005, 0.0075, 0.01]
        assert stage == pytest.approx(expected, rel=1e-12)
        assert run.findings == []
