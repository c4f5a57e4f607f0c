"""The training-loop model of one module (names, events, order). Knows nothing of the rules.

How it fits together (each module has one job):

- ``imports.py``: ImportTable, local name -> qualified name, from the module's import statements.
- ``known.py``: data tables of the outside world (torch schedulers with their properties, HF
  schedule factories, optimizer constructors, GradScalers, Accelerator, torch.save).
- ``values.py``: abstract values with identity: OptimizerObj, SchedulerObj (with the optimizer it
  drives, its children/parent when composed), ScalerObj, AcceleratorObj, InstanceObj, Opaque
  (parameters of uncalled functions, unknown attributes), ParamGroups/ParamGroup, StateDict,
  Container (literal tuples/lists/dicts), Union_ of options; UNKNOWN for anything else.
- ``nodes.py``: pure helpers reading libcst nodes (suites, docstrings, constant conditions, names
  read or mentioned, literals, ``param_groups[...]`` selections), shared by interpreter and model.
- ``interpreter.py``: the Interpreter: walks the module body, then every function or method nobody
  calls (entry points), inlining same-module calls with argument binding, and calls into other
  modules of the project where their summary says it can matter (a ``Unit`` per module, names
  resolved through that module's own imports), within bounds (depth, statements per module and per
  entry point). Loops run once, both arms of a branch run (their names merged after), dead branches
  and docstrings are skipped. It records Events: ``step`` (any ``.step()``), ``scaler_step``
  (``x.step(opt)``), ``construct``, ``lr_write``, ``get_lr``, ``handoff`` (a scheduler returned,
  passed on or prepared), ``save``, ``load_state``, ``state_dict``, ``add_param_group``,
  ``train_call``. Its parts, mixed into it, one job each:

  - ``scopes.py``: what names stand for while it runs: Scope (local names, what each was computed
    from), Unit (a module whose code runs), FuncRef (a function with its closure and ``self``), Qual
    (an imported name).
  - ``statements.py``: statements in order: branches as arms, loops once, ``with``/``try``,
    assignment (names, tuples, attributes, ``["lr"]`` writes).
  - ``expressions.py``: the abstract value of an expression: names, attributes, subscripts, literals.
  - ``calls.py``: where a call leads: inlined functions and methods, ``super()``, classes
    instantiated, tables of scheduler classes, a LightningModule's ``optimizers()``.
  - ``library_calls.py``: calls into code it does not run: torch/accelerate/Lightning constructions,
    steps, state dicts, saves, hand-offs, and unknown calls (opaque results with identity).
  - ``definitions.py``: methods through base classes, ancestors of a class, and names of other
    modules of the project, read (as a Unit) only when following them could matter.
- ``summaries.py``: what one module offers its importers, read with ``ast`` (definitions, idle ones,
  constructions, what functions step/write/save/load of their parameters, scheduler subclasses,
  tables of scheduler classes); facts, never findings.
- ``project.py``: the project layer: imports resolved to the project's files (relative, ancestors
  up to the root, ``src/``, re-exports), summaries and libcst trees read on demand, once per content
  hash, within documented bounds; what was read, for the result cache.
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

# The vocabulary of DESIGN.md: a file that mentions no optimizer, scheduler or param_groups is
# skipped unparsed (and so are its syntax errors: it is not a file lraudit checks). Every rule's
# trigger passes it (an optimizer built in a loop mentions ``optim``; transformers' ``AdamW`` too).
# The second, exact gate is the ast prescan (prescan.py): of the files that pass this test, only
# those that reference a known construction through their imports are parsed by libcst. A stricter
# text test (module names only) would spare the prescan 80% of these files, but would also stop
# reporting syntax errors in training files whose optimizer comes from elsewhere: kept loose.
PREFILTER = re.compile(rb"optim|schedul|param_groups|Adam|Adafactor|LambdaLR|StepLR|OneCycleLR|CyclicLR")


def may_contain_findings(text) -> bool:
    """Cheap text test run before parsing (accepts str or bytes)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return PREFILTER.search(text) is not None
