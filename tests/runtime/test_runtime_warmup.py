"""A manual warm-up beside a scheduler (LR002 at warning when it hands over to a scheduler that recomputes
the LRs, the plain LR002 otherwise) and what LR004 calls a ratio-breaking write.

Every run records the LRs each update used with a pre-hook of the test's own and compares them with
``run.lrs``."""
import numpy as np
import pytest
import torch
from rt_helpers import backward, by_rule, model, rules, two_groups
from torch.optim import lr_scheduler as L

from lraudit import catalog
from lraudit.runtime import audit
from lraudit.runtime import trajectory_file

EPOCHS, BATCHES, WARMUP = 5, 8, 12  # the warm-up ends inside the second epoch
LR0, LRF, BIAS_LR = 0.01, 0.01, 0.1


def _lf(epoch):
    return (1 - epoch / EPOCHS) * (1.0 - LRF) + LRF


def _three_groups(m):
    """YOLO's split: weights with decay, weights without, biases (group 0, its own warm-up start)."""
    weights = [m[0].weight, m[1].weight]
    biases = [m[0].bias, m[1].bias]
    opt = torch.optim.SGD(biases, lr=LR0, momentum=0.937, nesterov=True)
    opt.add_param_group({"params": weights[:1], "weight_decay": 5e-4})
    opt.add_param_group({"params": weights[1:]})
    return opt


def _own_record(opt):
    seen = []
    handle = opt.register_step_pre_hook(lambda o, a, k: seen.append([float(g["lr"]) for g in o.param_groups]))
    return seen, handle


def _column(seen, g):
    return [row[g] for row in seen]


def _yolo_run(make_sched, target, write_every=None):
    """YOLOv5/v8 train.py's warm-up: for the first WARMUP updates every group's LR is interpolated from
    its start (BIAS_LR for the biases, 0 for the others) to ``target(group, epoch)``; the scheduler
    steps once per epoch. ``write_every``: the writes go on after the warm-up every that many updates."""
    m = model()
    opt = _three_groups(m)
    sched = make_sched(opt)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for epoch in range(EPOCHS):
            for i in range(BATCHES):
                ni = i + BATCHES * epoch
                if ni <= WARMUP:
                    for j, g in enumerate(opt.param_groups):
                        g["lr"] = np.interp(ni, [0, WARMUP], [BIAS_LR if j == 0 else 0.0, target(g, epoch)])
                        g["momentum"] = np.interp(ni, [0, WARMUP], [0.8, 0.937])
                elif write_every and ni % write_every == 0:
                    for g in opt.param_groups:
                        g["lr"] = g["lr"] * 0.5
                opt.zero_grad()
                backward(m)
                opt.step()
            sched.step()
    handle.remove()
    return run, seen, opt


def _same_values(run, seen, n_groups=3):
    for g in range(n_groups):
        assert run.lrs(g) == _column(seen, g), g


def test_yolo_warmup_over_lambdalr_is_lr002_at_warning_without_lr004():
    run, seen, opt = _yolo_run(lambda o: L.LambdaLR(o, lr_lambda=_lf), lambda g, e: g["initial_lr"] * _lf(e))
    _same_values(run, seen)
    assert len(seen) == EPOCHS * BATCHES
    # the warm-up really moved every group, each on its own ramp, and ended on LambdaLR's own values
    assert _column(seen, 0)[0] == BIAS_LR and _column(seen, 1)[0] == 0.0
    assert seen[WARMUP] == [LR0 * _lf(1)] * 3 and seen[2 * BATCHES] == [LR0 * _lf(2)] * 3
    assert [(f.rule, f.severity) for f in run.findings] == [("LR002", catalog.LR002_WARMUP_LEVEL)]
    f = by_rule(run, "LR002")
    assert (f.step, f.group, f.optimizer) == (0, 0, "lr-SGD")
    assert "manual warm-up written over LambdaLR" in f.message
    assert f"{WARMUP + 1} changes" in f.message and f"before step {WARMUP}," in f.message
    assert catalog.lr002_warmup_consequence("LambdaLR") in f.message  # the static half's words
    assert "two writers fight" not in f.message
    # the finding keeps its own severity in the trajectory file
    saved = run.to_dict()["findings"]
    assert saved[0]["severity"] == "warning"
    assert trajectory_file.read(run.to_dict()).findings[0]["severity"] == "warning"


def test_yolo_warmup_found_live_only_once_decided():
    got = []
    m = model()
    opt = _three_groups(m)
    sched = L.LambdaLR(opt, lr_lambda=_lf)
    with audit(opt, on_finding=got.append) as run:
        for epoch in range(EPOCHS):
            for i in range(BATCHES):
                ni = i + BATCHES * epoch
                if ni <= WARMUP:
                    for j, g in enumerate(opt.param_groups):
                        g["lr"] = np.interp(ni, [0, WARMUP], [BIAS_LR if j == 0 else 0.0, g["initial_lr"] * _lf(epoch)])
                opt.zero_grad()
                backward(m)
                opt.step()
            sched.step()
        during = list(got)
    assert during == []  # no "two writers fight" error while the warm-up ran
    assert [(f.rule, f.severity) for f in got] == [("LR002", "warning")] == [(f.rule, f.severity) for f in run.findings]


def test_same_ramp_under_steplr_stays_the_error():
    """StepLR multiplies what the groups hold: the ramp's last value is not what it would have set, and
    the write leaks into the schedule."""
    run, seen, _ = _yolo_run(lambda o: L.StepLR(o, step_size=1, gamma=0.5),
                             lambda g, e: g["initial_lr"] * 0.5 ** e)
    _same_values(run, seen)
    assert seen[2 * BATCHES] == [LR0 * 0.5 * 0.5] * 3  # StepLR halved the ramp's last value, 0.5 * LR0
    assert rules(run) == ["LR002"]
    f = by_rule(run, "LR002")
    assert f.severity == "error" and "two writers fight" in f.message and (f.step, f.group) == (0, 0)


def test_ramp_that_stops_short_of_lambdalr_value_stays_the_error():
    run, seen, _ = _yolo_run(lambda o: L.LambdaLR(o, lr_lambda=_lf), lambda g, e: 0.9 * g["initial_lr"] * _lf(e))
    _same_values(run, seen)
    assert seen[WARMUP] != seen[WARMUP + 4]  # LambdaLR's next step jumped from the ramp's end
    assert rules(run) == ["LR002"] and by_rule(run, "LR002").severity == "error"


def test_writes_going_on_after_the_warmup_stay_the_error():
    run, seen, _ = _yolo_run(lambda o: L.LambdaLR(o, lr_lambda=_lf), lambda g, e: g["initial_lr"] * _lf(e),
                             write_every=10)
    _same_values(run, seen)
    assert seen[20] == [v * 0.5 for v in seen[19]]  # a write after the hand-over
    assert rules(run) == ["LR002"]
    f = by_rule(run, "LR002")
    assert f.severity == "error" and "two writers fight" in f.message


def test_writes_going_on_after_the_warmup_are_found_when_they_resume():
    got = []
    m = model()
    opt = _three_groups(m)
    sched = L.LambdaLR(opt, lr_lambda=_lf)
    with audit(opt, on_finding=lambda f: got.append((f.rule, f.severity, opt_steps[0]))) as run:
        opt_steps = [0]
        for ni in range(40):
            epoch = ni // BATCHES
            if ni <= WARMUP:
                for g in opt.param_groups:
                    g["lr"] = np.interp(ni, [0, WARMUP], [0.0, g["initial_lr"] * _lf(epoch)])
            elif ni == 30:
                for g in opt.param_groups:
                    g["lr"] = 1e-3
            opt.zero_grad()
            backward(m)
            opt.step()
            opt_steps[0] += 1
            if ni % BATCHES == BATCHES - 1:
                sched.step()
    assert got == [("LR002", "error", 30)]  # certain at the write after the hand-over, not at the end
    assert rules(run) == ["LR002"]


def test_warmup_that_never_reaches_the_schedule_is_found_at_the_next_update():
    """A per-step LambdaLR under a warm-up that stops below its value: the first update after the
    writes stop uses LambdaLR's jump, and LR002 (error) is certain then."""
    got = []
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    sched = L.LambdaLR(opt, lambda s: 0.99 ** s)
    seen, handle = _own_record(opt)
    with audit(opt, on_finding=lambda f: got.append((f.rule, f.severity, len(seen)))) as run:
        for step in range(30):
            if step < 5:
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * (step + 1) / 10  # ramps to half of the schedule only
            opt.zero_grad()
            backward(m)
            opt.step()
            sched.step()
    handle.remove()
    assert run.lrs(0) == _column(seen, 0) and run.lrs(1) == _column(seen, 1)
    assert got == [("LR002", "error", 6)]  # at the sixth update: the first without a write
    assert rules(run) == ["LR002"]


def test_per_group_warmup_into_every_group_is_no_lr004_but_one_value_into_every_group_is():
    """LR004 judges the write: each group given its own value (even one that moves the ratios for a
    while) is no ratio break; one value written into groups of different LRs is."""
    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.01), lr=0.1)
    sched = L.LambdaLR(opt, lambda s: 1.0)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for step in range(12):
            if step < 4:
                for j, g in enumerate(opt.param_groups):  # group 1 starts later: ratios move, per group
                    g["lr"] = g["initial_lr"] * (step + 1) / 4 if j == 0 else g["initial_lr"] * step / 4 + 1e-5
            opt.zero_grad()
            backward(m)
            opt.step()
            sched.step()
    handle.remove()
    assert run.lrs(0) == _column(seen, 0) and run.lrs(1) == _column(seen, 1)
    assert "LR004" not in rules(run)

    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.01), lr=0.1)
    sched = L.ExponentialLR(opt, 0.9)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for step in range(6):
            if step == 3:
                for g in opt.param_groups:
                    g["lr"] = 0.005  # one value into both: the 10:1 ratio ExponentialLR keeps is gone
            opt.zero_grad()
            backward(m)
            opt.step()
            sched.step()
    handle.remove()
    assert run.lrs(0) == _column(seen, 0) and run.lrs(1) == _column(seen, 1)
    assert _column(seen, 0)[4] == _column(seen, 1)[4] == 0.005 * 0.9
    assert rules(run) == ["LR002", "LR004"]
    f = by_rule(run, "LR004")
    assert (f.step, f.group) == (3, 0) and "one value (0.005)" in f.message


def test_clamp_under_a_ratio_keeping_scheduler_is_no_lr004():
    """``max(g["lr"] * 0.5, min_lr)`` into every group, one group already at its floor (so unchanged)."""
    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.001), lr=0.1)
    sched = L.ExponentialLR(opt, 1.0)  # keeps the ratios; leaves the values as they are
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for epoch in range(4):
            opt.zero_grad()
            backward(m)
            opt.step()
            sched.step()
            for g in opt.param_groups:
                g["lr"] = max(g["lr"] * 0.5, 1e-3)
    handle.remove()
    assert run.lrs(0) == _column(seen, 0) and run.lrs(1) == _column(seen, 1)
    assert _column(seen, 1) == [0.001] * 4 and _column(seen, 0)[-1] == 0.1 * 0.5 ** 3
    assert rules(run) == ["LR002"]  # the writes fight ExponentialLR; no group was left out


def _scaled_warmup_run(make_sched):
    """A warm-up that scales what the scheduler last set (``get_last_lr()``) for the first 12 updates,
    ending on it unscaled; the scheduler steps once per epoch of 8 updates."""
    m = model()
    opt = torch.optim.SGD(two_groups(m, lr0=0.1, lr1=0.01), lr=0.1)
    sched = make_sched(opt)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for ni in range(40):
            if ni <= WARMUP:
                for g, lr in zip(opt.param_groups, sched.get_last_lr()):
                    g["lr"] = lr * (ni + 1) / (WARMUP + 1)
            opt.zero_grad()
            backward(m)
            opt.step()
            if ni % BATCHES == BATCHES - 1:
                sched.step()
    handle.remove()
    assert run.lrs(0) == _column(seen, 0) and run.lrs(1) == _column(seen, 1)
    return run, seen


def test_warmup_ending_on_the_scheduler_value_is_a_warning_only_when_its_steps_recompute():
    """The same warm-up code: LambdaLR's epoch step recomputes from the base LRs, so the run ends on the
    schedule; ExponentialLR's multiplies the warm-up value it finds, and the last write hands back that
    leaked value (its own, by get_last_lr), so every later LR is 8/13 of the schedule."""
    run, seen = _scaled_warmup_run(lambda o: L.LambdaLR(o, lambda e: 0.5 ** e))
    assert seen[-1] == [0.1 * 0.5 ** 4, 0.01 * 0.5 ** 4]
    assert [(f.rule, f.severity) for f in run.findings] == [("LR002", "warning")]

    run, seen = _scaled_warmup_run(lambda o: L.ExponentialLR(o, 0.5))
    assert abs(seen[-1][0] - 0.1 * 0.5 ** 4 * 8 / 13) < 1e-12  # the warm-up leaked into the schedule
    assert [(f.rule, f.severity) for f in run.findings] == [("LR002", "error")]


def test_audit_ending_inside_the_warmup_is_the_plain_lr002():
    """The writes never reached LambdaLR's value while the audit ran: nothing shows a hand-over."""
    m = model()
    opt = _three_groups(m)
    sched = L.LambdaLR(opt, lr_lambda=_lf)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for ni in range(BATCHES):  # one epoch of a warm-up that lasts WARMUP updates
            for j, g in enumerate(opt.param_groups):
                g["lr"] = np.interp(ni, [0, WARMUP], [BIAS_LR if j == 0 else 0.0, g["initial_lr"] * _lf(0)])
            opt.zero_grad()
            backward(m)
            opt.step()
        sched.step()
    handle.remove()
    _same_values(run, seen)
    assert [(f.rule, f.severity) for f in run.findings] == [("LR002", "error")]


def test_dips_after_the_warmup_that_return_to_the_schedule_stay_the_error():
    """After the hand-over, every 10th update dips the LR for one update and puts LambdaLR's value back:
    each burst ends on the schedule, but the writes never stopped."""
    m = model()
    opt = _three_groups(m)
    sched = L.LambdaLR(opt, lr_lambda=_lf)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for ni in range(EPOCHS * BATCHES):
            epoch = ni // BATCHES
            for j, g in enumerate(opt.param_groups):
                if ni <= WARMUP:
                    g["lr"] = np.interp(ni, [0, WARMUP], [BIAS_LR if j == 0 else 0.0, g["initial_lr"] * _lf(epoch)])
                elif ni % 10 == 0:
                    g["lr"] = g["lr"] * 0.1
                elif ni % 10 == 1:
                    g["lr"] = g["initial_lr"] * _lf(epoch)
            opt.zero_grad()
            backward(m)
            opt.step()
            if ni % BATCHES == BATCHES - 1:
                sched.step()
    handle.remove()
    _same_values(run, seen)
    assert seen[20] == [v * 0.1 for v in seen[19]] and seen[21] == seen[19]
    assert [(f.rule, f.severity) for f in run.findings] == [("LR002", "error")]


def _long_warmup_run(resume_at=None):
    """400 updates, a 60-update warm-up ending on LambdaLR's value, the scheduler stepped per 50-update
    epoch; ``resume_at``: one more write of every group there."""
    m = model()
    opt = _three_groups(m)
    sched = L.LambdaLR(opt, lambda e: 0.9 ** e)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        for ni in range(400):
            if ni <= 60:
                for j, g in enumerate(opt.param_groups):
                    g["lr"] = np.interp(ni, [0, 60], [BIAS_LR if j == 0 else 0.0, sched.get_last_lr()[j]])
            elif ni == resume_at:
                for g in opt.param_groups:
                    g["lr"] = 1e-4
            opt.zero_grad()
            backward(m)
            opt.step()
            if ni % 50 == 49:
                sched.step()
    handle.remove()
    _same_values(run, seen)
    assert seen[60] == [LR0 * 0.9] * 3 and seen[-1] == [LR0 * 0.9 ** 7] * 3
    return [(f.rule, f.severity, f.step) for f in run.findings]


def test_long_run_on_the_steady_lane_gives_the_general_paths_verdict(monkeypatch):
    """After the hand-over the steady lane carries the updates (and the scheduler steps it sees); a
    write long after it is still the fight, a run without one the warm-up."""
    from lraudit.runtime import lane, tracker

    taken = []
    settle_into = lane.Lane.settle_into
    monkeypatch.setattr(lane.Lane, "settle_into", lambda self, c, p: (taken.append(self.steps), settle_into(self, c, p))[1])
    warm = _long_warmup_run()
    fight = _long_warmup_run(resume_at=300)
    assert sum(taken) >= 400, taken  # the lane carried most updates of both runs
    assert warm == [("LR002", "warning", 0)] and fight == [("LR002", "error", 0)]
    with monkeypatch.context() as mp:
        mp.setattr(tracker, "open_lane", lambda tr, info: None)
        assert _long_warmup_run() == warm and _long_warmup_run(resume_at=300) == fight


def _ultralytics_run(where, lag, nw=12, nb=4, epochs=8):
    """YOLO's trainers as they are: ``scheduler.last_epoch = start_epoch - 1  # do not move`` (``lag``),
    the scheduler stepped at each epoch's end (yolov5) or start (ultralytics v8, ``where="start"``), and
    an np.interp warm-up over ``nw`` updates into every group, aimed at ``initial_lr * lf(epoch)``; with
    nw = 3 * nb it ends on the first batch of an epoch."""
    def lf(x):
        return (1 - x / epochs) * 0.99 + 0.01

    m = model()
    opt = _three_groups(m)
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        sched = L.LambdaLR(opt, lr_lambda=lf)
        if lag:
            sched.last_epoch = -1  # do not move
        for epoch in range(epochs):
            if where == "start":
                sched.step()
            for i in range(nb):
                ni = i + nb * epoch
                if ni <= nw:
                    for j, g in enumerate(opt.param_groups):
                        g["lr"] = np.interp(ni, [0, nw], [BIAS_LR if j == 0 else 0.0, g["initial_lr"] * lf(epoch)])
                opt.zero_grad()
                backward(m)
                opt.step()
            if where == "end":
                sched.step()
    handle.remove()
    _same_values(run, seen)
    return run, seen, lf


@pytest.mark.parametrize("where, lag", [("end", True), ("end", False), ("start", True)],
                         ids=["yolov5", "yolov5 without the lag line", "ultralytics"])
def test_yolo_trainers_as_they_are_get_the_warmup_warning(where, lag):
    run, seen, lf = _ultralytics_run(where, lag)
    # after the warm-up every update uses the schedule's value for its epoch (one epoch late for yolov5's
    # lag and its end-of-epoch step, as in the real trainer)
    shift = 1 if (where == "end" and lag) else 0
    for ni in range(16, 32):
        assert seen[ni] == pytest.approx([LR0 * lf(ni // 4 - shift)] * 3, rel=1e-12), ni
    # before: LR002 at error (the ramp aims at the next epoch's value, or its last write equals the
    # value the epoch's step had just set), and for ultralytics an LR001 too
    assert rules(run) == ["LR002"]
    assert by_rule(run, "LR002").severity == "warning"


def test_ultralytics_step_before_the_first_update_is_no_lr001():
    """``last_epoch = start_epoch - 1`` then a step at each epoch's start: the first update uses
    lf(0), the LR at construction; the schedule is not shifted."""
    run, seen, lf = _ultralytics_run("start", lag=True, nw=-1)
    assert [row[0] for row in seen[::4]] == pytest.approx([LR0 * lf(e) for e in range(8)], rel=1e-12)
    assert run.findings == []
    run, seen, lf = _ultralytics_run("start", lag=False, nw=-1)  # without the line: shifted, LR001
    assert seen[0] == pytest.approx([LR0 * lf(1)] * 3, rel=1e-12)
    assert rules(run) == ["LR001"]


class _Dampening:
    """pytorch_warmup's BaseWarmup + LinearWarmup in shape: ``dampen()`` multiplies every group's LR by
    the warm-up factor; ``dampening()`` puts the undampened LRs back before the scheduler's step and
    dampens after it (``hand_back=False``: a layer that forgets to hand back)."""

    def __init__(self, opt, period, hand_back=True):
        self.opt, self.period, self.last_step, self.hand_back = opt, period, -1, hand_back
        self.lrs = [g["lr"] for g in opt.param_groups]
        self.dampen()

    def factor(self, step):
        return min(1.0, (step + 1) / self.period)

    def dampen(self):
        self.last_step += 1
        for g in self.opt.param_groups:
            g["lr"] *= self.factor(self.last_step)

    def step_inside(self, sched):
        if self.hand_back:
            for g, lr in zip(self.opt.param_groups, self.lrs):
                g["lr"] = lr
        sched.step()
        self.lrs = [g["lr"] for g in self.opt.param_groups]
        self.dampen()


@pytest.mark.parametrize("stray_write_at", [None, 12])
def test_pytorch_warmup_dampening_hands_back_before_each_step(stray_write_at):
    m = model()
    opt = torch.optim.AdamW(two_groups(m, 1e-3, 1e-4))
    seen, handle = _own_record(opt)
    with audit(opt) as run:
        cosine = L.CosineAnnealingLR(opt, T_max=20)
        warmup = _Dampening(opt, 5)
        for step in range(20):
            opt.zero_grad()
            backward(m)
            opt.step()
            if step == stray_write_at:  # a write the layer does not undo: the cosine compounds it
                for g in opt.param_groups:
                    g["lr"] *= 0.1
                warmup.lrs = [lr * 0.1 for lr in warmup.lrs]
            warmup.step_inside(cosine)
    handle.remove()
    _same_values(run, seen, n_groups=2)
    if stray_write_at is None:
        for k in range(20):  # the cosine's value times the warm-up factor, for each group
            cos = (1 + np.cos(np.pi * k / 20)) / 2
            assert seen[k] == pytest.approx([1e-3 * cos * min(1, (k + 1) / 5), 1e-4 * cos * min(1, (k + 1) / 5)],
                                            rel=1e-9), k
        assert run.findings == []  # before: LR002 at error, "two writers fight"
    else:
        assert rules(run) == ["LR002"] and by_rule(run, "LR002").severity == "error"


def test_a_multiplying_layer_that_does_not_hand_back_is_lr002():
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    with audit(opt) as run:
        cosine = L.CosineAnnealingLR(opt, T_max=20)
        warmup = _Dampening(opt, 5, hand_back=False)  # the cosine steps from the dampened LR
        for _ in range(20):
            opt.zero_grad()
            backward(m)
            opt.step()
            warmup.step_inside(cosine)
    assert rules(run) == ["LR002"] and by_rule(run, "LR002").severity == "error"
