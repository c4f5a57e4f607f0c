"""Momentum and betas: LR022 invalid-momentum, for literals written at the call.

Measured on torch 2.13: SGD rejects a negative momentum and every Adam-family optimizer rejects betas
outside [0, 1) at construction (ValueError); SGD and RMSprop take ``momentum >= 1`` silently, and
OneCycleLR/CyclicLR take any ``base_momentum``/``max_momentum`` and write it into the optimizer as
they cycle. A momentum (or beta1) of 1 or more never forgets a gradient: the velocity grows without
bound.
"""
from __future__ import annotations

from typing import Iterable, Set

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis import known
from lraudit.analysis.values import OptimizerObj, SchedulerObj
from lraudit.checks.base import Report, StaticRule, describe_scheduler
from lraudit.checks.literals import argument, literal_elements, literal_number

# Positions (the optimizer, or the params, is 0) in torch 2.13's signatures; others by keyword only.
_OPTIMIZER_MOMENTUM_POSITION = {"torch.optim.SGD": 2}
_SCHEDULER_MOMENTA = {
    "OneCycleLR": (("base_momentum", 8), ("max_momentum", 9)),
    "CyclicLR": (("base_momentum", 10), ("max_momentum", 11)),
}
# torch optimizers whose constructor validates ``betas`` (torch 2.13).
_CHECKS_BETAS = frozenset({"Adam", "AdamW", "RAdam", "NAdam", "Adamax", "SparseAdam"})
_TORCH_REJECTS = "torch rejects it at construction (ValueError)"
_TORCH_TAKES = "torch takes it silently and the weights diverge"


def _outside(value: float) -> bool:
    return value < 0 or value >= 1


class InvalidMomentum(StaticRule):
    """LR022: a literal momentum or beta outside [0, 1)."""

    code = "LR022"

    def check(self, model: Model) -> Iterable[Report]:
        seen: Set[int] = set()
        for event in model.events_of_kind("construct"):
            if id(event.node) in seen or not isinstance(event.call, cst.Call):
                continue
            seen.add(id(event.node))
            if isinstance(event.target, OptimizerObj):
                yield from self._optimizer(model, event.target, event.call)
            elif isinstance(event.target, SchedulerObj):
                yield from self._scheduler(model, event.target, event.call)

    def _optimizer(self, model: Model, optimizer: OptimizerObj, call: cst.Call) -> Iterable[Report]:
        name = optimizer.qualname.rsplit(".", 1)[-1]
        momentum = argument(call, "momentum", _OPTIMIZER_MOMENTUM_POSITION.get(optimizer.qualname))
        if momentum is not None:
            yield from self._momentum(model, momentum.value, name)
        betas = argument(call, "betas", None)
        if betas is not None:
            yield from self._betas(model, betas.value, name)
        params = argument(call, "params", 0)
        if params is not None and isinstance(params.value, (cst.List, cst.Tuple)):
            for element in params.value.elements:  # per-group values in literal group dicts
                if not isinstance(element.value, cst.Dict):
                    continue
                for item in element.value.elements:
                    if not isinstance(item, cst.DictElement) or not isinstance(item.key, cst.SimpleString):
                        continue
                    key = item.key.evaluated_value
                    if key == "momentum":
                        yield from self._momentum(model, item.value, name, in_group=True)
                    elif key == "betas":
                        yield from self._betas(model, item.value, name, in_group=True)

    def _momentum(self, model: Model, node: cst.BaseExpression, name: str,
                  in_group: bool = False) -> Iterable[Report]:
        # torch validates the optimizer-wide values only, never those of a param group's dict.
        value = literal_number(node)
        if value is None or not _outside(value):
            return
        if value >= 1:
            consequence = _TORCH_TAKES
        elif name == "SGD" and not in_group:
            consequence = _TORCH_REJECTS
        else:
            consequence = "torch takes it silently and each update runs against its own history"
        yield self.report(node, f"momentum `{model.text(node)}` for {name} is outside [0, 1): {consequence}; "
                                "use a value in [0, 1) (0.9 is usual)")

    def _betas(self, model: Model, node: cst.BaseExpression, name: str,
               in_group: bool = False) -> Iterable[Report]:
        checked = not in_group and name in _CHECKS_BETAS
        for index, (element, value) in enumerate(literal_elements(node)):
            if _outside(value):
                consequence = _TORCH_REJECTS if checked else "a beta of 1 or more never forgets a gradient"
                yield self.report(element, f"beta{index + 1} `{model.text(element)}` for {name} is outside "
                                           f"[0, 1): {consequence}; use a value in [0, 1)")

    def _scheduler(self, model: Model, scheduler: SchedulerObj, call: cst.Call) -> Iterable[Report]:
        if not scheduler.qualname.startswith(known.LR_SCHEDULER + "."):
            return
        for keyword, position in _SCHEDULER_MOMENTA.get(scheduler.cls or "", ()):
            arg = argument(call, keyword, position)
            value = literal_number(arg.value) if arg is not None else None
            if value is not None and _outside(value):
                yield self.report(
                    arg,
                    f"`{keyword}={model.text(arg.value)}` for {describe_scheduler(scheduler)} is outside [0, 1): "
                    "torch takes it and writes it into the optimizer's momentum (or Adam's beta1) as it "
                    "cycles, where the weights diverge; use a value in [0, 1)",
                )

