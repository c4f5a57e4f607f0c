"""The runtime half: ``audit()`` records the LR every param group used at every optimizer step.

``audit`` and ``Audit`` import torch on first use (they live in ``lraudit.runtime.auditor``); the rest
of the package (findings, the Run and its trajectory file, reports of saved trajectories) needs no
torch. Never imports libcst.
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
