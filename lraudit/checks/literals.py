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


def literal_elements(node: cst.BaseExpression) -> List[Tuple[cst.CSTNode, float]]:
    """Each literal number of a literal list/tuple (per-group values, Adam's betas), with its node."""
    if isinstance(node, (cst.List, cst.Tuple)):
        return [(e.value, v) for e in node.elements for v in [literal_number(e.value)] if v is not None]
    return []


def _numbers(node: cst.BaseExpression) -> List[Tuple[cst.CSTNode, float]]:
    """A literal number, or each literal number of a literal list/tuple (per-group values)."""
    value = literal_number(node)
    if value is not None:
        return [(node, value)]
    return literal_elements(node)


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
                    and not self._groups_set_their_lr(model, call) \
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
    def _groups_set_their_lr(model: Model, call: cst.Call) -> bool:
        """The optimizer's params are param-group dicts of which some set their own ``lr`` (so the
        optimizer's default LR is not what they train with), or groups we cannot see: a literal list
        of ``{...}`` / ``dict(...)`` entries, or a list variable filled by ``append``/``extend``/``+=``
        (``groups.append(dict(params=backbone, lr=lr * 0.1))``) or a comprehension."""
        params = argument(call, "params", 0)
        if params is None:
            return False
        elements = param_list_elements(model, params.value, call)
        if elements is None:
            return False
        if elements is UNSEEN:
            return True  # built in ways we cannot see: the groups may set their LR
        for element in elements:
            has_lr = group_has_key(element, "lr")
            if has_lr is None or has_lr:
                return True  # not a group literal (unknown), or a group with its own LR
        return False

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


def group_has_key(node: cst.BaseExpression, key: str) -> Optional[bool]:
    """Whether a param-group literal (``{"params": p, "lr": x}`` or ``dict(params=p, lr=x)``) sets
    ``key``; None when ``node`` is not such a literal (or has parts we cannot see: ``**extra``)."""
    if isinstance(node, cst.Dict):
        keys = []
        for item in node.elements:
            if not isinstance(item, cst.DictElement) or not isinstance(item.key, cst.SimpleString):
                return None
            keys.append(item.key.evaluated_value)
        return key in keys
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "dict":
        if any(arg.keyword is None for arg in node.args):
            return None  # ``dict(base, lr=...)``, ``dict(**extra)``
        return any(arg.keyword.value == key for arg in node.args)
    return None


class _Unseen:
    """A list of param groups with entries we cannot all see."""


UNSEEN = _Unseen()


def param_list_elements(model: Model, node: cst.BaseExpression, call: cst.Call, depth: int = 0):
    """The param-group entries given to an optimizer: the elements of a literal list, or of a list
    variable of the same function (its literal value, ``append``/``insert`` arguments, ``extend`` and
    ``+=`` of literal lists; a comprehension's element). None when ``node`` is not a list of groups
    at all (``model.parameters()``); ``UNSEEN`` when it is a list whose entries we cannot all see."""
    if isinstance(node, (cst.List, cst.Tuple)):
        return [e.value for e in node.elements] if all(isinstance(e, cst.Element) for e in node.elements) else UNSEEN
    if isinstance(node, (cst.ListComp, cst.GeneratorExp)):
        return [node.elt]
    if not isinstance(node, cst.Name):
        return None
    if depth > 3:
        return UNSEEN
    function = model.enclosing(call, cst.FunctionDef)
    found: List[cst.BaseExpression] = []
    for mention in model.mentions(node.value):
        if model.enclosing(mention, cst.FunctionDef) is not function:
            continue
        parent = model.parent(mention)
        if isinstance(parent, cst.AssignTarget):
            value = model.parent(parent).value
            if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) \
                    and value.func.attr.value in ("parameters", "named_parameters"):
                return None  # ``params = model.parameters()``: one group, the optimizer's LR
            more = param_list_elements(model, value, call, depth + 1)
        elif isinstance(parent, cst.AugAssign) and parent.target is mention:
            more = param_list_elements(model, parent.value, call, depth + 1)
        elif isinstance(parent, cst.Attribute) and parent.value is mention:
            grand = model.parent(parent)
            if not (isinstance(grand, cst.Call) and grand.func is parent):
                continue
            args = [a.value for a in grand.args if a.keyword is None]
            method = parent.attr.value
            if method == "append" and len(args) == 1:
                more = [args[0]]
            elif method == "insert" and len(args) == 2:
                more = [args[1]]
            elif method == "extend" and len(args) == 1:
                more = param_list_elements(model, args[0], call, depth + 1)
            else:
                continue
        else:
            continue
        if more is None or more is UNSEEN:
            return UNSEEN  # an entry we cannot see
        found.extend(more)
    # A name never filled in this function (a parameter, a global): its entries are unknown.
    return found if found else UNSEEN



def _harmless_argument(model: Model, call: cst.Call) -> bool:
    """Passed where nothing rewrites its LR: a torch scheduler that multiplies the initial LR, or a
    wrapper's ``step``/``unscale_`` (``scaler.step(optimizer)``)."""
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("step", "unscale_", "zero_grad"):
        return True
    return any(s.site is call and s.cls is not None and s.cls not in _ABSOLUTE for s in model.schedulers)
