"""Compiled optimizer steps: LR021 compiled-step-float-lr.

A function is compiled when it is decorated with ``torch.compile`` (bare or called) or passed by name
to ``torch.compile(fn)`` (``self.train_step = torch.compile(self.train_step)`` too). Its optimizer
steps (in its body or in same-module helpers it calls) are checked: a torch scheduler drives that
optimizer and the optimizer was built here with an LR that is not a tensor. An optimizer whose
construction we cannot see, or whose LR mentions a tensor, is left alone.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Set

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.trace import Event, Frame
from lraudit.analysis.values import OptimizerObj
from lraudit.checks.base import Report, StaticRule, describe_scheduler
from lraudit.checks.literals import argument

_COMPILE = frozenset({"torch.compile"})


def _is_compile(model: Model, node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Call):
        node = node.func
    return (model.imports.resolve_expr(node) or "") in _COMPILE


def compiled_functions(model: Model) -> Dict[int, cst.FunctionDef]:
    """``id(funcdef) -> funcdef`` of every function the module compiles."""
    compiled: Dict[int, cst.FunctionDef] = {}
    by_name: Dict[str, list] = {}
    wrapped: Set[str] = set()

    class _Finder(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            by_name.setdefault(node.name.value, []).append(node)
            if any(_is_compile(model, d.decorator) for d in node.decorators):
                compiled[id(node)] = node

        def visit_Call(self, node: cst.Call) -> None:
            if _is_compile(model, node.func) and node.args and node.args[0].keyword is None:
                target = node.args[0].value
                if isinstance(target, cst.Name):
                    wrapped.add(target.value)
                elif isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) \
                        and target.value.value == "self":
                    wrapped.add(target.attr.value)

    model.module.visit(_Finder())
    for name in wrapped:
        for funcdef in by_name.get(name, []):
            compiled[id(funcdef)] = funcdef
    return compiled


def _compiled_context(event: Event, compiled: Dict[int, cst.FunctionDef]) -> Optional[cst.FunctionDef]:
    if event.funcdef is not None and id(event.funcdef) in compiled:
        return event.funcdef
    for ancestor in event.ancestors():
        if isinstance(ancestor, Frame) and id(ancestor.funcdef) in compiled:
            return ancestor.funcdef
    return None


def _float_lr(model: Model, optimizer: OptimizerObj) -> bool:
    """The optimizer was built here with an LR that is not a tensor (a default LR is a float)."""
    call = optimizer.site
    if not isinstance(call, cst.Call) or not optimizer.qualname.startswith("torch.optim."):
        return False
    if any(arg.star for arg in call.args):
        return False
    lr = argument(call, "lr", 1)
    texts = [model.text(lr.value)] if lr is not None else []
    params = argument(call, "params", 0)
    if params is not None:
        texts.append(model.text(params.value))  # per-group LRs
    return not any("tensor" in text.lower() for text in texts)


class CompiledStepFloatLr(StaticRule):
    """LR021: a ``torch.compile``d function steps an optimizer whose float LR a scheduler changes."""

    code = "LR021"

    def check(self, model: Model) -> Iterable[Report]:
        compiled = compiled_functions(model)
        if not compiled:
            return
        reported: Set[int] = set()
        for step in model.optimizer_steps:
            event = step.event
            function = _compiled_context(event, compiled)
            if function is None or id(event.node) in reported:
                continue
            optimizer = step.optimizer
            if not isinstance(optimizer, OptimizerObj) or not _float_lr(model, optimizer):
                continue
            schedulers = [s for s in model.schedulers_driving(optimizer) if model.steps_of_scheduler(s)]
            if not schedulers:
                continue
            reported.add(id(event.node))
            yield self.report(
                event.node,
                f"`{function.name.value}` is compiled with `torch.compile` and steps an optimizer (line "
                f"{model.line(optimizer.site)}) whose LR is a Python float that {describe_scheduler(schedulers[0])} "
                f"(line {model.line(schedulers[0].site)}) changes: each change is a guard failure that "
                "recompiles the step (torch 2.13: once, then the LR becomes a dynamic float; at every change "
                "with `dynamic=False` or on releases that specialise floats); the LR is right, the "
                "compilation time is lost; give the LR as a tensor (`lr=torch.tensor(0.01)`)",
            )
