"""Checkpoints: LR010 checkpoint-without-scheduler-state."""
from __future__ import annotations

from typing import Dict, Iterable, List, Set, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.trace import Event, Frame
from lraudit.analysis.values import Container, Obj, SchedulerObj, StateDict, Value
from lraudit.analysis.positions import repositioned
from lraudit.checks.base import Report, StaticRule, describe_scheduler

# Keys under which a scheduler's state (or something we cannot see) is usually stored.
_SCHEDULER_KEY_WORDS = ("sched", "lr_s", "lrs")

# ``accelerator.save_state`` saves every prepared object, schedulers included.
_SAVES_EVERYTHING = frozenset({"accelerator.save_state"})


def _contents(value: Value, depth: int = 0) -> Iterable[Tuple[object, Value]]:
    """(key, option) for everything inside the saved containers (nested ones too)."""
    for option in value.options():
        if isinstance(option, Container) and depth < 4:
            keys = option.keys if option.keys is not None else [None] * len(option.items)
            for key, item in zip(keys, option.items):
                for inner in item.options():
                    yield key, inner
                    if isinstance(inner, Container):
                        yield from _contents(inner, depth + 1)


class CheckpointWithoutSchedulerState(StaticRule):
    """LR010: a checkpoint saves an optimizer's state but not the state of the scheduler driving it."""

    code = "LR010"

    def check(self, model: Model) -> Iterable[Report]:
        seen: Set[int] = set()
        same_dict = _saves_of_one_dict(model)
        dicts_reported: Set[int] = set()
        for event in model.events:
            if event.kind != "save" or id(event.node) in seen or event.data.get("saver") in _SAVES_EVERYTHING:
                continue
            containers = [o for o in event.target.options() if isinstance(o, Container)]
            bare = [o for o in event.target.options() if isinstance(o, StateDict)]
            if containers:
                if all(id(c) in seen for c in containers) or same_dict.get(id(event.node)) in dicts_reported:
                    continue  # a dict already reported (``torch.save(ckpt, last)``, then ``best``)
                if any(c.keys is not None and None in c.keys for c in containers):
                    continue  # ``**other`` or computed keys: the scheduler may be in there
                contents = list(_contents(event.target))
            elif bare:
                # ``torch.save(opt.state_dict(), f)`` alone: silent below when the scheduler's state is
                # taken anywhere in the module (saved to a file of its own).
                contents = [(None, o) for o in bare]
            else:
                continue  # something we cannot see into
            drivers = self._unsaved_drivers(model, contents)
            if not drivers:
                continue
            seen.add(id(event.node))
            seen.update(id(c) for c in containers)
            if id(event.node) in same_dict:
                dicts_reported.add(same_dict[id(event.node)])
            scheduler = drivers[0]
            yield self.report(
                _where_built(event),
                f"this checkpoint saves the optimizer's state but not the state of "
                f"{describe_scheduler(scheduler)} (line {model.line(scheduler.site)}) that drives it: a "
                "resumed run restarts the schedule; "
                "save `scheduler.state_dict()` too (and load it on resume)",
            )

    @staticmethod
    def _unsaved_drivers(model: Model, contents: List[Tuple[object, Value]]) -> List[SchedulerObj]:
        """The schedulers driving an optimizer whose state is in ``contents`` when none of that
        optimizer's schedulers is saved with it; [] when unsure."""
        saved_optimizers: List[Obj] = []
        saved_schedulers: List[SchedulerObj] = []
        for key, value in contents:
            if isinstance(value, SchedulerObj):
                saved_schedulers.append(value)  # the scheduler object itself (pickled whole)
                continue
            owners = value.owner.options() if isinstance(value, StateDict) else ()
            if any(isinstance(o, SchedulerObj) for o in owners):
                saved_schedulers.extend(o for o in owners if isinstance(o, SchedulerObj))
                continue
            optimizers = [o for o in owners if model.is_optimizer(o)]
            if optimizers:
                saved_optimizers.extend(optimizers)
                continue
            # Something we cannot name: under a scheduler-like key, or under no key at all, it may be
            # the scheduler's state.
            if not isinstance(key, str) and isinstance(value, StateDict):
                return []
            if isinstance(key, str) and any(w in key.lower() for w in _SCHEDULER_KEY_WORDS):
                return []
        drivers: List[SchedulerObj] = []
        for optimizer in saved_optimizers:
            own = model.schedulers_driving(optimizer)
            if any(s in saved_schedulers for s in own):
                continue
            drivers.extend(s for s in own if s not in drivers)
        if not drivers or any(_position_restored(model, s) for s in drivers):
            return []
        for event in model.events:
            if event.kind == "state_dict" and any(o is s for o in event.target.options() for s in drivers):
                return []  # its state is taken somewhere in this module: saved another way
            if event.kind == "handoff" and event.data.get("how") == "passed" and event.target in drivers:
                return []  # handed to code we cannot see, which may save it
        return drivers


def _saves_of_one_dict(model: Model) -> Dict[int, int]:
    """For each save call that saves a dict, a key shared by the save calls that save the same dict
    (``torch.save(ckpt, last)``, ``torch.save(ckpt, best)``): one finding for them all. The dict is one
    object per pass through the code, so a function run twice (two callers, two entry points) makes
    two objects: save calls are grouped when one object reaches both in any pass."""
    parent: Dict[int, int] = {}

    def find(key: int) -> int:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    first_save: Dict[int, int] = {}  # id(container) -> id of the first save call that saved it
    for event in model.events_of_kind("save"):
        for option in event.target.options():
            if isinstance(option, Container):
                earlier = first_save.setdefault(id(option), id(event.node))
                parent[find(id(event.node))] = find(earlier)
    return {node: find(node) for node in list(parent)}


def _where_built(event: Event) -> cst.CSTNode:
    """The call that hands the checkpoint to a same-module save helper (``save_checkpoint({...})``),
    where the missing entry belongs; the save call itself when the dict is built next to it."""
    node: cst.CSTNode = event.node
    expression = event.call.args[0].value if event.call is not None and event.call.args else None
    for frame in (a for a in event.ancestors() if isinstance(a, Frame)):
        if not isinstance(expression, cst.Name):
            break
        params = list(frame.funcdef.params.posonly_params) + list(frame.funcdef.params.params)
        names = [p.name.value for p in params]
        if expression.value not in names:
            break
        if isinstance(frame.call.func, cst.Attribute) and names and names[0] == "self":
            names = names[1:]
        argument = next((a.value for a in frame.call.args
                         if a.keyword is not None and a.keyword.value == expression.value), None)
        if argument is None:
            positional = [a for a in frame.call.args if a.keyword is None and not a.star]
            index = names.index(expression.value) if expression.value in names else len(positional)
            argument = positional[index].value if index < len(positional) else None
        if argument is None:
            break
        node, expression = frame.call, argument
    return node


def _position_restored(model: Model, scheduler: SchedulerObj) -> bool:
    """The schedule's position is restored by hand from the saved epoch (YOLO style:
    ``scheduler.last_epoch = start_epoch - 1``, ``LambdaLR(..., last_epoch=start_epoch - 1)`` or the
    same by position, ``step(epoch)``): its state needs no saving."""
    return repositioned(model, scheduler)
