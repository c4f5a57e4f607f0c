"""Where a scheduler's schedule stands on a resumed run: restored from a checkpoint, repositioned by
hand, or started again. Questions of the resume rules (LR010, LR018, LR019); knows no rule.

A schedule is *positioned* when its constructor is given ``last_epoch`` (by keyword, or by position
in the signatures of ``known.LAST_EPOCH_POSITION`` or of a same-module subclass's ``__init__``),
*repositioned* when code sets ``scheduler.last_epoch = ...``, steps it with an explicit epoch
(``step(epoch)``), and *restored* by ``scheduler.load_state_dict(...)``. The answers err towards
"yes, it is handled": the rules that ask report only when the module plainly does neither.
"""
from __future__ import annotations

import re
from typing import List, Optional

import libcst as cst

from lraudit.analysis import known
from lraudit.analysis.model import Model
from lraudit.analysis.trace import Event
from lraudit.analysis.values import SchedulerObj, known_options

# Names of calls that may restore (or save) whatever they are given: ``load_checkpoint(path, model,
# optimizer, scheduler)``, ``resume(...)``, ``restore_training_state(...)``.
_RESTORING_CALL = re.compile(r"load|resume|restore|ckpt|checkpoint", re.IGNORECASE)
# Keys and names under which a scheduler's saved state is read back (``ckpt["lr_scheduler"]``).
_SCHEDULER_WORDS = re.compile(r"sched|lr_s", re.IGNORECASE)


def _literal_int(node: cst.BaseExpression) -> Optional[int]:
    sign = 1
    while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        sign = -sign if isinstance(node.operator, cst.Minus) else sign
        node = node.expression
    if isinstance(node, cst.Integer):
        try:
            return sign * int(node.evaluated_value)
        except (TypeError, ValueError):  # pragma: no cover - odd literals
            return None
    return None


def _subclass_init(model: Model, call: cst.Call) -> Optional[cst.FunctionDef]:
    """The ``__init__`` of the same-module class a construction calls (``WarmupCosine(opt, ...)``)."""
    if not isinstance(call.func, cst.Name):
        return None
    for statement in model.module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == call.func.value:
            body = statement.body.body if isinstance(statement.body, cst.IndentedBlock) else ()
            for item in body:
                if isinstance(item, cst.FunctionDef) and item.name.value == "__init__":
                    return item
    return None


def last_epoch_position(model: Model, scheduler: SchedulerObj) -> Optional[int]:
    """Position of ``last_epoch`` among the constructor's arguments (the optimizer is 0), or None."""
    if scheduler.kind.cls is not None and scheduler.qualname.startswith(known.LR_SCHEDULER + "."):
        return known.LAST_EPOCH_POSITION.get(scheduler.kind.cls)
    if scheduler.qualname in known.SCHEDULER_FACTORIES:
        return known.LAST_EPOCH_POSITION.get(scheduler.qualname.rsplit(".", 1)[-1])
    if isinstance(scheduler.site, cst.Call):
        init = _subclass_init(model, scheduler.site)
        if init is not None:
            names = [p.name.value for p in list(init.params.posonly_params) + list(init.params.params)][1:]
            if "last_epoch" in names:
                return names.index("last_epoch")
    return None


def positioned_at_construction(model: Model, scheduler: SchedulerObj) -> bool:
    """``last_epoch`` given to the constructor (keyword or position) as anything but the default -1."""
    call = scheduler.site
    if not isinstance(call, cst.Call):
        return False
    given = None
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "last_epoch":
            given = arg.value
    if given is None:
        position = last_epoch_position(model, scheduler)
        positional = []
        for arg in call.args:
            if arg.star:
                return False  # ``*args``: positions unknown
            if arg.keyword is None:
                positional.append(arg.value)
        if position is not None and position < len(positional):
            given = positional[position]
    return given is not None and _literal_int(given) != -1


def _last_epoch_assigned(model: Model) -> bool:
    """``<anything>.last_epoch = ...`` somewhere in the module (scope-blind: ``self.scheduler`` and
    ``lr_scheduler`` may be the same object under two names)."""
    return any(isinstance(model.parent(m), cst.AssignTarget) for m in model.mentions("last_epoch")
               if isinstance(m, cst.Attribute))


def _stepped_with_epoch(model: Model, scheduler: SchedulerObj) -> bool:
    if scheduler.cls == "ReduceLROnPlateau":
        return False  # its argument is the metric
    return any(s.scheduler is scheduler and isinstance(s.event.call, cst.Call) and s.event.call.args
               for s in model.scheduler_steps)


def repositioned(model: Model, scheduler: SchedulerObj) -> bool:
    """The schedule's position is set by hand: constructor ``last_epoch``, ``x.last_epoch = ...``, or
    ``step(epoch)``."""
    return (positioned_at_construction(model, scheduler) or _last_epoch_assigned(model)
            or _stepped_with_epoch(model, scheduler))


def state_loads(model: Model, scheduler: SchedulerObj) -> List[Event]:
    """``scheduler.load_state_dict(...)`` events on this scheduler (any entry point)."""
    return [e for e in model.events_of_kind("load_state")
            if any(o is scheduler for o in known_options(e.target))]


def may_be_restored(model: Model, scheduler: SchedulerObj) -> bool:
    """Its state is (or may be) loaded: ``load_state_dict`` on it, a ``load_state_dict`` of something
    we cannot name fed a scheduler-like key (``x.load_state_dict(ckpt["lr_scheduler"])``), or the
    scheduler handed to a call that may restore it (``load_checkpoint(..., scheduler)``)."""
    if state_loads(model, scheduler):
        return True
    for event in model.events_of_kind("load_state"):
        owners = known_options(event.target)
        if not any(isinstance(o, SchedulerObj) or model.is_optimizer(o) for o in owners):
            call = event.call
            if isinstance(call, cst.Call) and any(_SCHEDULER_WORDS.search(model.text(a.value)) for a in call.args):
                return True
    for event in model.events_of_kind("handoff"):
        if event.target is not scheduler or not isinstance(event.node, cst.Call):
            continue
        name = event.node.func
        text = name.attr.value if isinstance(name, cst.Attribute) else model.text(name)
        if _RESTORING_CALL.search(text):
            return True
        if event.data.get("how") == "prepared" and model.mentions("load_state"):
            return True  # ``accelerator.load_state(...)`` restores every prepared scheduler
    return False
