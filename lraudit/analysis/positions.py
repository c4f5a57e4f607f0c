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
from typing import Dict, List, Optional

import libcst as cst

from lraudit.analysis import known
from lraudit.analysis.model import Model
from lraudit.analysis.trace import Event, arms_not_shared, exclusive
from lraudit.analysis.values import SchedulerObj, Value, known_options, only

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


def last_epoch_assignments(model: Model) -> List[cst.CSTNode]:
    """The statements ``<anything>.last_epoch = ...`` of the module and of the modules of the project
    the trace entered (scope-blind: ``self.scheduler`` and ``lr_scheduler`` may be one object under
    two names)."""
    found = []
    for mention in model.mentions("last_epoch"):
        if isinstance(mention, cst.Attribute):
            target = model.parent(mention)
            if isinstance(target, cst.AssignTarget):
                found.append(model.parent(target))
    return found


def _stepped_with_epoch(model: Model, scheduler: SchedulerObj) -> bool:
    if scheduler.cls == "ReduceLROnPlateau":
        return False  # its argument is the metric
    return any(s.scheduler is scheduler and isinstance(s.event.call, cst.Call) and s.event.call.args
               for s in model.scheduler_steps)


def repositioned(model: Model, scheduler: SchedulerObj) -> bool:
    """The schedule's position is set by hand somewhere in the module: constructor ``last_epoch``,
    ``x.last_epoch = ...``, or ``step(epoch)``."""
    return (positioned_at_construction(model, scheduler) or bool(last_epoch_assignments(model))
            or _stepped_with_epoch(model, scheduler))


def _runs_between(step: Event, first: Optional[Event], second: Event) -> bool:
    """``step`` runs after ``first`` (anywhere before, when None) and before ``second`` whenever
    ``second`` runs: same entry point, in order, and every branch arm guarding ``step`` guards
    ``second`` too (loops run at least once)."""
    if step.root is not second.root or step.order >= second.order or exclusive(step, second):
        return False
    if first is not None and (step.order <= first.order or exclusive(first, step)):
        return False
    return not arms_not_shared(step, second)


def stepped_before(model: Model, scheduler: SchedulerObj, event: Event) -> bool:
    """A step of ``scheduler`` certainly runs before ``event`` in its entry point: there the schedule
    is under way (a reload in the training loop, after a NaN), not started afresh."""
    return any(_runs_between(step, None, event) for step in model.steps_of_scheduler(scheduler, event.root))


def _lineage(scheduler: SchedulerObj) -> List[SchedulerObj]:
    """The scheduler and the SequentialLR/ChainedScheduler composing it, outwards."""
    found = [scheduler]
    while found[-1].parent is not None and len(found) < 8:
        found.append(found[-1].parent)
    return found


def _may_be(value: Value, scheduler: SchedulerObj) -> bool:
    """``value`` may be ``scheduler`` (or a scheduler composing it, or composed by it): unless every
    option of it is another scheduler the trace knows."""
    schedulers = only(value, SchedulerObj)
    mine = _lineage(scheduler)
    return not schedulers or any(s in mine or scheduler in _lineage(s) for s in schedulers)


def _never_called(model: Model, node: cst.CSTNode) -> bool:
    """``node`` sits in a module-level function that nothing the analysis read refers to by name (the
    checked module and the modules the trace entered): no call in this flow can reach it."""
    current = model.parent(node)
    function = None
    while current is not None:
        if isinstance(current, cst.FunctionDef):
            function = current
        current = model.parent(current)
        if isinstance(current, cst.Module):
            break
    if function is None or not isinstance(model.parent(function), cst.Module):
        return False  # module-level code, a method (a hook, called by a framework), a nested function
    return not model.mentions(function.name.value)


def repositioned_for_load(model: Model, scheduler: SchedulerObj, load: Event) -> bool:
    """The schedule's position is (or may be) set by hand for the resume that ``load`` (an
    ``optimizer.load_state_dict``) belongs to: ``last_epoch`` given to its constructor, ``step(epoch)``,
    or an assignment ``x.last_epoch = ...`` that may run between the load and the scheduler's first
    step after it (before the load too, with no step in between).

    An assignment counts unless the analysis shows it cannot apply:
    - every value it may set is another scheduler the trace knows;
    - it runs in the load's entry point only in a branch arm exclusive with the load's, or only once
      a step of the scheduler has run in between (a restart after an out-of-memory error, a warm
      restart in the training loop);
    - the load's entry point steps the scheduler after the load (the resume runs on to its first step
      there), and the assignment is in a module-level function nothing refers to.
    Anything else (a method run from another entry point or never, a hook, code past a budget) counts:
    the analysis cannot tell whether it runs before that first step."""
    if positioned_at_construction(model, scheduler) or _stepped_with_epoch(model, scheduler):
        return True
    assignments = last_epoch_assignments(model)
    if not assignments:
        return False
    instances: Dict[int, List[Event]] = {}
    for event in model.events_of_kind("reposition"):
        instances.setdefault(id(event.node), []).append(event)
    steps = model.steps_of_scheduler(scheduler, load.root)
    continues_here = any(step.order > load.order and not exclusive(load, step) for step in steps)
    for assignment in assignments:
        found = instances.get(id(assignment))
        if not found:
            if continues_here and _never_called(model, assignment):
                continue
            return True
        for event in found:
            if not _may_be(event.target, scheduler):
                continue
            if event.root is not load.root:
                if continues_here and _never_called(model, assignment):
                    continue
                return True
            if exclusive(load, event):
                continue
            model.spend(len(steps) + 1, "LR019 repositionings")
            first, second = (load, event) if load.order < event.order else (event, load)
            if not any(_runs_between(step, first, second) for step in steps):
                return True
    return False


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
