"""`log=True`: the callbacks log what the audit recorded through the frameworks' own loggers.

Real Trainers on tiny models; what reaches TensorBoard is read back with tensorboard's own event
reader and compared with a step pre-hook of the test's own (the LR each update really used). Names are
compared with what Lightning's LearningRateMonitor logs for the same optimizer.
"""
import glob
import math
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(logdir):
    files = glob.glob(os.path.join(str(logdir), "**", "events.out.tfevents.*"), recursive=True)
    assert files, f"no event file under {logdir}"
    out = {}
    for folder in sorted({os.path.dirname(f) for f in files}):
        acc = EventAccumulator(folder, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    return out


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)  # TensorBoard keeps float32


# -- Lightning -------------------------------------------------------------------------------------
pl = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from lraudit.integrations.lightning import LRAuditCallback as LightningCallback  # noqa: E402

from .test_lightning import MemoryLogger  # noqa: E402

BATCHES = 6


class Module(pl.LightningModule):
    """SGD with momentum and a per-step LambdaLR; ``groups`` picks one group, two unnamed, or named."""

    def __init__(self, groups):
        super().__init__()
        self.body, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
        self.groups = groups
        self.used = []  # per update: every group's LR, read by a pre-hook of the test's own

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.head(self.body(x)), y)

    def configure_optimizers(self):
        if self.groups == "one":
            params = self.parameters()
        elif self.groups == "two":
            params = [{"params": self.body.parameters()}, {"params": self.head.parameters(), "lr": 0.05}]
        else:
            params = [{"params": self.body.parameters(), "name": "body"},
                      {"params": self.head.parameters(), "lr": 0.05, "name": "head"}]
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        opt.register_step_pre_hook(lambda o, a, k: self.used.append([g["lr"] for g in o.param_groups]))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9 ** s)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(4 * BATCHES, 4, generator=g),
                                              torch.randn(4 * BATCHES, 1, generator=g))
        return torch.utils.data.DataLoader(data, batch_size=4)


def fit(module, callbacks, logger, epochs=2):
    torch.manual_seed(0)
    trainer = pl.Trainer(max_epochs=epochs, logger=logger, log_every_n_steps=1, callbacks=callbacks,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1)
    trainer.fit(module)
    return trainer


def monitor_names(groups):
    logger = MemoryLogger()
    fit(Module(groups), [LearningRateMonitor(logging_interval="step")], logger, epochs=1)
    return {name for _, metrics in logger.records for name in metrics if name.startswith("lr-")}


@pytest.mark.parametrize("groups, names", [
    ("one", ["lr-SGD"]), ("two", ["lr-SGD/pg1", "lr-SGD/pg2"]), ("named", ["lr-SGD/body", "lr-SGD/head"])])
def test_lightning_logs_under_learning_rate_monitor_names_through_trainer_logger(groups, names, tmp_path):
    assert monitor_names(groups) == set(names)
    module = Module(groups)
    tb = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    memory = MemoryLogger()
    cb = LightningCallback(log=True, report=False)
    trainer = fit(module, [cb], [tb, memory])
    steps = trainer.global_step
    assert steps == 2 * BATCHES and len(module.used) == steps
    logged = scalars(tb.log_dir)
    assert sorted(t for t in logged if t.startswith("lr-")) == names
    for j, name in enumerate(names):
        # step k: the LR update k used (LearningRateMonitor's convention); it changes at every step
        assert [s for s, _ in logged[name]] == list(range(steps))
        assert all(close(v, module.used[k][j]) for k, v in logged[name]), name
    memory_steps = sorted(step for step, metrics in memory.records if names[0] in metrics)
    assert memory_steps == list(range(steps))  # every logger of trainer.loggers, each step once


def test_lightning_does_not_log_unless_asked(tmp_path):
    memory = MemoryLogger()
    fit(Module("one"), [LightningCallback(report=False)], memory, epochs=1)
    assert not any(name.startswith("lr-") for _, metrics in memory.records for name in metrics)


def test_lightning_logs_momentum_once_a_scheduler_cycles_it(tmp_path):
    class Cycling(Module):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            opt.register_step_pre_hook(lambda o, a, k: self.used.append(o.param_groups[0]["momentum"]))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=2 * BATCHES)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    module = Cycling("one")
    memory = MemoryLogger()
    fit(module, [LightningCallback(log=True, report=False)], memory)
    logged = {step: metrics["lr-SGD-momentum"] for step, metrics in memory.records if "lr-SGD-momentum" in metrics}
    assert [logged[k] for k in sorted(logged)] == module.used and sorted(logged) == list(range(2 * BATCHES))


# -- transformers ----------------------------------------------------------------------------------
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from lraudit.integrations.transformers import LRAuditCallback as HFCallback  # noqa: E402

from .test_transformers import Pairs, tiny_bert  # noqa: E402


def test_transformers_logs_through_report_to_integrations(tmp_path):
    used = []
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(
        lambda o, a, k: used.append([g["lr"] for g in o.param_groups]))
    try:
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=1,
            learning_rate=1e-3, lr_scheduler_type="linear", warmup_steps=3, logging_steps=1, save_strategy="no",
            report_to=["tensorboard"], use_cpu=True, disable_tqdm=True)
        cb = HFCallback(log=True, report=False)
        trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Pairs(), callbacks=[cb])
        trainer.train()
    finally:
        handle.remove()
    steps = trainer.state.global_step
    assert steps == 8 and len(used) == steps
    logged = scalars(tmp_path / "out")
    n_groups = len(used[0])
    names = [s.name for s in cb.run.series()]
    assert names == ([f"lr-AdamW/pg{j + 1}" for j in range(n_groups)] if n_groups > 1 else ["lr-AdamW"])
    for j, name in enumerate(names):
        tag = f"train/{name}"  # transformers' TensorBoard integration prefixes every training metric
        # the Trainer's convention: update k's LR at global step k + 1, where it logs learning_rate
        assert [s for s, _ in logged[tag]] == list(range(1, steps + 1)), tag
        assert all(close(v, used[s - 1][j]) for s, v in logged[tag]), tag
    own = dict(logged["train/learning_rate"])
    assert all(close(own[s], v) for s, v in logged[f"train/{names[0]}"])  # agrees with the Trainer's own log
    assert not any("lr-AdamW" in str(e) for e in trainer.state.log_history)  # not in log_history


def test_transformers_log_without_integrations_warns(tmp_path):
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                                          max_steps=2, save_strategy="no", report_to=[], use_cpu=True,
                                          disable_tqdm=True)
    cb = HFCallback(log=True, report=False)
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Pairs(), callbacks=[cb])
    with pytest.warns(RuntimeWarning, match="reports to no integration"):
        trainer.train()
    assert cb.run.steps() == 2
