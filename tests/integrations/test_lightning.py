"""The Lightning callback against a real Trainer: what it records equals what LearningRateMonitor logs."""
import json
import math
import sys
from collections import defaultdict

import pytest

pl = pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: E402
from lightning.pytorch.loggers.logger import Logger  # noqa: E402

import lraudit.integrations.lightning as lightning_integration  # noqa: E402
from lraudit import LRAuditError  # noqa: E402
from lraudit.integrations.lightning import LRAuditCallback  # noqa: E402

BATCHES_PER_EPOCH = 6
EPOCHS = 3


class MemoryLogger(Logger):
    def __init__(self):
        super().__init__()
        self.records = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.records.append((step, dict(metrics)))


class Tiny(pl.LightningModule):
    def __init__(self, interval, warmup_write=False):
        super().__init__()
        self.body, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
        self.interval, self.warmup_write = interval, warmup_write

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.head(self.body(x)), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(
            [{"params": self.body.parameters(), "name": "body"},
             {"params": self.head.parameters(), "name": "head", "lr": 0.05}],
            lr=0.1, momentum=0.9,
        )
        if self.interval == "step":  # changes at every optimizer step: an off-by-one cannot pass
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9 ** s)
        else:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.interval}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        optimizer.step(closure=optimizer_closure)
        if self.warmup_write and self.trainer.global_step < 3:
            # The warm-up recipe of Lightning's docs, on top of a configured scheduler: they fight.
            for group in optimizer.param_groups:
                group["lr"] = 0.01 * (self.trainer.global_step + 1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(4 * BATCHES_PER_EPOCH, 4, generator=g),
                                              torch.randn(4 * BATCHES_PER_EPOCH, 1, generator=g))
        return torch.utils.data.DataLoader(data, batch_size=4)


def fit(module, callbacks, accumulate=1, logger=None):
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accumulate_grad_batches=accumulate, logger=logger or False, log_every_n_steps=1,
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", devices=1,
    )
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("accumulate", [1, 4])
def test_recorded_lrs_equal_learning_rate_monitor(interval, accumulate, tmp_path, capsys):
    logger = MemoryLogger()
    cb = LRAuditCallback(out=tmp_path / "lr.json")
    trainer = fit(Tiny(interval), [LearningRateMonitor(logging_interval=None), cb], accumulate, logger)
    run = cb.run

    steps = trainer.global_step
    # 6 batches an epoch; with accumulate=4 Lightning steps after batches 4 and 6 (end of epoch).
    assert steps == EPOCHS * (BATCHES_PER_EPOCH if accumulate == 1 else 2)
    recorded = {f"{opt}/{group}": lrs for opt, _cls, group, lrs in run.series()}
    logged = defaultdict(list)  # series name -> [(optimizer steps taken so far, LR)]
    for step, metrics in logger.records:
        for name, value in metrics.items():
            if name.startswith("lr-"):
                logged[name].append((step, value))
    assert set(recorded) == set(logged) == {"lr-SGD/body", "lr-SGD/head"}

    for name, lrs in recorded.items():
        assert len(lrs) == steps
        if interval == "step":
            # Logged at each batch start: the LR the next optimizer step (number `step`, from 0) uses;
            # with accumulation, every micro-batch of a window logs the same step and value.
            assert sorted({s for s, _ in logged[name]}) == list(range(steps))
            for step, value in logged[name]:
                assert lrs[step] == value, (name, step)
        else:
            # Logged at each epoch start: the LR every optimizer step of that epoch uses.
            starts = dict(logged[name])
            assert sorted(starts) == [e * steps // EPOCHS for e in range(EPOCHS)]
            expanded = [starts[max(s for s in starts if s <= i)] for i in range(steps)]
            assert lrs == expanded, name
    assert len(set(recorded["lr-SGD/head"])) == (steps if interval == "step" else EPOCHS)
    assert run.findings == []
    assert run.steps() == steps

    saved = json.loads((tmp_path / "lr.json").read_text())
    assert [o["name"] for o in saved["optimizers"]] == ["lr-SGD"]
    assert [g["name"] for g in saved["optimizers"][0]["groups"]] == ["body", "head"]
    assert "lr-SGD (SGD, %d optimizer steps)" % steps in capsys.readouterr().out


def test_single_group_series_name_and_hooks_removed():
    class OneGroup(Tiny):
        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=1e-3)
            return {"optimizer": opt,
                    "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, 0.5), "interval": "epoch"}}

    logger = MemoryLogger()
    cb = LRAuditCallback(report=False)
    trainer = fit(OneGroup("epoch"), [LearningRateMonitor(), cb], logger=logger)
    names = {name for _, metrics in logger.records for name in metrics if name.startswith("lr-")}
    assert names == {"lr-Adam"}
    [(opt_name, cls, group, lrs)] = cb.run.series()
    assert (opt_name, cls, group) == ("lr-Adam", "Adam", "pg1")  # LearningRateMonitor drops /pg1 for one group
    assert lrs == [1e-3] * 6 + [5e-4] * 6 + [2.5e-4] * 6
    opt = trainer.optimizers[0]
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


class TwoOptimizers(pl.LightningModule):
    """Manual optimization, two SGDs; only the second has a scheduler, so LearningRateMonitor names it
    ``lr-SGD`` and the first ``lr-SGD-1`` (schedulers' optimizers first): the audit must agree."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt_a, opt_b = self.optimizers()
        for opt, net in ((opt_a, self.a), (opt_b, self.b)):
            opt.zero_grad()
            self.manual_backward(torch.nn.functional.mse_loss(net(x), y))
            opt.step()
        self.lr_schedulers().step()

    def configure_optimizers(self):
        opt_a = torch.optim.SGD(self.a.parameters(), lr=0.1)
        opt_b = torch.optim.SGD(self.b.parameters(), lr=0.2)
        return [opt_a, opt_b], [torch.optim.lr_scheduler.ExponentialLR(opt_b, 0.9)]

    train_dataloader = Tiny.train_dataloader


def test_two_optimizers_are_named_like_learning_rate_monitor():
    logger = MemoryLogger()
    cb = LRAuditCallback(report=False)
    trainer = pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         callbacks=[LearningRateMonitor(logging_interval="step"), cb])
    trainer.fit(TwoOptimizers())
    recorded = {name: lrs for name, _cls, _group, lrs in cb.run.series()}
    assert recorded["lr-SGD"][:3] == pytest.approx([0.2, 0.18, 0.162], rel=1e-12)  # the scheduled one
    assert recorded["lr-SGD-1"] == [0.1] * BATCHES_PER_EPOCH
    logged = defaultdict(dict)
    for step, metrics in logger.records:
        for name, value in metrics.items():
            if name.startswith("lr-"):
                logged[name][step] = value
    assert set(logged) == set(recorded)
    for name, by_step in logged.items():
        assert [by_step[i] for i in range(BATCHES_PER_EPOCH)] == recorded[name], name
    assert cb.run.findings == []


def test_strict_raises_on_a_warmup_that_fights_the_scheduler():
    cb = LRAuditCallback(strict=True, report=False)
    with pytest.raises(LRAuditError) as info:
        fit(Tiny("epoch", warmup_write=True), [cb])
    assert "LR002" in str(info.value)
    assert "LR002" in {f.rule for f in cb.run.findings}


def test_missing_lightning_names_the_extra(monkeypatch):
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(lightning_integration, "_CLASS", None)
    with pytest.raises(ImportError, match=r"pip install 'torch-lraudit\[lightning\]'"):
        lightning_integration.LRAuditCallback


def test_findings_reach_on_finding_during_fit():
    got = []

    class Probe(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                self.after_first_epoch = list(got)

    probe = Probe()
    cb = LRAuditCallback(report=False, on_finding=lambda f: got.append(f.rule))
    fit(Tiny("epoch", warmup_write=True), [cb, probe])
    # the warm-up writes one value into both groups: LR002 (it fights StepLR) and LR004 (it flattens the
    # 2:1 ratio StepLR keeps), certain at StepLR's first step, the end of the first epoch
    assert probe.after_first_epoch == ["LR002", "LR004"]
    assert got == ["LR002", "LR004"] and [f.rule for f in cb.run.findings] == ["LR002", "LR004"]


def test_strict_immediate_stops_fit_at_the_first_finding():
    cb = LRAuditCallback(report=False, strict="immediate")
    module = Tiny("epoch", warmup_write=True)
    with pytest.raises(LRAuditError) as info:
        fit(module, [cb])
    assert [f.rule for f in info.value.findings] == ["LR002"]
    # certain when StepLR first steps (end of the first epoch, 6 updates): stopped there, not after 18
    assert module.trainer.global_step == BATCHES_PER_EPOCH


def test_resume_from_a_checkpoint_is_silent_under_expect_scheduler(tmp_path):
    fit(Tiny("step"), [])  # warm the import paths; the run below is the one saved
    torch.manual_seed(0)
    first = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, accelerator="cpu", devices=1)
    first.fit(Tiny("step"))
    ckpt = tmp_path / "one_epoch.ckpt"
    first.save_checkpoint(ckpt)
    cb = LRAuditCallback(report=False, expect="scheduler")
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[cb])
    trainer.fit(Tiny("step"), ckpt_path=str(ckpt))
    body = cb.run.lrs("body")
    # LambdaLR(0.9 ** s) over global steps 6..11, from the restored scheduler, closed form
    assert body == pytest.approx([0.1 * 0.9 ** s for s in range(6, 12)], rel=1e-12)
    assert cb.run.findings == []


class CosineThenSWA(Tiny):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class OwnRecord(pl.Callback):
    """The LR each optimizer step is about to use, read by the test's own callback."""

    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append(optimizer.param_groups[0]["lr"])


def test_stochastic_weight_averaging_is_a_new_phase_under_expect_scheduler():
    from lightning.pytorch.callbacks import StochasticWeightAveraging

    torch.manual_seed(0)
    cb, own = LRAuditCallback(report=False, expect="scheduler"), OwnRecord()
    swa = StochasticWeightAveraging(swa_lrs=0.02, swa_epoch_start=3, annealing_epochs=2)
    trainer = pl.Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[swa, cb, own])
    trainer.fit(CosineThenSWA("epoch"))
    lrs = cb.run.lrs()
    assert lrs == own.seen and len(lrs) == 6 * BATCHES_PER_EPOCH
    per_epoch = lrs[::BATCHES_PER_EPOCH]
    assert per_epoch[:3] == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 6)) / 2 for e in range(3)])
    assert per_epoch[-1] == pytest.approx(0.02)  # SWALR took over at epoch 3 and annealed to swa_lrs
    assert cb.run.findings == []  # before: LR015 from epoch 3 on (cosine replayed alone)
