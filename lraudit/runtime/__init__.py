"""The runtime half: ``audit()`` records the LR every param group used at every optimizer step.

``audit`` and ``Audit`` import torch on first use (they live in ``lraudit.runtime.auditor``); the rest
of the package (findings, the Run and its trajectory file, reports of saved trajectories) needs no
torch. Never imports libcst.

The modules, one job each:

- recording (torch): ``auditor`` (``audit()``, :class:`Audit`'s lifecycle and wiring), with the parts
  mixed into ``Audit``: ``step_hooks`` (trackers, the optimizer step hooks), ``scheduler_tracking``
  (which schedulers drive an audited optimizer), ``scheduler_steps`` (a scheduler step begins and
  ends), ``optimizer_events`` (optimizer loads, rebuilds, GradScaler's skipped steps), ``conclusions``
  (series and findings at the end); ``patches`` (class-level wrappers of scheduler, optimizer and
  GradScaler methods), ``tracker`` (one audited optimizer), ``lane`` (the steady lane of the usual
  steps), ``schedulers`` (what torch schedulers and optimizer wrappers are), ``discovery`` (schedulers
  kept in the training code), ``distributed`` (LR016, ranks compared);
- checking (no torch): ``checker`` (per-optimizer state machine: observations in, findings out),
  ``expect`` (``expect=``, LR015), ``findings``;
- results (no torch): ``series`` (compressed trajectories), ``run`` (:class:`Run`),
  ``trajectory_file``, ``trajectory_report``, ``plot``, ``export``;
- ``runner``: ``lraudit run`` (a training script run under ``audit()``).
"""
from lraudit.runtime.findings import LRAuditInternalWarning, LRAuditNote, LRAuditWarning, RuntimeFinding
from lraudit.runtime.run import Run

__all__ = ["audit", "Audit", "Run", "RuntimeFinding", "LRAuditWarning", "LRAuditInternalWarning", "LRAuditNote"]


def __getattr__(name):
    # Lazy: importing torch takes seconds, and reading a saved trajectory does not need it.
    if name in ("audit", "Audit"):
        import importlib

        return getattr(importlib.import_module("lraudit.runtime.auditor"), name)
    raise AttributeError(f"module 'lraudit.runtime' has no attribute {name!r}")
