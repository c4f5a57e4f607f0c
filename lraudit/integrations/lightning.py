"""Lightning callback: audit the LR of every optimizer a ``Trainer`` steps.

```python
from lraudit.integrations.lightning import LRAuditCallback

cb = LRAuditCallback(strict=True, out="lr.json")
trainer = Trainer(callbacks=[cb])
trainer.fit(model)
cb.run.lrs()  # the LR every optimizer step used, named like LearningRateMonitor's series
```

With ``log=True`` the recorded values also go to ``trainer.loggers`` after every batch, under
LearningRateMonitor's names (``lr-SGD``, ``lr-SGD/pg2``, ``lr-SGD/head``) with the optimizer step as
x (step k: the LR update k used, as LearningRateMonitor logs it); momentum and betas too once a
scheduler changed them (``lr-SGD-momentum``).

``strict`` (False, True or ``"immediate"``), ``expect`` and ``on_finding`` are those of ``audit()``:
``callback.run.findings`` grows while the Trainer runs, ``on_finding(finding)`` is called when each is
found, and ``strict="immediate"`` stops training with ``LRAuditError`` at the first one.

The audit starts at ``on_train_start`` on the raw torch optimizers behind ``trainer.optimizers`` (the
schedulers of ``configure_optimizers`` already exist then, restored when resuming; they are attached
from the start) and stops
at ``on_train_end`` (or ``on_exception``), where the report is printed and the trajectory saved on the
global-zero rank. Under DDP every rank records and the ranks compare at stop (LR016).

Lightning steps the schedulers of ``configure_optimizers`` itself, through the module's
``lr_scheduler_step`` hook, when their ``interval``/``frequency`` says a step is due: an
``interval="epoch"`` one only at the end of a full epoch. While the audit runs the callback counts those
hook calls (the module's ``lr_scheduler_step`` is wrapped on the instance, and restored at stop), so a
scheduler Lightning never asked to step (``max_steps`` reached within the first epoch) is not LR005,
while one it asked and that never stepped (an ``lr_scheduler_step`` override that forgets
``scheduler.step()``) still is. Under manual optimization Lightning steps nothing: those schedulers
stay the training step's job, and LR005 applies to them as to any.

Without the callback (``lraudit run``, or ``audit()`` around ``Trainer.fit``) the audit does the same
for a scheduler built inside a LightningModule's ``configure_optimizers`` while it runs
(:func:`watch_built_scheduler`): the hook is wrapped from then until the audit stops, and at the end
the trainer's ``lr_scheduler_configs`` say whether Lightning's loop steps it.

Lightning is imported when the class is first used: ``lightning.pytorch`` or ``pytorch_lightning``,
whichever is installed (both bases when both are already imported, so either ``Trainer`` accepts it).
"""
from __future__ import annotations

import functools
import sys
import weakref

from lraudit.integrations import AuditSession, missing_extra
from lraudit.integrations.series_log import SeriesLog

__all__ = ["LRAuditCallback"]

_FLAVOURS = ("lightning.pytorch", "pytorch_lightning")
_CLASS = None


def _callback_bases():
    imported = [m for m in _FLAVOURS if m in sys.modules]
    bases = []
    last = None
    for name in imported or _FLAVOURS:
        try:
            module = __import__(name, fromlist=["Callback"])
        except ImportError as exc:
            last = exc
            continue
        bases.append(module.Callback)
        if not imported:
            break  # nothing imported yet: the first flavour that imports is enough
    if not bases:
        raise missing_extra("Lightning", "lightning", last)
    return tuple(bases)


def lightning_order(trainer):
    """``trainer.optimizers`` ordered as LearningRateMonitor names them: the optimizers of the scheduler
    configs first (in config order), then the others, so that ``lr-Adam`` / ``lr-Adam-1`` match."""
    optimizers = list(trainer.optimizers)
    ordered = []
    for config in getattr(trainer, "lr_scheduler_configs", None) or []:
        opt = getattr(getattr(config, "scheduler", None), "optimizer", None)
        if opt is not None and any(opt is o for o in optimizers) and not any(opt is o for o in ordered):
            ordered.append(opt)
    return ordered + [o for o in optimizers if not any(o is x for x in ordered)]


class _SchedulerCalls:
    """The schedulers Lightning's loop asked to step during one fit: the module's ``lr_scheduler_step``
    hook, wrapped on the instance (Lightning looks it up there at each call) and restored by
    :meth:`restore`. The wrapper only counts; what the hook does is unchanged."""

    _HOOK = "lr_scheduler_step"

    def __init__(self, module):
        self.asked = set()  # ids of the schedulers the hook was called with
        self._module = module
        self._own = module.__dict__.get(self._HOOK, _MISSING)  # an instance attribute of the user's
        hook = getattr(module, self._HOOK)
        asked = self.asked

        @functools.wraps(hook)
        def lr_scheduler_step(scheduler, *args, **kwargs):
            asked.add(id(scheduler))
            return hook(scheduler, *args, **kwargs)

        self._wrapper = lr_scheduler_step
        module.__dict__[self._HOOK] = lr_scheduler_step

    def was_asked(self, scheduler) -> bool:
        return id(scheduler) in self.asked

    def remove(self) -> None:  # undone with an audit's hooks (Audit.driven_by_loop's ``undo``)
        self.restore()

    def restore(self) -> None:
        module, self._module = self._module, None
        if module is None or module.__dict__.get(self._HOOK) is not self._wrapper:
            return  # already restored, or replaced since by someone else: theirs stays
        if self._own is _MISSING:
            del module.__dict__[self._HOOK]
        else:
            module.__dict__[self._HOOK] = self._own


_MISSING = object()


def _loop_stepped_schedulers(trainer, pl_module):
    """The schedulers Lightning's loop steps itself: those of ``configure_optimizers`` under automatic
    optimization (under manual optimization the training step steps them, or nothing does)."""
    if not getattr(pl_module, "automatic_optimization", False):
        return []
    configs = getattr(trainer, "lr_scheduler_configs", None) or []
    return [c.scheduler for c in configs if getattr(c, "scheduler", None) is not None]


_MAX_FRAMES = 40  # frames looked at above a scheduler's construction for configure_optimizers
_WATCHED = weakref.WeakKeyDictionary()  # Audit -> {id(module): _SchedulerCalls} (runtime path)


def watch_built_scheduler(audit, scheduler) -> None:
    """Called by the audit for each scheduler built while it runs, once Lightning is imported: one built
    inside a LightningModule's ``configure_optimizers`` is registered with ``audit.driven_by_loop``, and
    the module's ``lr_scheduler_step`` calls are counted until the audit stops."""
    module = _configuring_module(sys._getframe(1))
    if module is None:
        return
    watched = _WATCHED.get(audit)
    if watched is None:
        watched = _WATCHED[audit] = {}
    calls = watched.get(id(module))
    undo = None
    if calls is None:
        calls = undo = watched[id(module)] = _SchedulerCalls(module)
    audit.driven_by_loop(scheduler, functools.partial(_asked_by_lightning, module, scheduler, calls), undo)


def _configuring_module(frame):
    """The LightningModule whose ``configure_optimizers`` runs in ``frame`` or above it, else None."""
    bases = tuple(getattr(sys.modules.get(m), "LightningModule", None) for m in _FLAVOURS)
    bases = tuple(b for b in bases if isinstance(b, type))
    for _ in range(_MAX_FRAMES):
        if frame is None or not bases:
            return None
        code = frame.f_code
        if code.co_name == "configure_optimizers" and code.co_argcount:
            owner = frame.f_locals.get(code.co_varnames[0])  # the method's self, whatever its name
            if isinstance(owner, bases):
                return owner
        frame = frame.f_back
    return None


def _asked_by_lightning(module, scheduler, calls):
    """At the audit's end, when Lightning's loop steps ``scheduler`` (it is in the trainer's scheduler
    configs, under automatic optimization): whether it asked to. Anything else: None (not the loop's
    after all), so that LR005 decides as for any scheduler."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None or not getattr(module, "automatic_optimization", False):
        return None
    configs = getattr(trainer, "lr_scheduler_configs", None) or []
    if not any(getattr(c, "scheduler", None) is scheduler for c in configs):
        return None
    return calls.was_asked(scheduler)


class _LRAuditCallbackMixin:
    def __init__(self, strict=False, expect=None, out=None, report: bool = True, console=None,
                 log: bool = False, on_finding=None):
        super().__init__()
        self._session = AuditSession(strict=strict, expect=expect, out=out, report=report, console=console,
                                     on_finding=on_finding)
        self._log = SeriesLog() if log else None
        self._calls = None

    @property
    def run(self):
        """The run of the last (or current) training: ``lrs()``, ``findings``, ``series()``, ``save()``."""
        return self._session.run

    def on_train_start(self, trainer, pl_module):
        if self._log is not None:
            self._log = SeriesLog()
        schedulers = [getattr(c, "scheduler", None) for c in (getattr(trainer, "lr_scheduler_configs", None) or [])]
        self._session.start(lightning_order(trainer), schedulers)
        self._watch_scheduler_calls(trainer, pl_module)

    def _watch_scheduler_calls(self, trainer, pl_module):
        self._restore_hook()
        audit = self._session.audit
        driven = _loop_stepped_schedulers(trainer, pl_module)
        if audit is None or not driven:
            return
        try:
            self._calls = _SchedulerCalls(pl_module)
        except Exception:  # an unusual module: LR005 then decides as without Lightning
            return
        for sched in driven:
            audit.driven_by_loop(sched, functools.partial(self._calls.was_asked, sched))

    def _restore_hook(self):
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.restore()

    def _stop(self, trainer, exc=None):
        try:
            self._session.stop(exc, main_process=_is_global_zero(trainer))
        finally:
            self._restore_hook()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._log is not None:
            self._emit(trainer)

    def _emit(self, trainer):
        # Values copied on an accelerator arrive in chunks: each still goes out at its own step.
        for step, metrics in self._log.new(self._session.run):
            for logger in getattr(trainer, "loggers", None) or []:
                logger.log_metrics(metrics, step=step)

    def on_train_end(self, trainer, pl_module):
        try:
            self._stop(trainer)
        finally:
            if self._log is not None:
                self._emit(trainer)  # what the last batches left (and values replayed at stop)

    def on_exception(self, trainer, pl_module, exception):
        self._stop(trainer, exception)

    def teardown(self, trainer, pl_module, stage):
        if self._session.active:  # fit ended without on_train_end (interrupted, or sanity-check failure)
            self._stop(trainer)
        self._restore_hook()


def _is_global_zero(trainer) -> bool:
    return bool(getattr(trainer, "is_global_zero", True))


def _callback_class():
    global _CLASS
    if _CLASS is None:
        cls = type("LRAuditCallback", (_LRAuditCallbackMixin,) + _callback_bases(), {})
        cls.__module__ = __name__
        cls.__doc__ = (
            "Lightning callback auditing the LR of ``trainer.optimizers``: "
            "``LRAuditCallback(strict=False, expect=None, out=None, log=False, on_finding=None)``; the audit "
            "is ``callback.run``."
        )
        _CLASS = cls
    return _CLASS


def __getattr__(name):
    if name == "LRAuditCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
