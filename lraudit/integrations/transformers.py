"""transformers callback: audit the LR of the optimizer a ``Trainer`` steps.

```python
from lraudit.integrations.transformers import LRAuditCallback

cb = LRAuditCallback(out="lr.json")
trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb])
trainer.train()
cb.run.lrs()  # the LR of every optimizer step, equal to log_history's learning_rate at step k
```

``on_train_begin`` receives accelerate's ``AcceleratedOptimizer`` and the scheduler (already restored
with ``resume_from_checkpoint``); the audit hooks the torch optimizer behind it (the only one whose step
hooks fire once per real update) and attaches the scheduler from the start. ``strict`` (False, True or
``"immediate"``), ``expect`` and ``on_finding`` are those of ``audit()``: ``callback.run.findings`` grows
during training. The audit stops at
``on_train_end``, where the report is printed and the trajectory saved on the world-zero process.
transformers has no exception event: when ``trainer.train()`` raises, call ``callback.stop(exc)``, or
use the callback as a context manager around ``train()`` (``with cb: trainer.train()``); a later
``train()`` also closes a previous audit that never ended.

With ``log=True`` the recorded values also go to the Trainer's ``report_to`` integrations
(TensorBoard, W&B, MLflow...) after every optimizer step, under LearningRateMonitor's names
(``lr-AdamW/pg1``, ``lr-AdamW/pg2``; the integrations add their own prefix, ``train/``) at the
trainer's step convention: the LR update k used is logged at global step k + 1, where the Trainer logs
its own ``learning_rate``. Only those integrations see them: not the console, not ``log_history``.

transformers is imported when the class is first used (extra ``transformers``).
"""
from __future__ import annotations

import sys
import warnings

from lraudit.integrations import AuditSession, missing_extra
from lraudit.integrations.series_log import SeriesLog

__all__ = ["LRAuditCallback"]

_CLASS = None


def _calling_trainer(depth: int = 40):
    """The ``transformers.Trainer`` whose training loop called this event (TrainerCallback events do
    not receive it): the first frame up the stack whose ``self`` is one."""
    from transformers import Trainer

    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None


def _reporting_callbacks(trainer, args) -> list:
    """The callbacks of the Trainer's ``report_to`` integrations (TensorBoardCallback, WandbCallback...)."""
    from transformers.integrations import get_reporting_integration_callbacks

    report_to = getattr(args, "report_to", None) or []
    classes = tuple(get_reporting_integration_callbacks(report_to if isinstance(report_to, list) else [report_to]))
    handler = getattr(trainer, "callback_handler", None)
    if not classes or handler is None:
        return []
    return [cb for cb in handler.callbacks if isinstance(cb, classes)]


class _LRAuditCallbackMixin:
    def __init__(self, strict=False, expect=None, out=None, report: bool = True, console=None,
                 log: bool = False, on_finding=None):
        super().__init__()
        self._session = AuditSession(strict=strict, expect=expect, out=out, report=report, console=console,
                                     on_finding=on_finding)
        self._main_process = True
        self._log_wanted = log
        self._log = None
        self._targets: list = []

    @property
    def run(self):
        """The run of the last (or current) training: ``lrs()``, ``findings``, ``series()``, ``save()``."""
        return self._session.run

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        self._main_process = bool(getattr(state, "is_world_process_zero", True))
        if optimizer is None:  # never break training over the audit
            warnings.warn("lraudit: the Trainer passed no optimizer to on_train_begin; nothing is audited",
                          RuntimeWarning, stacklevel=2)
            return
        self._session.start([optimizer], [lr_scheduler])
        if self._log_wanted:
            trainer = _calling_trainer()
            self._targets = _reporting_callbacks(trainer, args) if trainer is not None else []
            self._log = SeriesLog()
            if not self._targets:
                warnings.warn("lraudit: log=True but the Trainer reports to no integration (report_to); "
                              "the LRs are only in callback.run", RuntimeWarning, stacklevel=2)

    def on_step_end(self, args, state, control, **kwargs):
        if self._log is not None and self._targets:
            self._emit(args, state, control)

    def _emit(self, args, state, control):
        # Integrations log at state.global_step: for each update's values, show them that update's step
        # (values copied on an accelerator can arrive several at once).
        current = state.global_step
        try:
            for step, metrics in self._log.new(self._session.run):
                state.global_step = step + 1
                for cb in self._targets:
                    cb.on_log(args, state, control, logs=dict(metrics))
        finally:
            state.global_step = current

    def on_train_end(self, args, state, control, **kwargs):
        try:
            self._session.stop(None, main_process=bool(getattr(state, "is_world_process_zero", True)))
        finally:
            if self._log is not None and self._targets:
                self._emit(args, state, control)

    def stop(self, exc=None):
        """Stop the audit now (idempotent): after ``trainer.train()`` raised, say."""
        return self._session.stop(exc, main_process=self._main_process)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._session.stop(exc, main_process=self._main_process)
        return False


def _callback_class():
    global _CLASS
    if _CLASS is None:
        try:
            from transformers import TrainerCallback
        except ImportError as exc:
            raise missing_extra("transformers", "transformers", exc) from exc
        cls = type("LRAuditCallback", (_LRAuditCallbackMixin, TrainerCallback), {})
        cls.__module__ = __name__
        cls.__doc__ = (
            "transformers TrainerCallback auditing the Trainer's optimizer: "
            "``LRAuditCallback(strict=False, expect=None, out=None, log=False, on_finding=None)``; the audit "
            "is ``callback.run``."
        )
        _CLASS = cls
    return _CLASS


def __getattr__(name):
    if name == "LRAuditCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
