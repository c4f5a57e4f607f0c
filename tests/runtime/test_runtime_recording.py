"""Recording: what is recorded, that training is unchanged, that everything is removed at exit."""
import json
import os
import pickle
import stat
import sys
import warnings

import pytest
import torch
from rt_helpers import backward, by_rule, model, rules, train_step, two_groups
from torch.optim import lr_scheduler as L

from lraudit import LRAuditError
from lraudit.runtime import Audit, LRAuditWarning, Run, RuntimeFinding, audit, patches, tracker
from lraudit.runtime.series import Series, Trajectory


def sgd(m, lr=0.1, **kw):
    return torch.optim.SGD(m.parameters(), lr=lr, **kw)


OPTIMIZERS = {
    "SGD-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "SGD-foreach": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=True),
    "Adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "Adam-foreach": lambda p: torch.optim.Adam(p, lr=0.01, foreach=True),
    "Adam-fused": lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
    "AdamW-fused": lambda p: torch.optim.AdamW(p, lr=0.01, fused=True),
    "AdamW-tensor-lr": lambda p: torch.optim.AdamW(p, lr=torch.tensor(0.01)),
}


def _train(make_opt, audited, mode="explicit"):
    torch.manual_seed(0)
    m = model()
    opt = make_opt(m.parameters())
    sched = L.OneCycleLR(opt, max_lr=0.05, total_steps=12)
    a = None
    if audited:
        a = audit(opt if mode == "explicit" else None, strict=True, expect="scheduler")
        a.start()
    for _ in range(12):
        train_step(m, opt)
        sched.step()
    if a is not None:
        run = a.stop()
        assert run.steps() == 12 and run.findings == []
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_identical_weights_bit_for_bit(name):
    plain = _train(OPTIMIZERS[name], audited=False)
    for mode in ("explicit", "global"):
        audited = _train(OPTIMIZERS[name], audited=True, mode=mode)
        assert all(torch.equal(a, b) for a, b in zip(plain, audited)), mode


def _hook_free(opt):
    return (not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
            and not opt._optimizer_load_state_dict_pre_hooks and not opt._optimizer_load_state_dict_post_hooks)


def test_everything_removed_at_exit_also_on_exception():
    from torch.optim import optimizer as O

    originals = (L.LRScheduler.step, L.StepLR.__init__, L.ReduceLROnPlateau.step, torch.optim.Optimizer.__init__,
                 torch.amp.GradScaler.step)
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1)
    with pytest.raises(KeyError, match="boom"):
        with audit(opt) as run:
            assert L.StepLR.__init__ is not originals[1]  # wrapped while running
            train_step(m, opt)
            sched.step()
            raise KeyError("boom")
    assert _hook_free(opt)
    assert (L.LRScheduler.step, L.StepLR.__init__, L.ReduceLROnPlateau.step, torch.optim.Optimizer.__init__,
            torch.amp.GradScaler.step) == originals
    with audit() as run2:
        assert O._global_optimizer_pre_hooks
        train_step(m, opt)
    assert not O._global_optimizer_pre_hooks and not O._global_optimizer_post_hooks
    assert run.lrs() == [0.1] and run2.lrs() == [pytest.approx(0.01)]
    assert patches.ACTIVE == []


def test_scheduler_state_dict_untouched_and_picklable_inside_the_block():
    m = model()
    opt = sgd(m)
    sched = L.CyclicLR(opt, 0.01, 0.1, step_size_up=2)
    keys = set(sched.__dict__)
    with audit(opt):
        train_step(m, opt)
        sched.step()
        assert set(sched.__dict__) == keys
        pickle.dumps({"opt": opt.state_dict(), "sched": sched.state_dict()})


def test_block_exception_is_never_masked_even_strict():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1)
    with pytest.raises(ZeroDivisionError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with audit(opt, strict=True) as run:
                sched.step()  # LR001
                train_step(m, opt)
                1 / 0
    assert rules(run) == ["LR001"]
    assert any("LR001" in n for n in info.value.__notes__)


def test_strict_raises_listing_findings():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1)
    with pytest.raises(LRAuditError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with audit(opt, strict=True):
                sched.step()
                train_step(m, opt)
    assert [f.rule for f in info.value.findings] == ["LR001"]
    assert "LR001 scheduler-before-optimizer" in str(info.value)


def test_default_warns_once_per_rule():
    m = model()
    opt = torch.optim.SGD(two_groups(m), lr=0.1)
    sched = L.StepLR(opt, 1)
    with pytest.warns(LRAuditWarning) as record:
        with audit(opt) as run:
            for i in range(4):
                train_step(m, opt)
                opt.param_groups[0]["lr"] = float("nan") if i == 1 else opt.param_groups[0]["lr"]
                opt.param_groups[1]["lr"] = -1.0 if i == 2 else opt.param_groups[1]["lr"]
                sched.step()
    ours = [str(w.message) for w in record if issubclass(w.category, LRAuditWarning)]
    assert sorted(w.split()[0] for w in ours) == sorted(rules(run))
    assert len(ours) == len(set(f.rule for f in run.findings))
    assert "LR014" in rules(run)


def test_findings_are_data():
    m = model()
    opt = sgd(m)
    with audit(opt, expect=[1.0]) as run:
        train_step(m, opt)
    f = run.findings[0]
    assert isinstance(f, RuntimeFinding)
    assert (f.rule, f.name, f.step, f.group, f.optimizer) == ("LR015", "trajectory-mismatch", 0, 0, "lr-SGD")
    run.add_findings([RuntimeFinding("LR016", "ranks differ", 0, 0, "lr-SGD")])
    assert [x.rule for x in run.findings] == ["LR015", "LR016"]
    with pytest.raises(TypeError):
        run.add_findings(["LR001"])


# -- tensor LRs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("device_path", [False, True])
def test_tensor_lr_recorded_and_checked(device_path, monkeypatch):
    monkeypatch.setattr(tracker, "FORCE_DEVICE_PATH", device_path)
    monkeypatch.setattr(tracker, "CHUNK", 4)  # several chunks, sealed and replayed
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=torch.tensor(0.01))
    sched = L.StepLR(opt, step_size=2, gamma=0.5)
    expected = []
    with audit(opt) as run:
        for i in range(9):
            if i == 5:
                opt.param_groups[0]["lr"].fill_(0.5)  # a manual in-place write
            expected.append(float(opt.param_groups[0]["lr"]))
            train_step(m, opt)
            sched.step()
    assert run.lrs() == expected
    assert rules(run) == ["LR002"]
    f = by_rule(run, "LR002")
    assert (f.step, f.group) == (5, 0)


def test_tensor_lr_device_path_reads_nothing_per_step(monkeypatch):
    """On the device path the audit converts no tensor to a Python number while training runs: the
    optimizer makes exactly the conversions it makes without the audit."""
    monkeypatch.setattr(tracker, "FORCE_DEVICE_PATH", True)
    calls = []
    real_item, real_float = torch.Tensor.item, torch.Tensor.__float__

    def run_steps(audited):
        m = model()
        lr = torch.tensor(0.01)
        opt = torch.optim.AdamW(m.parameters(), lr=lr)
        for p in m.parameters():
            p.grad = torch.zeros_like(p)
        a = audit(opt) if audited else None
        if a is not None:
            a.start()
        try:
            monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item") or real_item(self))
            monkeypatch.setattr(torch.Tensor, "__float__", lambda self: calls.append("float") or real_float(self))
            for i in range(5):
                lr.fill_(0.01 * (i + 1))
                opt.step()
        finally:
            monkeypatch.setattr(torch.Tensor, "item", real_item)
            monkeypatch.setattr(torch.Tensor, "__float__", real_float)
            run = a.stop() if a is not None else None
        return run

    run_steps(False)
    baseline = list(calls)
    calls.clear()
    run = run_steps(True)
    assert calls == baseline
    assert run.lrs() == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05], rel=1e-6)


# -- several optimizers, groups, state ------------------------------------------------------------
def test_gan_two_optimizers_named_like_lightning():
    g, d = model(), model()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4)
    sched_d = L.ExponentialLR(opt_d, 0.5)
    with audit([opt_g, opt_d], strict=True) as run:
        for _ in range(3):
            train_step(d, opt_d)
            train_step(g, opt_g)
            sched_d.step()
    assert [s[0] for s in run.series()] == ["lr-Adam", "lr-Adam-1"]
    assert run.lrs(optimizer=0) == [2e-4] * 3
    assert run.lrs(optimizer=opt_d) == [1e-4, 5e-5, 2.5e-5]
    assert run.lrs(optimizer="lr-Adam-1") == run.lrs(optimizer=1)
    assert run.steps(optimizer=opt_d) == 3
    with pytest.raises(KeyError):
        run.lrs(optimizer="lr-SGD")


def test_gan_findings_name_their_optimizer():
    g, d = model(), model()
    opt_g, opt_d = sgd(g), sgd(d)
    sched_g = L.StepLR(opt_g, 1)
    with audit([opt_g, opt_d]) as run:
        for _ in range(3):
            train_step(g, opt_g)
            train_step(d, opt_d)
            sched_g.step()
            opt_d.param_groups[0]["lr"] *= 0.5  # a manual schedule on D, no scheduler: fine
    assert run.findings == []
    sched_d = L.StepLR(opt_d, 1)  # noqa: F841 - attached, never stepped
    with audit([opt_g, opt_d]) as run:
        for _ in range(3):
            train_step(g, opt_g)
            train_step(d, opt_d)
            sched_g.step()
    assert [(f.rule, f.optimizer) for f in run.findings] == [("LR005", "lr-SGD-1")]


def test_add_param_group_mid_run():
    m = model()
    opt = torch.optim.SGD(m[0].parameters(), lr=0.1)
    sched = L.StepLR(opt, step_size=2, gamma=0.5)
    with pytest.warns(LRAuditWarning, match="LR017"), audit(opt) as run:
        for i in range(6):
            if i == 3:
                opt.add_param_group({"params": m[1].parameters(), "lr": 1.0, "name": "head"})
            train_step(m, opt)
            sched.step()
    assert run.lrs(0) == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert run.lrs(1) == [1.0, 0.5, 0.5]  # from step 3, when the group appeared
    assert run.lrs("head") == run.lrs(1)
    assert [s[2] for s in run.series()] == ["pg1", "head"]
    with pytest.raises(IndexError):
        run.lrs(2)
    # StepLR (chainable) carries on over a group it was built without: LR017, saying what torch does
    assert rules(run) == ["LR017"] and "schedules group(s) 1 from their own current LR" in run.findings[0].message


def test_load_state_dict_inside_the_block_replaces_groups():
    m = model()
    opt = sgd(m, lr=0.1)
    saved = sgd(m, lr=0.3).state_dict()
    sched = L.LambdaLR(opt, lambda s: 1.0)
    with audit(opt, strict=True) as run:
        train_step(m, opt)
        sched.step()
        opt.load_state_dict(saved)  # new param_group dicts, new LR: legitimate
        for g in opt.param_groups:
            g["initial_lr"] = 0.3
        sched.base_lrs = [0.3]
        train_step(m, opt)
        sched.step()
        train_step(m, opt)
    assert run.lrs() == [0.1, 0.3, 0.3]


def test_load_state_dict_then_manual_write_is_lr002():
    m = model()
    opt = sgd(m, lr=0.1)
    saved = sgd(m, lr=0.3).state_dict()
    sched = L.LambdaLR(opt, lambda s: 1.0)
    with audit(opt) as run:
        train_step(m, opt)
        sched.step()
        opt.load_state_dict(saved)
        train_step(m, opt)
        opt.param_groups[0]["lr"] = 0.2
        train_step(m, opt)
        sched.step()
    assert rules(run) == ["LR002"]
    assert by_rule(run, "LR002").step == 2


def test_global_audit_catches_optimizers_and_schedulers_created_inside():
    m = model()
    with audit() as run:
        opt = torch.optim.AdamW(m.parameters(), lr=0.1)
        sched = L.StepLR(opt, 1)
        for _ in range(3):
            sched.step()  # LR001, on an optimizer that had never stepped yet
            train_step(m, opt)
    assert rules(run) == ["LR001"]
    assert by_rule(run, "LR001").optimizer == "lr-AdamW"


def test_closure_that_writes_the_lr_records_what_the_update_used():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 100)
    w0 = m[1].bias.detach().clone()

    def closure():  # Lightning runs training_step here, between the pre and post hooks
        opt.zero_grad()
        backward(m)
        opt.param_groups[0]["lr"] = 1.0
        return None

    with audit(opt) as run:
        opt.step(closure)
        sched.step()
    assert run.lrs() == [1.0]
    assert torch.allclose(m[1].bias.detach(), w0 - 1.0 * m[1].bias.grad)
    f = by_rule(run, "LR002")
    assert "closure" in f.message


def test_unwraps_accelerate_optimizer():
    from accelerate import Accelerator

    m = model()
    acc = Accelerator(cpu=True)
    aopt = acc.prepare_optimizer(sgd(m, lr=0.2))
    sched = L.StepLR(aopt, 1, 0.5)  # built on the wrapper, as transformers' Trainer does
    with audit(aopt, strict=True) as run:
        for _ in range(2):
            aopt.zero_grad()
            backward(m)
            aopt.step()
            sched.step()
    assert run.lrs(optimizer=aopt) == [0.2, 0.1]
    assert _hook_free(aopt.optimizer)


@pytest.mark.skipif("lightning" not in sys.modules,
                    reason="importing lightning takes ~10 s; runs when the integration tests loaded it")
def test_unwraps_lightning_optimizer():
    from lightning.pytorch.core.optimizer import LightningOptimizer

    m = model()
    opt = sgd(m)
    lopt = LightningOptimizer(opt)
    assert isinstance(lopt, torch.optim.Optimizer)  # a subclass of SGD whose step runs no hook
    with audit(lopt) as run:
        train_step(m, opt)
    assert run.steps() == 1 and run.lrs(optimizer=lopt) == [0.1]
    assert _hook_free(opt)


def test_unwraps_an_optimizer_subclass_holding_the_real_one():
    """Lightning's wrapper mechanics without importing Lightning: a dynamic subclass of the optimizer's
    class sharing its state, whose own step never runs the hooks, the real one in ``_optimizer``."""

    class Wrapper:
        def __init__(self, optimizer):
            self.__dict__ = {k: v for k, v in optimizer.__dict__.items() if k not in ("step", "__del__")}
            self.__class__ = type("Wrapped" + optimizer.__class__.__name__, (self.__class__, optimizer.__class__), {})
            self._optimizer = optimizer

        def step(self, closure=None):
            return self._optimizer.step(closure)

    m = model()
    opt = sgd(m)
    w = Wrapper(opt)
    with audit(w) as run:
        w.zero_grad()
        backward(m)
        w.step()
    assert run.lrs(optimizer=w) == [0.1] and run.series()[0][:2] == ("lr-SGD", "SGD")


def test_compiled_training_step_is_recorded():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)

    @torch.compile(backend="eager")
    def opt_step():
        opt.step()

    with audit(opt, strict=True) as run:
        for _ in range(3):
            opt.zero_grad()
            backward(m)
            opt_step()
            sched.step()
    assert run.lrs() == [0.1, 0.05, 0.025]


# -- lifecycle -------------------------------------------------------------------------------------
def test_start_stop_api_for_callbacks():
    m = model()
    opt = sgd(m)
    a = audit(opt)
    assert isinstance(a, Audit)
    run = a.start()
    assert isinstance(run, Run)
    train_step(m, opt)
    assert run.lrs() == [0.1]  # readable while running
    assert a.stop() is run
    assert a.stop() is run  # idempotent
    with pytest.raises(RuntimeError):
        a.start()
    assert audit(opt).stop().series() == []  # never started: nothing recorded


def test_two_overlapping_audits_stop_in_any_order():
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    a, b = audit(opt), audit()
    ra = a.start()
    train_step(m, opt)
    rb = b.start()
    sched.step()
    train_step(m, opt)
    ra = a.stop()  # the first one stops first
    sched.step()
    train_step(m, opt)
    rb = b.stop()
    assert ra.lrs() == [0.1, 0.05] and ra.findings == []
    assert rb.lrs() == [0.05, 0.025] and rb.findings == []


def test_bad_arguments():
    with pytest.warns(LRAuditWarning, match="cannot audit object"):
        a = audit(object())  # one clear warning; whatever it wraps trains unaudited
    with a as run:
        pass
    assert run.series() == []
    with pytest.raises(ValueError):
        audit(None, expect="schedule")
    with pytest.raises(TypeError):
        audit(None, expect=3)


# -- trajectory file -------------------------------------------------------------------------------
def test_to_dict_and_save(tmp_path):
    m = model()
    opt = torch.optim.SGD([{"params": m[0].parameters(), "name": "backbone"},
                           {"params": m[1].parameters(), "lr": 1.0}], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt) as run:
            train_step(m, opt)
            opt.param_groups[1]["lr"] = float("nan")
            train_step(m, opt)
    data = run.to_dict()
    assert data == {  # version 2: runs of equal values as [value, count], non-finite values as strings
        "version": 2,
        "optimizers": [{"name": "lr-SGD", "class": "SGD", "steps": 2, "groups": [
            {"name": "backbone", "lr": [[0.1, 2]]}, {"name": "pg2", "lr": [1.0, "nan"]}]}],
        "findings": [f.to_dict() for f in run.findings],
    }
    assert [f["rule"] for f in data["findings"]] == ["LR004", "LR014"]
    assert set(data["findings"][0]) == {"rule", "message", "step", "group", "optimizer"}
    old_umask = os.umask(0o022)
    try:
        path = run.save(tmp_path / "sub" / "lr.json")
    finally:
        os.umask(old_umask)
    with open(path) as fh:
        assert json.load(fh) == data
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["lr.json"]  # no temporary left
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # what open(path, "w") gives, not mkstemp's 0600


def test_report_renders(capsys):
    from rich.console import Console

    m = model()
    opt = sgd(m)
    with audit(opt, expect=[0.2]) as run:
        train_step(m, opt)
    console = Console(width=100, record=True)
    run.report(console)
    text = console.export_text()
    assert "lr-SGD " in text and "LR015" in text and "trajectory-mismatch" in text


# -- storage ---------------------------------------------------------------------------------------
def test_series_runs_pop_and_copy():
    s = Series()
    for v in [1.0, 1.0, 1.0, 2.0, float("nan"), float("nan"), 3.0]:
        s.append(v)
    assert len(s) == 7 and len(s.vals) == 4
    assert list(s.runs())[:2] == [(1.0, 3), (2.0, 1)]
    assert s.pop() == 3.0 and s.pop() != s.pop()  # two NaNs out of one run
    c = s.copy()
    s.append(2.0, 5)
    assert c.to_list() == [1.0, 1.0, 1.0, 2.0] and s.to_list() == [1.0] * 3 + [2.0] * 6


def test_trajectory_aliases_identical_groups_and_splits_them():
    t = Trajectory()
    for i in range(5):
        t.append([0.1, 0.1, 0.01])
    t.append([0.2, 0.1, 0.02])  # group 1 leaves group 0
    t.append([0.2, 0.1, 0.02, 5.0])  # a new group
    t.pop()
    t.replace_last([0.3, 0.1, 0.03])
    t.append([0.3, 0.1, 0.03, 5.0])
    assert t.values(0) == [0.1] * 5 + [0.3, 0.3]
    assert t.values(1) == [0.1] * 7
    assert t.values(2) == [0.01] * 5 + [0.03, 0.03]
    assert t.values(3) == [5.0] and t.group_start(3) == 6
    assert t.groups[1].alias is None and t.groups[2].alias is None


def test_memory_for_many_piecewise_constant_steps():
    t = Trajectory()
    for step in range(200_000):
        lr = 0.1 * 0.5 ** (step // 20_000)
        t.append([lr, lr, lr * 0.1, lr * 0.1, lr, lr, lr * 0.1, lr])
    assert t.n == 200_000
    assert t.nbytes() < 20_000  # a few runs per group, not 1.6M floats
    assert t.values(2)[-1] == pytest.approx(0.1 * 0.5 ** 9 * 0.1)


def test_an_internal_error_never_breaks_training(monkeypatch):
    from lraudit.runtime import LRAuditInternalWarning
    from lraudit.runtime.checker import Checker

    def broken(self, vals):
        raise RuntimeError("bug in lraudit")

    monkeypatch.setattr(Checker, "pre", broken)
    m = model()
    opt = sgd(m)
    sched = L.StepLR(opt, 1, 0.5)
    with pytest.warns(LRAuditInternalWarning, match="bug in lraudit"):
        with audit(opt):
            for _ in range(3):
                train_step(m, opt)
                sched.step()
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 3


def test_import_lraudit_runtime_needs_no_torch():
    import subprocess

    code = ("import sys\nimport lraudit, lraudit.runtime\nfrom lraudit.runtime import Run, RuntimeFinding\n"
            "assert 'torch' not in sys.modules\nfrom lraudit import audit\nassert 'torch' in sys.modules\n"
            "assert 'libcst' not in sys.modules\n")
    root = __file__.rsplit("/tests/", 1)[0]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)
