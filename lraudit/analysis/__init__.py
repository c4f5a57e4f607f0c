"""The training-loop model of one module (names, events, order). Knows nothing of the rules.

How it fits together (each module has one job):

- ``imports.py``: ImportTable, local name -> qualified name, from the module's import statements.
- ``known.py``: data tables of the outside world (torch schedulers with their properties, HF
  schedule factories, optimizer constructors, GradScalers, Accelerator, torch.save).
- ``values.py``: abstract values with identity: OptimizerObj, SchedulerObj (with the optimizer it
  drives, its children/parent when composed), ScalerObj, AcceleratorObj, InstanceObj, Opaque
  (parameters of uncalled functions, unknown attributes), ParamGroups/ParamGroup, StateDict,
  Container (literal tuples/lists/dicts), Union_ of options; UNKNOWN for anything else.
- ``interpreter.py``: walks the module body, then every function or method nobody calls (entry
  points), inlining same-module calls with argument binding. Loops run once, both arms of a branch
  run (their names merged after), dead branches and docstrings are skipped. It records Events:
  ``step`` (any ``.step()``), ``scaler_step`` (``x.step(opt)``), ``construct``, ``lr_write``,
  ``get_lr``, ``handoff`` (a scheduler returned, passed on or prepared), ``save``, ``load_state``,
  ``state_dict``.
- ``trace.py``: the trace tree of each entry point (Block, Loop, Arm, Context, Frame, Event) with
  first-iteration execution order (``Event.order``) and helpers (``exclusive``, ``arms_not_shared``,
  ``innermost_loop``).
- ``model.py``: Model, what the rules query: classified optimizer/scheduler steps, which scheduler
  drives which optimizer, conditions that change per iteration, accumulation guards, positions.
"""
from __future__ import annotations

import re

from lraudit.analysis.model import Model, build_model

__all__ = ["Model", "build_model", "may_contain_findings", "PREFILTER"]

# Every rule needs a known construction in the module (a torch scheduler, an optimizer, a scheduler
# factory), reached through an import: the text must name one of these modules or symbols. This is
# the vocabulary of known.py, loosely: measured on the torch package, the corpus of real training
# code and our fixtures, it keeps every file the ast prescan finds relevant (0 lost of 461) while
# passing 871 files of 2,330 that mention "optim" at all.
PREFILTER = re.compile(
    rb"lr_scheduler|torch\.optim|import[^\n]*\boptim\b|\boptim\.[A-Z]|get_\w*schedul|schedule_with_warmup"
    rb"|bitsandbytes|apex|AdamW|Adafactor|SWALR|create_optimizer|ZeroRedundancyOptimizer|torch_optimizer"
    rb"|deepspeed"
)


def may_contain_findings(text) -> bool:
    """Cheap text test run before parsing (accepts str or bytes)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return PREFILTER.search(text) is not None
