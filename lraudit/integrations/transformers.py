"""transformers callback: audit the LR of the optimizer a ``Trainer`` steps.

```python
from lraudit.integrations.transformers import LRAuditCallback

cb = LRAuditCallback(out="lr.json")
trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb])
trainer.train()
cb.run.lrs()  # the LR of every optimizer step, equal to log_history's learning_rate at step k
```

``on_train_begin`` receives accelerate's ``AcceleratedOptimizer``; the audit hooks the torch optimizer
behind it (the only one whose step hooks fire once per real update). The audit stops at
``on_train_end``, where the report is printed and the trajectory saved on the world-zero process.
transformers has no exception event: when ``trainer.train()`` raises, call ``callback.stop(exc)``, or
use the callback as a context manager around ``train()`` (``with cb: trainer.train()``); a later
``train()`` also closes a previous audit that never ended.

transformers is imported when the class is first used (extra ``transformers``).
"""
from __future__ import annotations

import warnings

from lraudit.integrations import AuditSession, missing_extra

__all__ = ["LRAuditCallback"]

_CLASS = None


class _LRAuditCallbackMixin:
    def __init__(self, strict: bool = False, expect=None, out=None, report: bool = True, console=None):
        super().__init__()
        self._session = AuditSession(strict=strict, expect=expect, out=out, report=report, console=console)
        self._main_process = True

    @property
    def run(self):
        """The run of the last (or current) training: ``lrs()``, ``findings``, ``series()``, ``save()``."""
        return self._session.run

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self._main_process = bool(getattr(state, "is_world_process_zero", True))
        if optimizer is None:  # never break training over the audit
            warnings.warn("lraudit: the Trainer passed no optimizer to on_train_begin; nothing is audited",
                          RuntimeWarning, stacklevel=2)
            return
        self._session.start([optimizer])

    def on_train_end(self, args, state, control, **kwargs):
        self._session.stop(None, main_process=bool(getattr(state, "is_world_process_zero", True)))

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
            "``LRAuditCallback(strict=False, expect=None, out=None)``; the audit is ``callback.run``."
        )
        _CLASS = cls
    return _CLASS


def __getattr__(name):
    if name == "LRAuditCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
