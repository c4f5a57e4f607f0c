"""Resuming a run: LR018 scheduler-built-after-optimizer-load, LR019 scheduler-state-not-restored.

Both start from an ``optimizer.load_state_dict(...)`` in the module and ask where the schedulers that
drive that optimizer stand (``analysis.positions``). The load-side twin of LR010: what LR010 sees at
the save, LR019 sees at the load.
"""
from __future__ import annotations

from typing import Iterable, List, Set

from lraudit.analysis import Model
from lraudit.analysis import known
from lraudit.analysis.positions import (
    last_epoch_assignments,
    may_be_restored,
    positioned_at_construction,
    repositioned_for_load,
    state_loads,
    stepped_before,
)
from lraudit.analysis.trace import Event, exclusive
from lraudit.analysis.values import SchedulerObj, known_options
from lraudit.checks.base import Report, StaticRule, describe_scheduler
from lraudit.checks.epoch_argument import is_torch_scheduler


def optimizer_loads(model: Model) -> List[Event]:
    """``load_state_dict`` events on an optimizer (every option of the receiver one)."""
    found = []
    for event in model.events_of_kind("load_state"):
        options = known_options(event.target)
        if options and all(model.is_optimizer(o) for o in options):
            found.append(event)
    return found


def _top(scheduler: SchedulerObj) -> SchedulerObj:
    """The scheduler that is stepped: the SequentialLR/ChainedScheduler composing this one, if any."""
    seen = 0
    while scheduler.parent is not None and seen < 8:
        scheduler, seen = scheduler.parent, seen + 1
    return scheduler


def _schedulers_of(model: Model, load: Event) -> List[SchedulerObj]:
    found: List[SchedulerObj] = []
    for optimizer in known_options(load.target):
        for scheduler in model.schedulers_driving(optimizer):
            top = _top(scheduler)
            if top not in found:
                found.append(top)
    return found


def _rewrites_at_construction(scheduler: SchedulerObj) -> bool:
    if not is_torch_scheduler(scheduler):
        return False  # a same-module subclass: its own constructor, unknown
    return scheduler.kind.cls in known.REWRITES_LR_AT_CONSTRUCTION


class SchedulerBuiltAfterOptimizerLoad(StaticRule):
    """LR018: a scheduler whose construction rewrites the LR, built after ``optimizer.load_state_dict``
    and then restored with ``load_state_dict`` (which does not write the LR back)."""

    code = "LR018"

    def check(self, model: Model) -> Iterable[Report]:
        reported: Set[int] = set()
        for load in optimizer_loads(model):
            for scheduler in _schedulers_of(model, load):
                if not _rewrites_at_construction(scheduler) or positioned_at_construction(model, scheduler):
                    continue
                restores = state_loads(model, scheduler)
                for construction in model.constructions(scheduler):
                    if id(construction.node) in reported or not _on_one_path(load, construction):
                        continue
                    if not any(_on_one_path(construction, r) for r in restores):
                        continue  # not restored afterwards: the restart is LR019's story
                    reported.add(id(construction.node))
                    name = describe_scheduler(scheduler)
                    writes = ("multiplies the restored LR by its start factor again"
                              if scheduler.kind.cls in ("LinearLR", "ConstantLR")
                              else "overwrites the restored LR with the start of its schedule")
                    yield self.report(
                        construction.node,
                        f"{name} is built after `{model.text(load.call.func.value)}.load_state_dict(...)` "
                        f"(line {model.line(load.node)}): its construction {writes}, and loading its state "
                        "afterwards does not write the LR back, so the next updates run at that LR while "
                        "`get_last_lr()` reports the restored one (measured on torch 2.13); build the "
                        "scheduler before loading the optimizer's state",
                    )


def _built_per_iteration_after(model: Model, scheduler: SchedulerObj, load: Event) -> bool:
    """Every construction of the scheduler runs after the load, inside a loop the load is not in
    (torchvision's detection warm-up, built in ``train_one_epoch`` for epoch 0)."""
    constructions = model.constructions(scheduler)
    load_loops = {id(loop) for loop in load.loops()}
    return bool(constructions) and all(
        _on_one_path(load, c) and any(id(loop) not in load_loops for loop in c.loops()) for c in constructions)


def _on_one_path(first: Event, second: Event) -> bool:
    """``first`` runs before ``second`` in one pass of one entry point."""
    return first.root is second.root and first.order < second.order and not exclusive(first, second)


class SchedulerStateNotRestored(StaticRule):
    """LR019: the optimizer's state is restored while the scheduler driving it is neither restored nor
    repositioned (for that resume: a repositioning that only runs once the scheduler has stepped again,
    or in an arm exclusive with the load's, is not one; ``positions.repositioned_for_load``)."""

    code = "LR019"

    def check(self, model: Model) -> Iterable[Report]:
        for load in optimizer_loads(model):
            for scheduler in _schedulers_of(model, load):
                if not is_torch_scheduler(scheduler) or scheduler.cls == "ReduceLROnPlateau":
                    continue  # a plateau scheduler keeps the restored LR; only its patience restarts
                if not model.steps_of_scheduler(scheduler):
                    continue  # stepped elsewhere, or never (LR005): its schedule is not ours to judge
                if _built_per_iteration_after(model, scheduler, load):
                    continue  # a warm-up built anew in the training loop: nothing to restore
                if stepped_before(model, scheduler, load):
                    continue  # a reload mid-run (after a NaN): the schedule goes on, it did not restart
                if may_be_restored(model, scheduler) or repositioned_for_load(model, scheduler, load):
                    continue
                how = ("jumps back to the start of its schedule at its next step"
                       if not scheduler.kind.chainable
                       else "decays the restored LR again on a count restarted from 0")
                elsewhere = (" (no `last_epoch` assignment here sets it between this load and its next step)"
                             if last_epoch_assignments(model) else "")
                yield self.report(
                    load.node,
                    f"the optimizer's state is restored here but {describe_scheduler(scheduler)} "
                    f"(line {model.line(scheduler.site)}) that drives it is neither restored nor repositioned"
                    f"{elsewhere}: the schedule restarts on every resume (it {how}); load its state too "
                    "(`scheduler.load_state_dict(...)`) or give it `last_epoch`",
                )
                break
