"""``Audit.driven_by_loop``: a scheduler a framework's loop steps when due is LR005 only once it was due."""
import warnings

import pytest

torch = pytest.importorskip("torch")

from lraudit import audit  # noqa: E402
from lraudit.runtime.findings import LRAuditInternalWarning  # noqa: E402


def train_unscheduled(asked, steps=4):
    """An SGD with a StepLR that nobody steps, registered as driven by a loop whose answer is ``asked``."""
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    used = []
    handle = opt.register_step_pre_hook(lambda o, args, kwargs: used.append(o.param_groups[0]["lr"]))
    a = audit(opt, schedulers=[sched])
    run = a.start()
    if asked is not None:  # None: no loop drives it (a plain loop that forgot the scheduler)
        a.driven_by_loop(sched, asked)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a.stop()
    handle.remove()
    assert run.lrs() == used == [0.1] * steps
    return run, caught


def test_never_asked_is_silent():
    run, caught = train_unscheduled(lambda: False)
    assert run.findings == [] and caught == []


def test_asked_and_never_stepped_is_lr005():
    run, _ = train_unscheduled(lambda: True)
    assert [f.rule for f in run.findings] == ["LR005"]
    assert "asked for its step, which never ran" in run.findings[0].message


@pytest.mark.parametrize("registered", [False, True])  # not registered; registered, the loop's answer None
def test_a_scheduler_no_loop_drives_keeps_the_usual_advice(registered):
    run, _ = train_unscheduled((lambda: None) if registered else None)
    assert [f.rule for f in run.findings] == ["LR005"]
    assert "hand it to whatever steps it" in run.findings[0].message


def test_an_answer_that_fails_leaves_lr005_to_decide():
    def broken():
        raise RuntimeError("no loop state")

    run, caught = train_unscheduled(broken)
    assert [f.rule for f in run.findings] == ["LR005"]
    assert any(issubclass(w.category, LRAuditInternalWarning) and "no loop state" in str(w.message) for w in caught)
