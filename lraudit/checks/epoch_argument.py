"""Deprecated scheduler API: LR007 deprecated-epoch-argument, LR008 get-lr-call.

Both concern calls on a *torch* scheduler only: another library's ``step(epoch)`` (timm) or
``get_lr()`` is its own API, and a same-module subclass of a torch scheduler defines its own
``step``/``get_lr`` (the model gives it no class: ``cls`` is None), so both stay silent there.
"""
from __future__ import annotations

from typing import Dict, Iterable, List

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis import known
from lraudit.analysis.trace import Event
from lraudit.analysis.values import SchedulerObj, only
from lraudit.catalog import INFO
from lraudit.checks.base import Fix, Report, StaticRule, receiver_text
from lraudit.checks.ordering import runs_before_first_optimizer_step

# step(metrics) is the API of ReduceLROnPlateau; step(epoch) of CosineAnnealingWarmRestarts is
# documented (fractional epochs stepped per batch).
_EPOCH_ARGUMENT_IS_API = frozenset({"ReduceLROnPlateau", "CosineAnnealingWarmRestarts"})
_NO_ARGUMENT = frozenset({"SequentialLR", "ChainedScheduler"})  # step(self): an argument is a TypeError
# No get_lr of their own: LRScheduler.get_lr raises NotImplementedError (torch 2.13).
_NO_GET_LR = _NO_ARGUMENT | {"ReduceLROnPlateau"}


def is_torch_scheduler(scheduler: SchedulerObj) -> bool:
    """A scheduler whose class is torch's (or a factory returning one); not a same-module subclass."""
    return scheduler.kind.cls is not None or scheduler.qualname in known.SCHEDULER_FACTORIES


def torch_schedulers(value) -> List[SchedulerObj]:
    """Every option of ``value`` when all are torch schedulers, else []."""
    schedulers = list(only(value, SchedulerObj))
    return schedulers if schedulers and all(is_torch_scheduler(s) for s in schedulers) else []


def _argument_given(call: cst.Call) -> bool:
    """``step(x)`` / ``step(epoch=x)``; not ``step(None)`` (the default) nor ``step(*args)``."""
    if not call.args or any(a.star for a in call.args):
        return False
    return not all(isinstance(a.value, cst.Name) and a.value.value == "None" for a in call.args)


def _in_get_lr_override(model: Model, event: Event) -> bool:
    """Written in a ``get_lr`` method of a class with a base (a scheduler subclass, as far as we can
    tell); a ``get_lr`` of a plain class or a free function is a wrapper like any other caller."""
    funcdef = event.funcdef
    if funcdef is None or funcdef.name.value != "get_lr":
        return False
    block = model.parent(funcdef)
    owner = model.parent(block) if block is not None else None
    if not isinstance(owner, cst.ClassDef):
        return False
    return any(not (isinstance(b.value, cst.Name) and b.value.value == "object") for b in owner.bases if not b.keyword)


class DeprecatedEpochArgument(StaticRule):
    """LR007: ``scheduler.step(epoch)`` on a torch scheduler."""

    code = "LR007"

    def check(self, model: Model) -> Iterable[Report]:
        by_node: Dict[int, List[Event]] = {}
        schedulers: Dict[int, List[SchedulerObj]] = {}
        for step in model.scheduler_steps:
            event = step.event
            if not isinstance(event.call, cst.Call) or not _argument_given(event.call):
                continue
            options = torch_schedulers(event.target)
            # cls None: transformers' get_scheduler(name, ...) may build a ReduceLROnPlateau.
            if not options or any(s.cls is None or s.cls in _EPOCH_ARGUMENT_IS_API for s in options):
                continue
            by_node.setdefault(id(event.node), []).append(event)
            schedulers[id(event.node)] = options
        for key, events in by_node.items():
            event = events[0]
            options = schedulers[key]
            names = sorted({s.cls for s in options})
            receiver = receiver_text(model, event.call)
            shown = " ".join(model.text(event.call).split())
            shown = shown if len(shown) <= 50 else f"{receiver}.step(...)"
            fix = None
            if all(self._fix_keeps_the_schedule(model, e, options) for e in events):
                fix = Fix("drop the epoch argument", ((event.call, event.call.with_changes(
                    args=(), whitespace_before_args=cst.SimpleWhitespace(""))),))
            if set(names) <= _NO_ARGUMENT:
                message = (f"`{shown}` with an argument: {names[0]}.step() takes none and raises "
                           "TypeError here; call `step()`")
            else:
                message = (f"`{shown}`: the epoch argument is deprecated: {', '.join(names)} "
                           "switches to its closed form, which ignores changes made by other schedulers; "
                           "call `step()` once per epoch or step instead")
            yield self.report(event.node, message, fix=fix)

    @staticmethod
    def _fix_keeps_the_schedule(model: Model, event: Event, schedulers: List[SchedulerObj]) -> bool:
        """Dropping the argument keeps the schedule when the call repeats once per iteration of a loop
        and does not run before the first optimizer step: ``step(epoch)`` at the top of the epoch loop
        (old PyTorch style) is correct with its argument and would skip the first value without it,
        and ``step(start_epoch)`` outside a loop fast-forwards a resumed run."""
        if not event.loops():
            return False
        for scheduler in schedulers:
            optimizer_steps = model.steps_of_optimizers(model.optimizers_of(scheduler), event.root)
            if optimizer_steps and runs_before_first_optimizer_step(model, event, optimizer_steps):
                return False
        return True


class GetLrCall(StaticRule):
    """LR008: ``scheduler.get_lr()`` outside a ``get_lr`` override."""

    code = "LR008"

    def check(self, model: Model) -> Iterable[Report]:
        seen = set()
        for event in model.events:
            if event.kind != "get_lr" or id(event.node) in seen:
                continue
            if _in_get_lr_override(model, event):
                continue  # an override delegating to super().get_lr() or computing its own values
            if not torch_schedulers(event.target):
                continue
            call = event.call
            if not isinstance(call, cst.Call) or not isinstance(call.func, cst.Attribute):
                continue
            seen.add(id(event.node))
            fix = None
            if not call.args:
                fix = Fix("use `get_last_lr()`", ((call.func.attr, cst.Name("get_last_lr")),))
            receiver = receiver_text(model, call)
            schedulers = torch_schedulers(event.target)
            classes = {s.cls for s in schedulers}
            if classes <= known.CLOSED_FORM_GET_LR:
                # A closed form of (base LRs, position): the value is the LR in use; torch only warns.
                yield self.report(
                    event.node,
                    f"`{receiver}.get_lr()` outside a `get_lr` override: for {', '.join(sorted(classes))} it "
                    "computes the LR in use from its closed form, so the LR is right here, but torch warns "
                    "at every call; use `get_last_lr()`",
                    fix=fix, severity=INFO,
                )
            elif classes <= _NO_GET_LR:
                yield self.report(
                    event.node,
                    f"`{receiver}.get_lr()` on {', '.join(sorted(classes))}: it has no `get_lr` of its own and "
                    "raises NotImplementedError (torch 2.13); use `get_last_lr()`",
                    fix=fix,
                )
            else:
                yield self.report(
                    event.node,
                    f"`{receiver}.get_lr()` outside a `get_lr` override: it evaluates the scheduler's internal "
                    "formula for the wrong step (and warns); use `get_last_lr()` for the LR in use",
                    fix=fix,
                )
