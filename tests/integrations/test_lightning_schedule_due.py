"""LR005 under Lightning: a scheduler Lightning steps itself is reported only when a step was due.

Lightning steps an ``interval="epoch"`` scheduler at the end of a full epoch, and one with ``frequency=N``
every N batches (or epochs): a run stopped before that (a ``max_steps`` smoke test) leaves it unstepped,
correctly. Each case runs under the callback and under a plain ``audit()`` around ``Trainer.fit`` (as
``lraudit run`` does). The LRs are checked against the test's own optimizer pre-hook record.
"""
import pytest

pl = pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402
from lightning.pytorch.utilities.model_helpers import is_overridden  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_pre_hook  # noqa: E402

from lraudit import audit  # noqa: E402
from lraudit.integrations.lightning import LRAuditCallback  # noqa: E402

BATCHES_PER_EPOCH = 8


class Smoke(pl.LightningModule):
    """One SGD group at lr=0.1 and a StepLR(step_size=1, gamma=0.5): any step it takes shows."""

    def __init__(self, interval="epoch", frequency=1, manual=False):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.interval, self.frequency = interval, frequency
        self.automatic_optimization = not manual

    def training_step(self, batch, batch_idx):
        # what Lightning's own checks see while the counting wrapper is in place
        self.hook_overridden = is_overridden("lr_scheduler_step", self)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if not self.automatic_optimization:  # manual optimization: no scheduler step here (forgotten)
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return None
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "interval": self.interval, "frequency": self.frequency}}

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(4 * BATCHES_PER_EPOCH, 4, generator=g),
                                              torch.randn(4 * BATCHES_PER_EPOCH, 1, generator=g))
        return torch.utils.data.DataLoader(data, batch_size=4)


class ForgetfulStep(Smoke):
    """Overrides Lightning's hook and never steps the scheduler it is handed."""

    def lr_scheduler_step(self, scheduler, metric):
        pass


@pytest.fixture(params=["callback", "audit"])
def how(request):
    return request.param


def fit(how, module, **limits):
    """Fit under the callback or inside ``with audit()``; returns the run, the trainer and the LRs of the
    test's own pre-hook."""
    torch.manual_seed(0)
    cb = LRAuditCallback(report=False)
    used = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    try:
        trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", devices=1,
                             callbacks=[cb] if how == "callback" else [], **limits)
        if how == "callback":
            trainer.fit(module)
            run = cb.run
        else:
            with audit() as run:
                trainer.fit(module)
    finally:
        handle.remove()
    assert "lr_scheduler_step" not in vars(module)  # the counting wrapper is gone
    return run, trainer, used


def test_epoch_scheduler_not_due_within_the_first_epoch_is_silent(how):
    module = Smoke("epoch")
    run, trainer, used = fit(how, module, max_steps=5)
    assert module.hook_overridden is False
    assert trainer.global_step == 5 < BATCHES_PER_EPOCH
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 0  # Lightning never stepped it
    assert run.findings == []
    assert run.lrs() == used == [0.1] * 5


def test_step_scheduler_with_frequency_not_reached_is_silent(how):
    run, trainer, used = fit(how, Smoke("step", frequency=10), max_steps=5)
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 0
    assert run.findings == []
    assert run.lrs() == used == [0.1] * 5


def test_epoch_scheduler_over_two_epochs_is_silent(how):
    run, trainer, used = fit(how, Smoke("epoch"), max_epochs=2)
    assert used == [0.1] * BATCHES_PER_EPOCH + [0.05] * BATCHES_PER_EPOCH
    assert run.lrs() == used
    assert run.findings == []


def test_epoch_frequency_beyond_the_run_is_silent(how):
    # frequency=3 epochs, 2 epochs trained: Lightning's first step of it was never due
    run, trainer, used = fit(how, Smoke("epoch", frequency=3), max_epochs=2)
    assert run.lrs() == used == [0.1] * (2 * BATCHES_PER_EPOCH)
    assert run.findings == []


def test_override_that_never_steps_is_still_lr005(how):
    module = ForgetfulStep("epoch")
    run, trainer, used = fit(how, module, max_epochs=2)
    assert run.lrs() == used == [0.1] * (2 * BATCHES_PER_EPOCH)
    [finding] = run.findings
    assert finding.rule == "LR005" and finding.optimizer == "lr-SGD"
    assert "StepLR" in finding.message and f"took {2 * BATCHES_PER_EPOCH} steps" in finding.message
    # the advice names the override that dropped the step, not configure_optimizers (it is there already)
    assert finding.message.endswith("asked for its step, which never ran: an lr_scheduler_step override must "
                                    "call StepLR.step().")
    assert module.hook_overridden is True
    assert module.lr_scheduler_step.__func__ is ForgetfulStep.lr_scheduler_step  # the class's, after fit


def test_manual_optimization_scheduler_never_stepped_is_lr005(how):
    # Lightning steps nothing under manual optimization: the training step forgot the scheduler.
    run, trainer, used = fit(how, Smoke("epoch", manual=True), max_epochs=1)
    assert run.lrs() == used == [0.1] * BATCHES_PER_EPOCH
    assert [f.rule for f in run.findings] == ["LR005"]
    assert "hand it to whatever steps it" in run.findings[0].message  # Lightning asked for nothing here
