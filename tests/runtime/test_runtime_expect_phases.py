"""expect="scheduler" across phases: schedulers that step one after the other (a warm-up then a schedule
stepped by hand, cosine then SWALR, a new scheduler for an unfreezing stage) are replayed each from
where it took over; schedulers whose steps interleave are not phases, and their effect stays LR015.

Every recorded value is checked against an independent record: a step pre-hook of the test's own, and
where the schedule has a closed form, that form.
"""
import contextlib
import math
import warnings

import pytest
import torch
from rt_helpers import model, train_step
from torch.optim import lr_scheduler as L
from torch.optim.swa_utils import SWALR

from lraudit.runtime import LRAuditWarning, audit

EPOCHS, BATCHES, SWA_START = 10, 3, 6


def own_record(opt):
    """The LR of group 0 each update of ``opt`` is about to use, seen by a pre-hook of the test's own."""
    seen = []
    handle = opt.register_step_pre_hook(lambda o, a, k: seen.append(float(o.param_groups[0]["lr"])))
    return seen, handle


def found(run):
    return [(f.rule, f.step) for f in run.findings]


def swa_recipe(spec="scheduler", swalr_built="upfront", write_at_epoch=None):
    """torch's SWA recipe: CosineAnnealingLR per epoch, then SWALR from SWA_START on (swa_lr below the
    LR cosine reaches there, so a replay of cosine alone differs from the run)."""
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    cosine = L.CosineAnnealingLR(opt, T_max=EPOCHS)
    swa = SWALR(opt, swa_lr=0.01, anneal_epochs=2) if swalr_built == "upfront" else None
    seen, handle = own_record(opt)
    with audit(opt, expect=spec) as run:
        for epoch in range(EPOCHS):
            if epoch == SWA_START and swa is None:  # built when its stage starts (Lightning's callback)
                swa = SWALR(opt, swa_lr=0.01, anneal_epochs=2)
            for _ in range(BATCHES):
                train_step(m, opt)
            (swa if epoch >= SWA_START else cosine).step()
            if epoch == write_at_epoch:  # after the step: the next epoch trains at it
                opt.param_groups[0]["lr"] = 0.5
    handle.remove()
    return run, seen


@pytest.mark.parametrize("swalr_built", ["upfront", "at its stage"])
def test_swa_recipe_is_silent_and_recorded_exactly(swalr_built):
    run, seen = swa_recipe(swalr_built=swalr_built)
    assert found(run) == []  # before: LR015 from the first SWALR step on (cosine replayed alone)
    assert run.lrs() == seen
    cosine_part = [0.1 * (1 + math.cos(math.pi * e / EPOCHS)) / 2 for e in range(SWA_START)]
    assert seen[::BATCHES][:SWA_START] == pytest.approx(cosine_part, rel=1e-12)
    assert seen[-1] == pytest.approx(0.01, rel=1e-12)  # annealed to swa_lr


def test_swa_recipe_with_a_manual_write_in_the_swa_stage_is_lr015():
    run, seen = swa_recipe(write_at_epoch=7)
    step = 8 * BATCHES  # the first update after the write
    assert seen[step] == 0.5
    assert found(run) == [("LR002", step), ("LR015", step)]
    lr015 = [f for f in run.findings if f.rule == "LR015"][0]
    assert "CosineAnnealingLR then SWALR alone give" in lr015.message


def test_swa_recipe_per_step_still_checks_the_cadence():
    run, _ = swa_recipe(spec="scheduler-per-step")
    assert found(run) == [("LR015", 1)]  # stepped per epoch, not per update


def warmup_then_cosine(interleave=False, reset_at_switch=False, spec="scheduler", same_gap=False,
                       hidden=False):
    """A hand-written hand-over: LinearLR for the first WARM updates, then CosineAnnealingLR (built up
    front, so it starts from the LR the warm-up left, as it reads the group's LR). ``same_gap``: the
    cosine's first step right after the warm-up's last one; ``hidden``: the schedulers are kept where
    the audit does not find them at its start (a closure), so each is first seen at its first step."""
    warm_n, total = 5, 25
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)

    def build():
        warm = L.LinearLR(opt, start_factor=0.1, total_iters=warm_n)
        cosine = L.CosineAnnealingLR(opt, T_max=total - warm_n + same_gap)

        def schedule(it):
            if it < warm_n:
                warm.step()
                if interleave:
                    cosine.step()
            if it >= warm_n - same_gap:
                if reset_at_switch and it == warm_n:
                    opt.param_groups[0]["lr"] = 1e-3 * 0.1
                cosine.step()
        return schedule, (warm, cosine)

    schedule, kept = build()
    if hidden:
        del kept
    seen, handle = own_record(opt)
    with audit(opt, expect=spec) as run:
        for it in range(total):
            train_step(m, opt)
            schedule(it)
    handle.remove()
    return run, seen, warm_n


@pytest.mark.parametrize("spec", ["scheduler", "scheduler-per-step"])
def test_warmup_then_cosine_by_hand_is_silent_and_exact(spec):
    run, seen, warm_n = warmup_then_cosine(spec=spec)
    assert found(run) == []  # before: LR015 from the first cosine step on (LinearLR replayed alone)
    assert run.lrs() == seen
    warm = [1e-3 * (0.1 + 0.9 * k / warm_n) for k in range(warm_n + 1)]
    cos = [1e-3 * (1 + math.cos(math.pi * j / 20)) / 2 for j in range(1, 20)]
    assert seen == pytest.approx(warm + cos, rel=1e-9)


@pytest.mark.parametrize("spec", ["scheduler", "scheduler-per-step"])
@pytest.mark.parametrize("hidden", [False, True], ids=["found at the start", "met at their first step"])
def test_hand_over_in_the_same_gap_is_silent(spec, hidden):
    run, seen, warm_n = warmup_then_cosine(spec=spec, same_gap=True, hidden=hidden)
    assert found(run) == []  # before: a false LR015 under per-step (the warm-up's last step dropped)
    assert run.lrs() == seen
    warm = [1e-3 * (0.1 + 0.9 * k / warm_n) for k in range(warm_n)]
    cos = [1e-3 * (1 + math.cos(math.pi * j / 21)) / 2 for j in range(1, 21)]
    assert seen == pytest.approx(warm + cos, rel=1e-9)  # the cosine starts from the warm-up's peak


def test_schedulers_stepped_together_are_not_phases_and_stay_lr015():
    run, seen, _ = warmup_then_cosine(interleave=True)
    assert run.lrs() == seen
    assert ("LR015", 1) in found(run)  # cosine moved the LR under the warm-up: LinearLR alone differs


def test_a_write_at_the_hand_over_is_still_lr015():
    run, seen, warm_n = warmup_then_cosine(reset_at_switch=True)
    assert found(run) == [("LR002", warm_n + 1), ("LR015", warm_n + 1)]
    assert seen[warm_n + 1] == pytest.approx(1e-4 * (1 + math.cos(math.pi / 20)) / 2, rel=1e-9)


def test_unfreezing_with_a_new_scheduler_over_the_new_group():
    torch.manual_seed(0)
    m = model()
    opt = torch.optim.SGD(m[1].parameters(), lr=0.1)  # the head first
    head_sched = L.StepLR(opt, step_size=2, gamma=0.5)
    seen, handle = own_record(opt)
    body_seen = []
    with audit(opt, expect="scheduler") as run:
        for _ in range(4):
            train_step(m, opt)
            head_sched.step()
        opt.add_param_group({"params": m[0].parameters(), "lr": 0.01})  # unfreeze the body
        full = L.CosineAnnealingLR(opt, T_max=5)
        for _ in range(5):
            body_seen.append(opt.param_groups[1]["lr"])
            train_step(m, opt)
            full.step()
    handle.remove()
    assert found(run) == []  # before: LR015 from the new stage on
    assert run.lrs(group=0) == seen
    assert run.lrs(group=1) == body_seen
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05] + [0.025 * (1 + math.cos(math.pi * j / 5)) / 2
                                                            for j in range(5)], rel=1e-12)


def test_a_stage_that_cannot_be_replayed_cuts_the_check_and_says_so():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    warm = L.LinearLR(opt, start_factor=0.1, total_iters=4)
    plateau = L.ReduceLROnPlateau(opt, patience=0)
    seen, handle = own_record(opt)
    with pytest.warns(LRAuditWarning, match=r"checks lr-SGD only before its step 5: ReduceLROnPlateau "
                                            r"cannot be replayed: it needs the metric"):
        with audit(opt, expect="scheduler") as run:
            for it in range(4):
                train_step(m, opt)
                warm.step()
                if it == 1:
                    opt.param_groups[0]["lr"] = 0.3
            for _ in range(3):
                train_step(m, opt)
                plateau.step(1.0)  # no improvement after the first: a tenth
    handle.remove()
    assert run.lrs() == seen
    assert seen[5:] == pytest.approx([seen[4], seen[4] * 0.1], rel=1e-12)
    # the write in the warm-up differs from LinearLR alone at updates 2-4; the plateau's part is unchecked
    assert found(run) == [("LR002", 2), ("LR015", 2)]
    lr015 = [f for f in run.findings if f.rule == "LR015"][0]
    assert "at 3 (step, group) pair(s)" in lr015.message
    assert "no expectation after: ReduceLROnPlateau cannot be replayed" in lr015.message


def test_a_first_scheduler_that_cannot_be_replayed_is_one_warning():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    plateau = L.ReduceLROnPlateau(opt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with audit(opt, expect="scheduler") as run:
            train_step(m, opt)
            plateau.step(1.0)
    said = [str(w.message) for w in caught if issubclass(w.category, LRAuditWarning)]
    assert said == ["lraudit: expect='scheduler' cannot simulate ReduceLROnPlateau of lr-SGD (it needs the "
                    "metric, which only the training loop has); no LR015 check for it"]
    assert found(run) == []


def test_a_phase_whose_replay_raises_leaves_the_next_phase_checked():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    one_cycle = L.OneCycleLR(opt, max_lr=0.1, total_steps=6)
    seen, handle = own_record(opt)
    with pytest.warns(LRAuditWarning, match=r"no expectation for part of lr-SGD: OneCycleLR raised "
                                            r"ValueError at step 7"):
        with audit(opt, expect="scheduler") as run:
            for _ in range(8):
                train_step(m, opt)
                try:
                    one_cycle.step()
                except ValueError:  # stepped past total_steps: torch refuses, the LR stays
                    pass
            fine_tune = L.ExponentialLR(opt, gamma=0.9)  # a new stage, built after the first ended
            for k in range(8):
                train_step(m, opt)
                fine_tune.step()
                if k == 4:
                    opt.param_groups[0]["lr"] *= 3
    handle.remove()
    assert run.lrs() == seen
    assert seen[13] == pytest.approx(seen[12] * 0.9 * 3, rel=1e-12)  # the update after the write
    # before: no LR015, the first phase's failure ended every later phase's check
    assert found(run) == [("LR009", 6), ("LR002", 13), ("LR015", 13)]


class GeneratorLR(L.LRScheduler):
    """A custom scheduler drawing its LRs from a generator: state a copy cannot take."""

    def __init__(self, opt):
        self.draws = (0.1 * 0.9 ** k for k in range(10 ** 6))
        super().__init__(opt)

    def get_lr(self):
        lr = next(self.draws)
        return [lr for _ in self.optimizer.param_groups]


def generator_run(audited):
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    warm = L.LinearLR(opt, start_factor=0.1, total_iters=3)
    drawn = GeneratorLR(opt)
    seen, handle = own_record(opt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):  # one audit per epoch: a copy is taken at each start
            with (audit(opt, expect="scheduler") if audited else contextlib.nullcontext()):
                for b in range(5):
                    train_step(m, opt)
                    (warm if epoch * 5 + b < 3 else drawn).step()
    handle.remove()
    return seen, sorted({str(w.message) for w in caught if issubclass(w.category, LRAuditWarning)})


def test_a_scheduler_that_cannot_be_copied_is_not_replayed_and_training_is_unchanged():
    seen, said = generator_run(audited=True)
    without, _ = generator_run(audited=False)
    assert seen == without  # before: the replay drew from the real generator, and training changed
    assert seen[4:] == pytest.approx([0.1 * 0.9 ** k for k in range(1, 12)], rel=1e-12)
    assert said == [
        "lraudit: expect='scheduler' cannot simulate GeneratorLR of lr-SGD (it could not be copied: "
        "TypeError: cannot pickle 'generator' object); no LR015 check for it",
        "lraudit: expect='scheduler' checks lr-SGD only before its step 4: GeneratorLR cannot be "
        "replayed: it could not be copied: TypeError: cannot pickle 'generator' object"]


def test_a_schedule_function_bound_to_a_module_is_shared_not_copied():
    from lraudit.runtime.schedulers import shadow_copy

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(512, 512)

        def decay(self, epoch):
            return 0.9 ** epoch

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = L.LambdaLR(opt, net.decay)
    copy_, shadow_opt = shadow_copy(sched, opt)
    assert copy_.lr_lambdas[0].__self__ is net  # before: the whole module (and its weights) was copied
    copy_.step()
    copy_.step()
    assert shadow_opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.81) and opt.param_groups[0]["lr"] == 0.1
