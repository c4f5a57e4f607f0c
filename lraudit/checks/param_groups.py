"""Param groups that appear after the scheduler: LR017 param-groups-after-scheduler.

Measured on torch 2.13 (``known.RAISE_AFTER_ADD_PARAM_GROUP``): after ``optimizer.add_param_group``
the next ``step()`` of LambdaLR (and the transformers factories), MultiplicativeLR, CyclicLR,
OneCycleLR, CosineAnnealingWarmRestarts and SequentialLR raises; CosineAnnealingLR raises once its
position passes ``T_max``; LinearLR and ConstantLR end their warm-up with the new group at the wrong
LR (they multiply it by the ratio they undo). StepLR, MultiStepLR, ExponentialLR, PolynomialLR,
ReduceLROnPlateau and ChainedScheduler of those decay the new group from its own LR, which is what
unfreezing intends: silent.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Set

from lraudit.analysis import Model
from lraudit.analysis import known
from lraudit.analysis.trace import Event, Loop, exclusive
from lraudit.analysis.values import SchedulerObj, known_options
from lraudit.checks.base import Report, StaticRule, describe_scheduler
from lraudit.checks.epoch_argument import is_torch_scheduler

_LATER_RAISE = {"CosineAnnealingLR": "raises (ValueError) once its position passes `T_max`"}
_WRONG_LR = {"LinearLR", "ConstantLR"}


def consequence(scheduler: SchedulerObj) -> Optional[str]:
    """What torch does at the next steps of this scheduler after ``add_param_group``; None when it
    schedules the new group as intended (or when we cannot tell)."""
    if not is_torch_scheduler(scheduler):
        return None
    cls = scheduler.kind.cls
    if cls in known.RAISE_AFTER_ADD_PARAM_GROUP:
        error = "KeyError: 'initial_lr'" if cls == "OneCycleLR" else "ValueError: zip() argument 2 is shorter than argument 1"
        return (f"on torch >= 2.10 its next `step()` raises `{error}`; older versions leave the new group "
                "unscheduled")
    if cls in _LATER_RAISE:
        return f"on torch >= 2.10 it {_LATER_RAISE[cls]}"
    if cls in _WRONG_LR:
        return ("it ends its warm-up by multiplying every group, the new one included, by the factor it "
                "never applied to it: the new group ends at the wrong LR")
    return None


def _common_loop(a: Event, b: Event) -> Optional[Loop]:
    mine = {id(x) for x in a.ancestors() if isinstance(x, Loop)}
    return next((x for x in b.ancestors() if isinstance(x, Loop) and id(x) in mine), None)


def _runs_after(first: Event, later: Event) -> bool:
    """``later`` can run after ``first`` in one pass: later in order, or in a loop holding both (the
    next iteration)."""
    if first.root is not later.root or exclusive(first, later):
        return False
    return later.order > first.order or _common_loop(first, later) is not None


def _built_before(model: Model, scheduler: SchedulerObj, added: Event) -> bool:
    constructions = model.constructions(scheduler)
    same_root = [c for c in constructions if c.root is added.root]
    if same_root:
        return any(c.order < added.order and not exclusive(c, added) for c in same_root)
    # Built in another entry point (``__init__``, a setup method) while the group is added in a
    # training loop: the scheduler exists by then.
    return bool(constructions) and any(isinstance(a, Loop) for a in added.ancestors())


def _rebuilt_between(model: Model, optimizers: List[object], added: Event, step: Event) -> bool:
    """A scheduler built on the optimizer after the new group and before the step (a rebuild)."""
    for optimizer in optimizers:
        for scheduler in model.schedulers_driving(optimizer):
            for construction in model.constructions(scheduler):
                if construction.root is added.root and added.order < construction.order and \
                        not exclusive(construction, added) and (construction.order < step.order
                                                                or _common_loop(construction, step)):
                    return True
    return False


class ParamGroupsAfterScheduler(StaticRule):
    """LR017: ``add_param_group`` after a torch scheduler was built on the optimizer, stepped later."""

    code = "LR017"

    def check(self, model: Model) -> Iterable[Report]:
        reported: Set[int] = set()
        for added in model.events_of_kind("add_param_group"):
            if id(added.node) in reported:
                continue
            optimizers = [o for o in known_options(added.target) if model.is_optimizer(o)]
            for optimizer in optimizers:
                for scheduler in model.schedulers_driving(optimizer):
                    if scheduler.parent is not None:
                        continue  # composed: its parent is what steps (and is checked itself)
                    what = consequence(scheduler)
                    if what is None or not _built_before(model, scheduler, added):
                        continue
                    later = [s for s in model.steps_of_scheduler(scheduler, added.root) if _runs_after(added, s)]
                    later = [s for s in later if not _rebuilt_between(model, optimizers, added, s)]
                    if not later:
                        continue
                    reported.add(id(added.node))
                    yield self.report(
                        added.node,
                        f"a param group is added after {describe_scheduler(scheduler)} (line "
                        f"{model.line(scheduler.site)}) was built on this optimizer and before it steps "
                        f"again (line {model.line(later[0].node)}): the scheduler only knows the groups it "
                        f"was built with; {what}; create every group up front (frozen with lr 0) or "
                        "rebuild the scheduler",
                    )
                    break
                if id(added.node) in reported:
                    break
