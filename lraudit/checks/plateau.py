"""ReduceLROnPlateau usage: LR003 plateau-step-without-metric, LR012 plateau-mode-mismatch."""
from __future__ import annotations

import re
from typing import Iterable, Optional, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.known import LR_SCHEDULER
from lraudit.analysis.values import UNKNOWN, Const, Container, Opaque, SchedulerObj, only
from lraudit.checks.base import Report, StaticRule, receiver_text

PLATEAU = "ReduceLROnPlateau"


class PlateauStepWithoutMetric(StaticRule):
    """LR003: ``ReduceLROnPlateau.step()`` with no metric."""

    code = "LR003"

    def check(self, model: Model) -> Iterable[Report]:
        fired = set()
        for step in model.scheduler_steps:
            event = step.event
            if id(event) in fired:
                continue
            schedulers = only(event.target, SchedulerObj)
            if not schedulers or any(s.cls != PLATEAU for s in schedulers):
                continue
            if event.call is not None and not event.call.args:
                fired.add(id(event))
                yield self._report(model, event)
        # ``if isinstance(x, ReduceLROnPlateau): x.step()``: the guard types what the analysis could not
        # (a framework's attribute, a parameter), or picks the plateau among several schedulers; a
        # value known to be other schedulers only is not one (the branch is dead).
        for event in model.events_of_kind("step"):
            if id(event) in fired or event.data.get("guarded") != PLATEAU or event.call is None or event.call.args:
                continue
            if any(o is UNKNOWN or isinstance(o, Opaque) or (isinstance(o, SchedulerObj) and o.cls == PLATEAU)
                   for o in event.target.options()):
                fired.add(id(event))
                yield self._report(model, event)

    def _report(self, model: Model, event) -> Report:
        return self.report(
            event.node,
            f"`{receiver_text(model, event.call)}.step()` without a metric: ReduceLROnPlateau "
            "raises TypeError at this call; pass the monitored value, e.g. `.step(val_loss)`",
        )


# ---------------------------------------------------------------------------------------------- LR012
# Name parts that say which direction is better. "score" alone is not one: Kaggle-style code calls an
# RMSE a score as readily as an accuracy.
_HIGHER_IS_BETTER = frozenset(
    """acc accs accuracy accuracies top1 top5 f1 fscore fbeta auc auroc roc map miou iou dice bleu rouge
    rougel meteor cider precision recall psnr ssim r2 kappa mcc ndcg mrr correct hitrate""".split()
)
_LOWER_IS_BETTER = frozenset(
    """loss losses error errors err mse mae rmse nll ppl perplexity wer cer cost fid lpips eer""".split()
)
# Parts that turn a name's direction around or make it unreadable (``neg_acc``, ``inv_loss``).
_DIRECTION_FLIPPERS = frozenset("neg negative minus inv inverse one_minus reciprocal delta diff drop gap".split())
_PASS_THROUGH_METHODS = frozenset({"item", "mean", "cpu", "detach", "numpy", "float", "squeeze"})
_PASS_THROUGH_FUNCTIONS = frozenset({"float", "mean", "average", "nanmean", "tensor", "as_tensor", "abs"})


def _name_parts(name: str) -> set:
    parts = set()
    for token in re.split(r"[^A-Za-z0-9]+", name):
        if not token:
            continue
        parts.add(token.lower())
        parts.update(p.lower() for p in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", token))
    return parts


def metric_direction(name: str) -> Optional[str]:
    """``"max"`` when the name says higher is better, ``"min"`` when lower is, else None."""
    parts = _name_parts(name)
    if parts & _DIRECTION_FLIPPERS:
        return None
    higher, lower = bool(parts & _HIGHER_IS_BETTER), bool(parts & _LOWER_IS_BETTER)
    if higher == lower:
        return None
    return "max" if higher else "min"


def metric_name(node: cst.BaseExpression) -> Tuple[Optional[str], bool]:
    """The name that describes a metric expression and whether the expression negates it:
    ``val_acc``, ``self.val_acc``, ``metrics["val/acc"]``, ``logs.get("val_acc")``, ``acc.item()``,
    ``float(acc)``, ``-acc``; (None, False) for anything computed."""
    negated = False
    while True:
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
            negated ^= isinstance(node.operator, cst.Minus)
            node = node.expression
        elif isinstance(node, cst.Call) and not any(a.star for a in node.args):
            func = node.func
            last = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", None)
            if isinstance(func, cst.Attribute) and last in _PASS_THROUGH_METHODS and not node.args:
                node = func.value
            elif isinstance(func, cst.Attribute) and last == "get" and node.args:
                key = node.args[0].value
                return (key.evaluated_value if isinstance(key, cst.SimpleString) else None), negated
            elif last in _PASS_THROUGH_FUNCTIONS and len(node.args) == 1:
                node = node.args[0].value
            else:
                return None, negated
        else:
            break
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Divide):
        # ``correct / total`` (times 100, or not) is an accuracy, whatever the names' digits.
        numerator = node.left
        while isinstance(numerator, cst.BinaryOperation) and isinstance(numerator.operator, cst.Multiply):
            numerator = numerator.right if isinstance(numerator.left, (cst.Integer, cst.Float)) else numerator.left
        name, _ = metric_name(numerator) if isinstance(numerator, (cst.Name, cst.Attribute)) else (None, False)
        if name and "correct" in _name_parts(name):
            return "accuracy", negated
        return None, negated
    if isinstance(node, cst.Name):
        return node.value, negated
    if isinstance(node, cst.Attribute):
        return node.attr.value, negated
    if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        key = node.slice[0].slice.value
        if isinstance(key, cst.SimpleString) and isinstance(key.evaluated_value, str):
            return key.evaluated_value, negated
    return None, negated


def plateau_mode(model: Model, scheduler: SchedulerObj) -> Optional[str]:
    """The literal ``mode`` of a ReduceLROnPlateau construction (``"min"`` when not given); None when
    it is not a literal or arguments are spread (``**config``)."""
    call = scheduler.site
    if not isinstance(call, cst.Call) or any(a.star for a in call.args):
        return None
    torch_class = scheduler.qualname.startswith(LR_SCHEDULER + ".")
    positional = [a for a in call.args if a.keyword is None]
    value = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "mode"), None)
    if value is None and torch_class and len(positional) > 1:
        value = positional[1].value
    if value is None:
        return "min"
    if isinstance(value, cst.SimpleString) and value.evaluated_value in ("min", "max"):
        return value.evaluated_value
    return None


class PlateauModeMismatch(StaticRule):
    """LR012: ReduceLROnPlateau whose ``mode`` contradicts the direction its metric's name says."""

    code = "LR012"

    def check(self, model: Model) -> Iterable[Report]:
        seen = set()
        for step in model.scheduler_steps:
            event = step.event
            if id(event) in seen or event.call is None:
                continue
            seen.add(id(event))
            schedulers = only(event.target, SchedulerObj)
            if not schedulers or any(s.cls != PLATEAU for s in schedulers):
                continue
            metric = _metric_argument(event.call)
            if metric is None:
                continue
            report = self._mismatch(model, schedulers, metric, event.node)
            if report is not None:
                yield report
        yield from self._lightning(model)

    def _mismatch(self, model: Model, schedulers, metric, node) -> Optional[Report]:
        if isinstance(metric, str):
            name, negated = metric, False
        else:
            name, negated = metric_name(metric)
        direction = metric_direction(name) if name else None
        modes = {plateau_mode(model, s) for s in schedulers}
        if direction is None or len(modes) != 1 or None in modes:
            return None
        if negated:
            direction = "min" if direction == "max" else "max"
        mode = modes.pop()
        if mode == direction:
            return None
        better = "higher" if direction == "max" else "lower"
        return self.report(
            node,
            f"ReduceLROnPlateau in mode '{mode}' (line {model.line(schedulers[0].site)}) is fed `{name}`, where "
            f"{better} is better: it cuts the LR while the metric improves; construct it with mode='{direction}'",
        )

    def _lightning(self, model: Model) -> Iterable[Report]:
        """``{"scheduler": ReduceLROnPlateau(...), "monitor": "val_acc"}`` returned to Lightning."""
        seen = set()
        for event in model.events:
            if event.kind != "handoff" or event.data.get("how") != "returned" or id(event.node) in seen:
                continue
            seen.add(id(event.node))
            for container in _dicts(event.data.get("value")):
                entries = dict(zip(container.keys, container.items))
                monitor = entries.get("monitor")
                scheduler = entries.get("scheduler")
                if not isinstance(monitor, Const) or not isinstance(monitor.value, str) or scheduler is None:
                    continue
                schedulers = only(scheduler, SchedulerObj)
                if schedulers and all(s.cls == PLATEAU for s in schedulers):
                    report = self._mismatch(model, schedulers, monitor.value, schedulers[0].site)
                    if report is not None:
                        yield report


def _metric_argument(call: cst.Call) -> Optional[cst.BaseExpression]:
    if any(a.star for a in call.args):
        return None
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "metrics":
            return arg.value
    positional = [a for a in call.args if a.keyword is None]
    return positional[0].value if positional else None


def _dicts(value, depth: int = 0):
    if value is None:
        return
    for option in value.options():
        if isinstance(option, Container) and depth < 3:
            if option.keys is not None:
                yield option
            for item in option.items:
                yield from _dicts(item, depth + 1)
