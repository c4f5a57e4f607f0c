"""Literal values: LR014 invalid-lr.

Only literals written at the call (``lr=0``, ``eta_min=-1e-5``): a value read from a variable or a
config may be overwritten before use, and the runtime half sees the real value anyway.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.known import LR_SCHEDULER
from lraudit.analysis.values import OptimizerObj, SchedulerObj
from lraudit.checks.base import Report, StaticRule, describe_scheduler
from lraudit.checks.uses import SAFE_USES, binding, introspective, may_escape

FLOOR = "floor"  # a lower bound of the LR (or a factor): negative is wrong, zero is a legitimate floor
PEAK = "peak"  # an LR (or factor) the schedule reaches: zero or negative is wrong

# Scheduler arguments that are LRs or LR factors: (keyword, position counting the optimizer as 0, kind).
# Zero is fine for floors (cosine to 0, ConstantLR(factor=0) freezes, LinearLR end_factor=0 decays to 0);
# torch rejects LinearLR start_factor <= 0 and negative end_factor/ConstantLR factor at construction.
_TORCH_BOUNDS = {
    "CosineAnnealingLR": (("eta_min", 2, FLOOR),),
    "CosineAnnealingWarmRestarts": (("eta_min", 3, FLOOR),),
    "OneCycleLR": (("max_lr", 1, PEAK),),
    "CyclicLR": (("base_lr", 1, FLOOR), ("max_lr", 2, PEAK)),
    "ReduceLROnPlateau": (("factor", 2, PEAK), ("min_lr", 7, FLOOR)),
    "LinearLR": (("start_factor", 1, PEAK), ("end_factor", 2, FLOOR)),
    "ConstantLR": (("factor", 1, FLOOR),),
    "ExponentialLR": (("gamma", 1, FLOOR),),
    "StepLR": (("gamma", 2, FLOOR),),
    "MultiStepLR": (("gamma", 2, FLOOR),),
}
_OTHER_BOUNDS = {
    "torch.optim.swa_utils.SWALR": (("swa_lr", 1, PEAK),),
}
_HF_BOUNDS = {  # keyword-only reading: the factories' positions differ between versions
    "get_cosine_with_min_lr_schedule_with_warmup": (("min_lr", None, FLOOR),),
    "get_polynomial_decay_schedule_with_warmup": (("lr_end", None, FLOOR),),
}
# Schedulers that set the LR from their own arguments and ignore the optimizer's initial one.
_ABSOLUTE = frozenset({"OneCycleLR", "CyclicLR"})


def literal_number(node: cst.BaseExpression) -> Optional[float]:
    """The value of ``0``, ``1e-3``, ``-1e-3``, ``+0.1`` (parentheses allowed); None otherwise."""
    sign = 1.0
    while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        if isinstance(node.operator, cst.Minus):
            sign = -sign
        node = node.expression
    if isinstance(node, (cst.Integer, cst.Float)):
        try:
            return sign * float(node.evaluated_value)
        except (ValueError, TypeError):  # pragma: no cover - odd literals
            return None
    return None


def argument(call: cst.Call, keyword: str, position: Optional[int]) -> Optional[cst.Arg]:
    """The argument given for a parameter, by keyword or position (None after ``*args``)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg
    if position is None:
        return None
    index = 0
    for arg in call.args:
        if arg.keyword is not None:
            continue
        if arg.star:
            return None
        if index == position:
            return arg
        index += 1
    return None


def _numbers(node: cst.BaseExpression) -> List[Tuple[cst.CSTNode, float]]:
    """A literal number, or each literal number of a literal list/tuple (per-group values)."""
    value = literal_number(node)
    if value is not None:
        return [(node, value)]
    if isinstance(node, (cst.List, cst.Tuple)):
        return [(e.value, v) for e in node.elements for v in [literal_number(e.value)] if v is not None]
    return []


class InvalidLr(StaticRule):
    """LR014: a literal zero or negative LR given to an optimizer, or an invalid scheduler bound."""

    code = "LR014"

    def check(self, model: Model) -> Iterable[Report]:
        seen = set()
        for event in model.events:
            if event.kind != "construct" or id(event.node) in seen or not isinstance(event.call, cst.Call):
                continue
            seen.add(id(event.node))
            if isinstance(event.target, OptimizerObj):
                yield from self._optimizer(model, event.target, event.call)
            elif isinstance(event.target, SchedulerObj):
                yield from self._scheduler(model, event.target, event.call)

    # -------------------------------------------------------------------------------- optimizers
    def _optimizer(self, model: Model, optimizer: OptimizerObj, call: cst.Call) -> Iterable[Report]:
        torch_class = optimizer.qualname.startswith("torch.optim.")
        lr = argument(call, "lr", 1 if torch_class else None)
        groups = self._literal_groups(call)
        if lr is not None:
            value = literal_number(lr.value)
            if value is not None and value < 0:
                yield self.report(lr, f"negative learning rate `{model.text(lr.value)}`: torch optimizers reject it "
                                      "(ValueError) and any other would ascend the loss; use a positive LR")
            elif value == 0 and not (groups and all(own for _, own in groups)) \
                    and self._zero_matters(model, optimizer, call):
                yield self.report(lr, "learning rate 0: this optimizer steps but never changes a weight; "
                                      "give it a positive LR (set a frozen group's 'lr' to 0 instead, or "
                                      "`requires_grad_(False)`)")
        for node, own in groups:
            if own is not None and own[1] < 0:
                yield self.report(own[0], f"negative learning rate `{model.text(own[0].value)}` for a param "
                                          "group: its parameters ascend the loss; use a positive LR")

    @staticmethod
    def _literal_groups(call: cst.Call):
        """For a literal list of param-group dicts: (dict, (element, value) of its literal 'lr' or
        None) per group; [] when the params are not such a literal."""
        params = argument(call, "params", 0)
        if params is None or not isinstance(params.value, (cst.List, cst.Tuple)):
            return []
        groups = []
        for element in params.value.elements:
            if not isinstance(element.value, cst.Dict):
                return []
            own = None
            for item in element.value.elements:
                if isinstance(item, cst.DictElement) and isinstance(item.key, cst.SimpleString) \
                        and item.key.evaluated_value == "lr":
                    value = literal_number(item.value)
                    own = (item, value) if value is not None else (item, 1.0)
            groups.append((element.value, own))
        return groups

    @staticmethod
    def _zero_matters(model: Model, optimizer: OptimizerObj, call: cst.Call) -> bool:
        """LR 0 is a bug only if the optimizer steps with it: not when something sets its LR later (a
        OneCycleLR/CyclicLR, a same-module scheduler subclass, a manual write, a wrapper such as the
        Annotated Transformer's NoamOpt, a framework)."""
        if not model.steps_of_optimizers([optimizer]):
            return False  # never stepped here: a placeholder (to zero grads, for a framework ...)
        if any(e.kind == "lr_write" and any(o is optimizer for o in e.target.options()) for e in model.events):
            return False
        for scheduler in model.schedulers_driving(optimizer):
            if scheduler.cls in _ABSOLUTE or scheduler.cls is None:
                return False
        if introspective(model):
            return False
        bound = binding(model, call)
        if bound is None or bound.kind != "local":
            return False
        return not may_escape(model, bound.names, bound.scope, SAFE_USES | {"step"},
                              lambda call: _harmless_argument(model, call))

    # -------------------------------------------------------------------------------- schedulers
    def _scheduler(self, model: Model, scheduler: SchedulerObj, call: cst.Call) -> Iterable[Report]:
        if scheduler.qualname.startswith(LR_SCHEDULER + "."):
            bounds = _TORCH_BOUNDS.get(scheduler.cls or "", ())
        else:
            bounds = _OTHER_BOUNDS.get(scheduler.qualname) or _HF_BOUNDS.get(scheduler.qualname.rsplit(".", 1)[-1], ())
        name = describe_scheduler(scheduler)
        for keyword, position, kind in bounds:
            arg = argument(call, keyword, position)
            if arg is None:
                continue
            for node, value in _numbers(arg.value):
                if value < 0 or (value == 0 and kind == PEAK):
                    what = "negative" if value < 0 else "zero"
                    allowed = "a positive value" if kind == PEAK else "0 or a positive value"
                    yield self.report(
                        node if node is not arg.value else arg,
                        f"{what} `{keyword}` ({model.text(node)}) for {name}: the schedule reaches a "
                        f"{what} learning rate; use {allowed}",
                    )


def _harmless_argument(model: Model, call: cst.Call) -> bool:
    """Passed where nothing rewrites its LR: a torch scheduler that multiplies the initial LR, or a
    wrapper's ``step``/``unscale_`` (``scaler.step(optimizer)``)."""
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("step", "unscale_", "zero_grad"):
        return True
    return any(s.site is call and s.cls is not None and s.cls not in _ABSOLUTE for s in model.schedulers)
