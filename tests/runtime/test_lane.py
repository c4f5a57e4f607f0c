"""The steady lane records exactly what the general path records.

Each scenario is a seeded random training run mixing plain steps with everything that must leave the
lane: writes before and after the scheduler step, one group written, two scheduler steps or none in an
interval, closures, skipped updates, invalid LRs and momenta, a schedule stepped past its end, loads,
new schedulers, a group added, readers asking mid-run. The same run is made with the lane and without
it (``open_lane`` never opening one); everything the run reports must be identical, and the LRs must
match the test's own pre-hook record of every update.
"""
from __future__ import annotations

import random
import warnings

import pytest
import torch
from rt_helpers import backward, model, two_groups
from torch.optim import lr_scheduler as L

from lraudit.runtime import audit, lane, tracker

def lane_steps(monkeypatch) -> list:
    """The updates each lane carried, appended when it hands them over (a spy on Lane.settle_into)."""
    taken = []
    settle_into = lane.Lane.settle_into

    def counting(self, checker, params):
        taken.append(self.steps)
        return settle_into(self, checker, params)

    monkeypatch.setattr(lane.Lane, "settle_into", counting)
    return taken


class _MomentumRamp(L.LRScheduler):
    """A project's own scheduler that also ramps the momentum: past 1.0 after 60 steps (LR022 mid-run)."""

    def get_lr(self):
        for g in self.optimizer.param_groups:
            g["momentum"] = 0.94 + 0.001 * self.last_epoch
        return [base * 0.999 ** self.last_epoch for base in self.base_lrs]


SCHEDULERS = {
    "StepLR": lambda o: L.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda o: L.MultiStepLR(o, milestones=[10, 30, 60], gamma=0.3),
    "ExponentialLR": lambda o: L.ExponentialLR(o, gamma=0.99),
    "LambdaLR": lambda o: L.LambdaLR(o, lambda s: min(1.0, (s + 1) / 20)),
    "CosineAnnealingLR": lambda o: L.CosineAnnealingLR(o, T_max=50),  # stepped past T_max: LR009
    "OneCycleLR": lambda o: L.OneCycleLR(o, max_lr=0.2, total_steps=400),
    "CyclicLR": lambda o: L.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=9),
    "MomentumRamp": _MomentumRamp,
    "none": None,
}

EVENTS = ["plain"] * 90 + ["write_before", "write_after", "write_one", "double", "no_sched", "closure",
                           "read", "new_sched", "reload", "bad_lr", "bad_momentum", "same_value",
                           "opt_load", "add_group", "scaler", "scaler_inf", "closure", "closure_write"]


def _scaler():
    try:
        return torch.amp.GradScaler("cpu", init_scale=2.0)
    except Exception:  # an old torch without a CPU GradScaler: those events become plain steps
        return None


def _scenario(seed: int, sched_name: str, groups: int, expect=None, targeted=True):
    """Run the scenario; returns what the run reports and the test's own record of the LRs used."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    m = model()
    params = two_groups(m, momentum=0.9) if groups == 2 else m.parameters()
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    make = SCHEDULERS[sched_name]
    sched = make(opt) if make is not None else None
    seen = []  # the LRs each update used, read by the test's own pre-hook (it runs before lraudit's)
    momenta = []  # and the momenta
    manual_momentum = set()  # updates whose momentum the scenario wrote by hand (not read by lraudit)

    def own_record(o, a, k):
        seen.append([g["lr"] for g in o.param_groups])
        momenta.append([g["momentum"] for g in o.param_groups])

    opt.register_step_pre_hook(own_record)
    reads = []
    scaler = _scaler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # audit(opt) hooks this optimizer; audit() hooks every optimizer's step globally
        auditor = audit(opt, expect=expect) if targeted else audit(expect=expect)
        with auditor as run:
            for it in range(200):
                event = rng.choice(EVENTS) if it > 5 else "plain"
                if event == "write_before" and sched is not None:
                    for g in opt.param_groups:
                        g["lr"] = g["lr"] * 0.5
                elif event == "write_one":
                    opt.param_groups[-1]["lr"] = opt.param_groups[-1]["lr"] * 0.9
                elif event == "same_value":  # a new float object, the same value
                    for g in opt.param_groups:
                        g["lr"] = float(str(g["lr"]))
                elif event == "bad_lr":
                    opt.param_groups[0]["lr"] = -0.1
                elif event == "bad_momentum":  # for one update, then the momentum it had
                    momentum_before = opt.param_groups[0]["momentum"]
                    opt.param_groups[0]["momentum"] = 1.5
                    manual_momentum.add(len(seen))
                elif event == "new_sched" and make is not None:
                    sched = make(opt)
                elif event == "reload" and sched is not None:
                    sched.load_state_dict(sched.state_dict())
                elif event == "opt_load":
                    opt.load_state_dict(opt.state_dict())
                elif event == "add_group" and len(opt.param_groups) < 3:
                    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.05})
                elif event == "read":
                    reads.append((run.steps(), run.lrs(0)[-3:], len(run.findings)))
                opt.zero_grad()
                if event.startswith("scaler") and scaler is not None:  # a skipped update when inf
                    x = torch.randn(4, 3)
                    loss = m(x).pow(2).mean() * (float("inf") if event == "scaler_inf" else 1.0)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()  # on inf the update is skipped: neither pre-hook runs
                else:
                    backward(m)
                if event.startswith("scaler") and scaler is not None:
                    pass
                elif event.startswith("closure"):
                    def closure():  # Lightning's training_step runs here; it may write an LR
                        if event == "closure_write":
                            opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] * 0.7
                        return torch.tensor(0.0)

                    opt.step(closure)
                    # SGD reads the LR after calling the closure: that is the one the update used
                    seen[-1] = [g["lr"] for g in opt.param_groups]
                else:
                    opt.step()
                if event == "write_after":
                    for g in opt.param_groups:
                        g["lr"] = g["lr"] * 0.8
                if event == "bad_lr":
                    opt.param_groups[0]["lr"] = 0.1
                if event == "bad_momentum":
                    opt.param_groups[0]["momentum"] = momentum_before
                if sched is not None and event != "no_sched":
                    try:
                        sched.step()
                        if event == "double":
                            sched.step()
                    except (ValueError, ZeroDivisionError, IndexError, KeyError):  # past its end; LR017
                        sched = None
            trackers = list(auditor._order)  # stop() lets go of them
    report = run.to_dict()
    findings = [(f.rule, f.step, f.group, f.message) for f in run.findings]
    return report, findings, seen, reads, run, _state(trackers), (momenta, manual_momentum)


def _state(trackers):
    """The checker's and tracker's counters after the run (white-box: the lane must leave them exactly
    as the general path does, also where no report shows them)."""
    out = []
    for tr in trackers:
        c = tr.checker
        stats = sorted((sid, st.n_top, st.first_idx, st.last_idx, st.first_step, st.last_step, st.attach_idx)
                       for sid, st in c.stats.items())
        out.append((tr.pre_count, tr.sample_version, c.steps, c.idx, c.nskips, c.n_writes, dict(c.counts),
                    stats, c.last, c.traj.n, tr.params.traj.n, tr.params.current))
    return out


@pytest.mark.parametrize("sched_name", sorted(SCHEDULERS))
@pytest.mark.parametrize("groups", [1, 2])
def test_lane_records_what_the_general_path_records(monkeypatch, sched_name, groups):
    monkeypatch.setattr(lane, "SETTLE_EVERY", 9)  # settle often: the lane reopens mid-run
    monkeypatch.setattr(tracker, "RETRY_AFTER", 2)
    taken = lane_steps(monkeypatch)
    updates = 0
    for seed in range(4):
        # two seeds with the expectation that snapshots the scheduler (it counts its steps); odd seeds
        # through the global hooks of audit()
        expect = "scheduler-per-step" if seed >= 2 and sched_name != "none" else None
        targeted = seed % 2 == 0
        with_lane = _scenario(seed, sched_name, groups, expect, targeted)
        updates += with_lane[4].steps()
        with monkeypatch.context() as mp:
            mp.setattr(tracker, "open_lane", lambda tr, info: None)
            without = _scenario(seed, sched_name, groups, expect, targeted)
        assert with_lane[0] == without[0], (seed, sched_name)  # series, momenta, findings, as saved
        assert with_lane[1] == without[1], (seed, sched_name)
        assert with_lane[3] == without[3], (seed, sched_name)  # what readers saw mid-run
        assert with_lane[5] == without[5], (seed, sched_name)
        # and both are right: the LRs every update used, from the test's own record
        report, _, seen, _, run, _, (momenta, manual) = with_lane
        assert run.steps() == len(seen)
        recorded = run._select(None)
        for j in range(len(seen[0])):
            assert run.lrs(j) == [row[j] for row in seen], (seed, j)
            # a cycling scheduler's momenta too (a hand-written momentum is not read where it is written)
            if sched_name in ("OneCycleLR", "CyclicLR", "MomentumRamp"):
                own = [row[j] for row in momenta if len(row) > j]
                got = recorded.params_of(j)["momentum"]
                assert len(got) == len(own), (seed, j)
                first = len(momenta) - len(own)
                assert [m for i, m in enumerate(got) if first + i not in manual] == \
                    [m for i, m in enumerate(own) if first + i not in manual], (seed, j)
    assert sum(taken) > updates // 4, (sum(taken), updates)  # the lane carried a good share of the updates


def test_lane_carries_a_plain_run_and_stays_exact(monkeypatch):
    """A plain per-step schedule: nearly every update goes through the lane; values match a plain-SGD
    reconstruction (w_new = w - lr * grad without momentum)."""
    taken = lane_steps(monkeypatch)
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))  # float64: the difference is exact enough
    opt = torch.optim.SGD([w], lr=0.1)
    sched = L.OneCycleLR(opt, max_lr=0.2, total_steps=3000, cycle_momentum=False)
    used = []
    with audit(opt) as run:
        for _ in range(3000):
            before = w.detach().clone()
            w.grad = torch.ones(1, dtype=torch.float64)
            opt.step()
            used.append(float(before - w.detach()))  # lr * grad with grad = 1
            sched.step()
    assert sum(taken) >= 2950, sum(taken)
    assert run.findings == []
    assert run.lrs(0) == pytest.approx(used, rel=1e-9)


def _accelerate_run(accelerate, write_at):
    acc = accelerate.Accelerator(cpu=True)
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = L.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    m, opt, sched = acc.prepare(m, opt, sched)  # AcceleratedOptimizer, AcceleratedScheduler
    seen = []
    opt.optimizer.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt) as run:
            for step in range(300):
                opt.zero_grad()
                backward(m)
                opt.step()
                if step == write_at:  # overwritten at the next scheduler step: LR002
                    opt.param_groups[0]["lr"] = 0.5
                sched.step()
    return run, seen


def test_lane_carries_accelerate_wrapped_steps(monkeypatch):
    accelerate = pytest.importorskip("accelerate")
    taken = lane_steps(monkeypatch)
    run, seen = _accelerate_run(accelerate, write_at=200)
    assert sum(taken) >= 250, sum(taken)  # the wrapper's scheduler steps go through the lane too
    assert run.lrs() == seen
    assert [(f.rule, f.step) for f in run.findings] == [("LR002", 201)]
    with monkeypatch.context() as mp:
        mp.setattr(tracker, "open_lane", lambda tr, info: None)
        general, _ = _accelerate_run(accelerate, write_at=200)
    assert [str(f) for f in run.findings] == [str(f) for f in general.findings]
    assert run.to_dict() == general.to_dict()


def _momentum_ramp_run(groups):
    torch.manual_seed(0)
    m = model()
    opt = torch.optim.SGD(two_groups(m, momentum=0.9) if groups == 2 else m.parameters(), lr=0.1, momentum=0.9)
    sched = _MomentumRamp(opt)
    seen = []  # the momentum each update used, from the test's own pre-hook
    opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["momentum"]))
    live = []  # (rule, updates made) as each finding reaches the callback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt, on_finding=lambda f: live.append((f.rule, len(seen)))) as run:
            for _ in range(100):
                backward(m)
                opt.step()
                sched.step()
    return run, seen, live


@pytest.mark.parametrize("groups", [1, 2])  # one group is read inline, several through ParamRecord.read
def test_lane_leaves_a_momentum_its_scheduler_puts_out_of_range_to_the_checker(monkeypatch, groups):
    """A scheduler that writes the momentum past 1.0 mid-run, while the lane carries the updates: LR022
    at the first update that used it, as on the general path."""
    taken = lane_steps(monkeypatch)
    run, seen, live = _momentum_ramp_run(groups)
    first_bad = next(i for i, v in enumerate(seen) if v >= 1.0)
    assert first_bad > 40 and sum(taken) >= first_bad - 20, (first_bad, taken)  # the lane was carrying them
    assert [(f.rule, f.step) for f in run.findings] == [("LR022", first_bad)]
    # found when the scheduler wrote it, before the update that used it (not when the lane settles)
    assert live == [("LR022", first_bad)]
    assert run._select(None).params_of(0)["momentum"] == seen
    with monkeypatch.context() as mp:
        mp.setattr(tracker, "open_lane", lambda tr, info: None)
        general, _, general_live = _momentum_ramp_run(groups)
    assert [(f.rule, f.step, f.message) for f in run.findings] == \
        [(f.rule, f.step, f.message) for f in general.findings]
    assert live == general_live


def _reader_in_schedule_run():
    torch.manual_seed(0)
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    holder = {}
    looked = []

    def factor(step):  # a schedule function that asks the run for the LRs (a logger would)
        if "run" in holder and step % 30 == 0:
            looked.append(holder["run"].lrs(0)[-1:])
        return 0.99 ** step

    sched = L.LambdaLR(opt, factor)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    with audit(opt) as run:
        holder["run"] = run
        for _ in range(150):
            backward(m)
            opt.step()
            sched.step()
    return run, seen, looked


def test_lane_handed_over_during_a_scheduler_step_loses_nothing(monkeypatch):
    """A reader inside the scheduler step settles the lane while the step runs: the step's end then goes
    the general way, and the run records what the general path records and what the updates used."""
    taken = lane_steps(monkeypatch)
    run, seen, looked = _reader_in_schedule_run()
    assert sum(taken) > 40, taken  # the lane carried the updates between the readers
    assert run.lrs(0) == seen and run.findings == []
    with monkeypatch.context() as mp:
        mp.setattr(tracker, "open_lane", lambda tr, info: None)
        general, _, general_looked = _reader_in_schedule_run()
    assert run.to_dict() == general.to_dict() and looked == general_looked
