"""LR009 at run time on transformers' schedules (LambdaLR over a partial of transformers' functions): a
schedule sized in epochs but stepped per batch runs past num_training_steps, where the linear one
trains at 0 and the cosine climbs back. Values are checked against a pre-hook of the test's own and the
schedule's closed form."""
import math

import pytest
import torch
from rt_helpers import model, train_step
from torch.optim import lr_scheduler as L

from lraudit.runtime import audit
from lraudit.runtime.transformers_schedules import schedule_end

transformers = pytest.importorskip("transformers")

STEPS, WARMUP = 24, 2


def run_with(make):
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    sched = make(opt)
    seen = []
    handle = opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    with audit(opt) as run:
        for _ in range(STEPS):
            train_step(m, opt)
            sched.step()
    handle.remove()
    assert run.lrs() == seen
    return run, seen


def linear(step, total):
    return 1e-3 * (step / WARMUP if step < WARMUP else max(0.0, (total - step) / (total - WARMUP)))


def cosine(step, total):
    if step < WARMUP:
        return 1e-3 * step / WARMUP
    return 1e-3 * max(0.0, 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (total - WARMUP))))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_sized_to_the_steps_it_is_stepped_is_silent(kind):
    get = getattr(transformers, f"get_{kind}_schedule_with_warmup")
    run, seen = run_with(lambda o: get(o, WARMUP, STEPS))
    formula = linear if kind == "linear" else cosine
    assert seen == pytest.approx([formula(s, STEPS) for s in range(STEPS)], rel=1e-9, abs=1e-15)
    assert run.findings == []


@pytest.mark.parametrize("kind, past", [("linear", "past it the LR is 0, so those updates do not train"),
                                        ("cosine", "past it the cosine climbs back towards the initial LR")])
def test_sized_in_epochs_but_stepped_per_batch_is_lr009(kind, past):
    epochs = 4  # the schedule thinks the run is 4 steps long
    get = getattr(transformers, f"get_{kind}_schedule_with_warmup")
    run, seen = run_with(lambda o: get(o, WARMUP - 1, epochs))
    first_past = epochs + 1  # the update after the step that took the schedule past its last step (4)
    assert [(f.rule, f.step) for f in run.findings] == [("LR009", first_past)]
    message = run.findings[0].message
    assert f"get_{kind}_schedule_with_warmup(num_training_steps={epochs}) is at step {first_past}" in message
    assert past in message
    assert f"{STEPS - first_past} steps used such LRs" in message
    if kind == "linear":
        assert seen[first_past:] == [0.0] * (STEPS - first_past)
    else:  # half a cosine per 3 steps past the warm-up: back at the initial LR 3 steps past the end
        assert seen[epochs + 3] == pytest.approx(1e-3, rel=1e-9)


def test_cosine_with_min_lr_rate_ends_a_step_earlier():
    get = transformers.get_cosine_with_min_lr_schedule_with_warmup_lr_rate
    assert [(f.rule, f.step) for f in run_with(lambda o: get(o, WARMUP, STEPS, min_lr_rate=0.1))[0].findings] == []
    run, _ = run_with(lambda o: get(o, WARMUP, STEPS - 1, min_lr_rate=0.1))
    assert [(f.rule, f.step) for f in run.findings] == [("LR009", STEPS - 1)]


def test_schedules_without_an_end_or_ending_on_a_floor_are_not_read():
    opt = torch.optim.SGD(model().parameters(), lr=0.1)
    assert schedule_end(transformers.get_polynomial_decay_schedule_with_warmup(opt, 1, 5)) is None
    assert schedule_end(transformers.get_constant_schedule_with_warmup(opt, 1)) is None
    assert schedule_end(L.LambdaLR(opt, lambda s: 0.9 ** s)) is None
    assert schedule_end(transformers.get_linear_schedule_with_warmup(opt, 1, 5))[0] == 5


def test_an_older_release_closure_is_read_too():
    def get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps):
        def lr_lambda(current_step):
            return max(0.0, (num_training_steps - current_step) / max(1, num_training_steps - num_warmup_steps))
        return L.LambdaLR(optimizer, lr_lambda)

    opt = torch.optim.SGD(model().parameters(), lr=0.1)
    sched = get_linear_schedule_with_warmup(opt, 1, 5)
    assert schedule_end(sched) is None  # not transformers' own
    sched.lr_lambdas[0].__module__ = "transformers.optimization"
    sched.lr_lambdas[0].__qualname__ = "get_linear_schedule_with_warmup.<locals>.lr_lambda"
    assert schedule_end(sched) == (5, "get_linear_schedule_with_warmup(num_training_steps=5)",
                                   "past it the LR is 0, so those updates do not train")
