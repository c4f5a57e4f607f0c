"""The trajectory file, version 2: what a real audit saves reads back exactly as an independent record.

The record is a step pre-hook of the test's own (registered before the audit's hooks): the LR and the
momentum/betas each update used. lraudit's output is compared with it, never with itself.
"""
import json
import math
import os
import stat
import warnings

import pytest
import torch
from rt_helpers import model, train_step
from torch.optim import lr_scheduler as L

from lraudit.runtime import LRAuditWarning, audit
from lraudit.runtime.run import load
from lraudit.runtime.series import ParamRecord, Trajectory
from lraudit.runtime.trajectory_file import read


class Recorder:
    """What every update used, read in a pre-hook of the test's own: per group lr, momentum, betas."""

    def __init__(self, opt):
        self.rows = []
        opt.register_step_pre_hook(self.hook)

    def hook(self, opt, args, kwargs):
        self.rows.append([dict(lr=float(g["lr"]), momentum=g.get("momentum"),
                               betas=tuple(float(b) for b in g["betas"]) if "betas" in g else None)
                          for g in opt.param_groups])

    def lrs(self, j):
        return [r[j]["lr"] for r in self.rows if j < len(r)]

    def param(self, j, key):
        if key == "momentum":
            return [r[j]["momentum"] for r in self.rows if j < len(r)]
        return [r[j]["betas"][int(key[-1]) - 1] for r in self.rows if j < len(r)]


def same(a, b):
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def test_saved_file_reads_back_as_what_each_update_used(tmp_path):
    m = model()
    opt = torch.optim.SGD([{"params": m[0].parameters()}, {"params": [], "lr": 0.1},
                           {"params": m[1].parameters(), "lr": 0.05, "name": "head"}], lr=0.1, momentum=0.9)
    rec = Recorder(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt) as run:
            sched = L.StepLR(opt, step_size=7, gamma=0.5)
            for i in range(40):
                train_step(m, opt)
                sched.step()
                if i == 11:
                    extra = torch.nn.Parameter(torch.zeros(2))
                    opt.add_param_group({"params": [extra], "lr": 0.3, "momentum": 0.0})
                if i == 30:
                    opt.param_groups[2]["lr"] = float("nan")
    path = run.save(tmp_path / "lr.json")
    raw = json.loads(open(path).read())
    assert raw["version"] == 2
    groups = raw["optimizers"][0]["groups"]
    assert groups[1] == {"name": "pg2", "same_as": 0}  # identical to group 0 from the same step: stored once
    assert groups[3]["start"] == 12 and "start" not in groups[0]
    assert groups[2]["lr"][-1] == ["nan", 9]  # NaN for updates 31-39, as one run
    [opt_rec] = load(path).optimizers
    assert opt_rec.steps == 40 and [g.name for g in opt_rec.groups] == ["pg1", "pg2", "head", "pg4"]
    for j, g in enumerate(opt_rec.groups):
        assert same(g.lr, rec.lrs(j)), j
        assert g.start == 40 - len(rec.lrs(j))
        assert g.params == {}  # StepLR never changed the momentum: not stored
    names = [s.name for s in run.series()]
    assert names == ["lr-SGD/pg1", "lr-SGD/pg2", "lr-SGD/head", "lr-SGD/pg4"]


def test_version_1_files_read_as_before(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"version": 1, "optimizers": [{"name": "lr-SGD", "class": "SGD", "steps": 4, "groups": [
        {"name": "pg1", "lr": [0.1, 0.1, None, 0.05]}, {"name": "late", "lr": [0.3, 0.3]}]}], "findings": []}))
    [opt] = load(path).optimizers
    assert same(opt.groups[0].lr, [0.1, 0.1, math.nan, 0.05])
    assert (opt.groups[1].start, opt.groups[1].lr) == (2, [0.3, 0.3])  # a late group ends with the others


def test_momentum_cycled_by_onecyclelr_is_recorded_per_update(tmp_path):
    m = model()
    opt = torch.optim.SGD([{"params": m[0].parameters()}, {"params": m[1].parameters(), "lr": 0.01}],
                          lr=0.1, momentum=0.9)
    rec = Recorder(opt)
    with audit(opt, strict=True) as run:
        sched = L.OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=25, base_momentum=0.8, max_momentum=0.95)
        for _ in range(25):
            train_step(m, opt)
            sched.step()
    series = run.series()
    assert [s.params["momentum"] for s in series] == [rec.param(0, "momentum"), rec.param(1, "momentum")]
    assert len(set(rec.param(0, "momentum"))) > 10  # it really cycled: an off-by-one cannot pass
    data = json.loads(open(run.save(tmp_path / "lr.json")).read())
    assert set(data["optimizers"][0]["groups"][0]) == {"name", "lr", "momentum"}
    [opt_rec] = load(tmp_path / "lr.json").optimizers
    assert opt_rec.groups[1].params["momentum"] == rec.param(1, "momentum")


@pytest.mark.parametrize("make", [
    lambda o: L.OneCycleLR(o, max_lr=0.01, total_steps=20),
    lambda o: L.CyclicLR(o, base_lr=0.001, max_lr=0.01, step_size_up=4, cycle_momentum=True,
                         base_momentum=0.85, max_momentum=0.95),
])
def test_adam_beta1_cycled_is_recorded(make):
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=0.001, betas=(0.9, 0.98))
    rec = Recorder(opt)
    with audit(opt, strict=True) as run:
        sched = make(opt)
        for _ in range(20):
            train_step(m, opt)
            sched.step()
    [s] = run.series()
    assert s.name == "lr-Adam"
    assert s.params["beta1"] == rec.param(0, "beta1") and len(set(s.params["beta1"])) > 3
    assert s.params["beta2"] == rec.param(0, "beta2") == [0.98] * 20


def test_momentum_not_stored_when_no_scheduler_changes_it(tmp_path):
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    with audit(opt) as run:
        sched = L.CosineAnnealingLR(opt, T_max=10)
        for _ in range(10):
            train_step(m, opt)
            sched.step()
    assert run.series()[0].params == {}
    assert set(run.to_dict()["optimizers"][0]["groups"][0]) == {"name", "lr"}


def test_file_permissions_follow_the_umask_and_the_replaced_file(tmp_path):
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with audit(opt) as run:
        train_step(m, opt)
    old = os.umask(0o027)
    try:
        path = run.save(tmp_path / "a.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    os.chmod(path, 0o664)
    run.save(path)  # replacing a file keeps its permissions
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o664


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with audit(opt) as run:
        train_step(m, opt)
    path = tmp_path / "lr.json"
    path.write_text("previous")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        run.save(path)
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["lr.json"]


def _file_size(steps, groups, lr_at):
    """Bytes of the saved file for a trajectory recorded through the audit's own storage."""
    from lraudit.runtime.run import Run, OptimizerSeries

    traj = Trajectory()
    for k in range(steps):
        traj.append([lr_at(k, j) for j in range(groups)])
    run = Run()
    run._freeze([OptimizerSeries("lr-AdamW", "AdamW", [f"pg{j + 1}" for j in range(groups)], traj, steps)], [])
    data = run.to_dict()
    [opt] = read(data).optimizers
    for j in (0, groups - 1):  # and it reads back exactly
        assert opt.groups[j].lr == [lr_at(k, j) for k in range(steps)]
    return len(json.dumps(data, separators=(",", ":")))


def test_100k_steps_8_groups_constant_lr_take_well_under_a_kilobyte():
    size = _file_size(100_000, 8, lambda k, j: 3e-4 if j % 2 else 1e-3)
    assert size < 1024, size


def test_param_record_fills_between_readings():
    p = ParamRecord()
    groups = [{"momentum": 0.9}]
    p.at(0, p.read(groups))
    groups[0]["momentum"] = 0.8
    p.at(3, p.read(groups))  # updates 0-2 used 0.9, from update 3 on 0.8
    assert p.values(0, 5) == [0.9, 0.9, 0.9, 0.8, 0.8] and p.changed
    assert p.tail(0, 3, 5) == [0.9, 0.8, 0.8]
    assert p.at(5, [1.0]) == [(0, "momentum", 1.0)]  # out of [0, 1): reported once
    assert p.at(6, [1.2]) == []


def test_momentum_pushed_past_one_by_a_scheduler_is_lr022():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    rec = Recorder(opt)
    with pytest.warns(LRAuditWarning, match="LR022"), audit(opt) as run:
        # torch does not check these: OneCycleLR cycles the momentum from 1.05 down to 0.85 and back
        sched = L.OneCycleLR(opt, max_lr=0.1, total_steps=10, base_momentum=0.85, max_momentum=1.05)
        for _ in range(10):
            train_step(m, opt)
            sched.step()
    [f] = [f for f in run.findings if f.rule == "LR022"]
    first_bad = next(k for k, v in enumerate(rec.param(0, "momentum")) if not 0 <= v < 1)
    assert f.step == first_bad == 0 and f.group == 0 and f.optimizer == "lr-SGD"
    assert "momentum of lr-SGD is 1.05 from optimizer step 0:" in f.message
    assert run.series()[0].params["momentum"] == rec.param(0, "momentum")


def test_beta1_pushed_past_one_mid_run_is_lr022_at_that_step():
    m = model()
    opt = torch.optim.Adam([{"params": m[0].parameters(), "name": "enc"}, {"params": m[1].parameters()}], lr=1e-3)
    rec = Recorder(opt)

    class BadBeta(L.LRScheduler):  # a custom scheduler that writes beta1 wrongly after a few steps
        def get_lr(self):
            for g in self.optimizer.param_groups:
                g["betas"] = (0.9 + 0.03 * self.last_epoch, g["betas"][1])
            return [g["lr"] for g in self.optimizer.param_groups]

    with pytest.warns(LRAuditWarning, match="LR022"), audit(opt) as run:
        sched = BadBeta(opt)
        for _ in range(8):
            train_step(m, opt)
            sched.step()
    [f] = [f for f in run.findings if f.rule == "LR022"]
    first_bad = next(k for k, v in enumerate(rec.param(0, "beta1")) if not 0 <= v < 1)
    assert (f.step, f.group) == (first_bad, 0) and first_bad == 4
    assert "betas[0] of lr-Adam/enc is" in f.message
    assert [s.params["beta1"] for s in run.series()] == [rec.param(0, "beta1"), rec.param(1, "beta1")]


def test_momentum_in_range_is_silent_and_constant_momentum_costs_no_reading(monkeypatch):
    calls = []
    original = ParamRecord.read
    monkeypatch.setattr(ParamRecord, "read", lambda self, groups: calls.append(1) or original(self, groups))
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    with audit(opt, strict=True) as run:
        sched = L.StepLR(opt, 3)
        for _ in range(20):
            train_step(m, opt)
            sched.step()
    assert run.findings == []
    assert len(calls) == 2  # at the audit's start and at StepLR's construction: never per step


@pytest.mark.parametrize("device_path", [False, True])
def test_momentum_with_tensor_lr_on_the_device_path(device_path, monkeypatch):
    """Tensor LRs on an accelerator are replayed at the end: momentum readings take the same route,
    so each lands at its update (CPU tensors forced through that path here)."""
    from lraudit.runtime import tracker

    monkeypatch.setattr(tracker, "FORCE_DEVICE_PATH", device_path)
    monkeypatch.setattr(tracker, "CHUNK", 4)
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=torch.tensor(0.01))
    rec = Recorder(opt)
    with audit(opt, strict=True) as run:
        sched = L.CyclicLR(opt, base_lr=0.001, max_lr=0.01, step_size_up=3, base_momentum=0.8, max_momentum=0.9)
        for _ in range(15):
            train_step(m, opt)
            sched.step()
    [s] = run.series()
    assert s.lrs == pytest.approx(rec.lrs(0), rel=1e-7)
    assert s.params["beta1"] == rec.param(0, "beta1") and len(set(s.params["beta1"])) > 3


def test_gz_name_writes_gzip_and_every_reader_takes_it(tmp_path):
    import gzip

    from click.testing import CliRunner

    from lraudit.cli_runtime import export_command, report_command

    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    rec = Recorder(opt)
    with audit(opt) as run:
        sched = L.CosineAnnealingLR(opt, T_max=30)
        for _ in range(30):
            train_step(m, opt)
            sched.step()
    path = run.save(tmp_path / "lr.json.gz")
    with gzip.open(path, "rt") as fh:
        assert json.load(fh)["version"] == 2
    assert load(path).optimizers[0].groups[0].lr == rec.lrs(0)
    result = CliRunner().invoke(report_command, [path])
    assert result.exit_code == 0 and "lr-SGD (SGD, 30 optimizer steps)" in result.output
    result = CliRunner().invoke(export_command, [path, "--to", "csv", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 0, result.output
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(open(path, "rb").read()[:40])
    result = CliRunner().invoke(report_command, [str(truncated)])
    assert result.exit_code == 2 and "not a trajectory" in result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_report_refuses_what_is_not_a_regular_file(tmp_path):
    from click.testing import CliRunner

    from lraudit.cli_runtime import report_command

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for target in (str(fifo), "/dev/zero"):
        result = CliRunner().invoke(report_command, [target])
        assert result.exit_code == 2 and "not a regular file" in result.output, target


def test_momentum_of_a_onecyclelr_inside_sequentiallr():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    rec = Recorder(opt)
    with audit(opt, strict=True) as run:
        sched = L.SequentialLR(opt, [L.ConstantLR(opt, factor=0.5, total_iters=4),
                                     L.OneCycleLR(opt, max_lr=0.2, total_steps=20)], milestones=[4])
        for _ in range(20):
            train_step(m, opt)
            sched.step()
    assert run.series()[0].params["momentum"] == rec.param(0, "momentum")
    assert len(set(rec.param(0, "momentum"))) > 5


def test_param_record_keeps_columns_by_group_and_key():
    p = ParamRecord()
    groups = [{"momentum": 0.9}, {"betas": (0.9, 0.99)}]
    p.at(0, p.read(groups))
    assert p.columns == [(0, "momentum"), (1, "beta1"), (1, "beta2")]
    groups[0]["momentum"] = True  # not a value (some other optimizer's flag): keeps its previous value
    groups.append({"momentum": 0.5})  # a group added later
    p.at(2, p.read(groups))
    assert p.columns[3] == (2, "momentum") and p.current == [0.9, 0.9, 0.99, 0.5]
    assert p.start(3) == 2 and not p.changed


def test_run_report_and_lraudit_report_print_the_same_table(tmp_path):
    from rich.console import Console

    from lraudit.runtime.trajectory_report import load_trajectory, render_trajectory

    m = model()
    opt = torch.optim.SGD([{"params": m[0].parameters(), "name": "[no_decay]"}, {"params": m[1].parameters()}],
                          lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt) as run:
            sched = L.OneCycleLR(opt, max_lr=0.3, total_steps=12)
            for i in range(12):
                train_step(m, opt)
                sched.step()
                if i == 6:
                    opt.param_groups[1]["lr"] = 0.5  # LR002 / LR004
    live = Console(width=120, record=True, file=open(os.devnull, "w"))
    run.report(live)
    saved = Console(width=120, record=True, file=open(os.devnull, "w"))
    render_trajectory(load_trajectory(run.save(tmp_path / "lr.json")), saved)
    text = live.export_text()
    assert text == saved.export_text()
    assert "lr-SGD/[no_decay]" in text and "lr-SGD/pg2-momentum" in text and "LR002" in text
