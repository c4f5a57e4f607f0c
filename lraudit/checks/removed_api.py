"""Arguments torch removed from its schedulers: LR020 removed-scheduler-argument.

The list lives in ``known.REMOVED_SCHEDULER_ARGUMENTS`` with the versions that deprecated and removed
each argument. Reported where torch receives it: the construction of a ``torch.optim.lr_scheduler``
class, and ``super().__init__(..., verbose=...)`` in a same-module subclass of one (lightly's and
transformers' own schedulers failed so on torch 2.7). Other libraries' schedulers that take
``verbose`` (timm's) are not torch's: silent.
"""
from __future__ import annotations

from typing import Iterable, Optional, Set

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis import known
from lraudit.analysis.values import SchedulerObj
from lraudit.checks.base import Fix, Report, StaticRule


def _torch_class(scheduler: SchedulerObj) -> Optional[str]:
    """The torch class a construction calls (not a same-module subclass, not a factory)."""
    if scheduler.kind.cls is not None and scheduler.qualname.startswith(known.LR_SCHEDULER + "."):
        return scheduler.kind.cls
    return None


def _is_torch_scheduler_base(model: Model, base: cst.Arg) -> bool:
    qualname = model.imports.resolve_expr(base.value) or ""
    return qualname in known.TORCH_SCHEDULER_BASES or (
        qualname.startswith(known.LR_SCHEDULER + ".") and known.scheduler_kind(qualname) is not None)


def _super_init_calls(model: Model) -> Iterable[cst.Call]:
    """``super().__init__(...)`` calls in classes whose base is a torch scheduler."""
    found = []

    class _Calls(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            func = node.func
            if (isinstance(func, cst.Attribute) and func.attr.value == "__init__"
                    and isinstance(func.value, cst.Call) and isinstance(func.value.func, cst.Name)
                    and func.value.func.value == "super"):
                found.append(node)

    for statement in model.module.body:
        if isinstance(statement, cst.ClassDef) and any(_is_torch_scheduler_base(model, b) for b in statement.bases):
            statement.visit(_Calls())
    return found


def _without(call: cst.Call, arg: cst.Arg) -> cst.Call:
    """The call with one argument dropped; the new last argument loses a comma it only had as a
    separator (a trailing comma written by the author before the dropped one is kept)."""
    args = [a for a in call.args if a is not arg]
    if args and call.args[-1] is arg:
        last = args[-1]
        args[-1] = last.with_changes(comma=arg.comma if arg.comma is not cst.MaybeSentinel.DEFAULT
                                     else cst.MaybeSentinel.DEFAULT)
    return call.with_changes(args=args)


class RemovedSchedulerArgument(StaticRule):
    """LR020: an argument torch removed (``verbose=``) given to a torch scheduler."""

    code = "LR020"

    def check(self, model: Model) -> Iterable[Report]:
        seen: Set[int] = set()
        for scheduler in model.schedulers:
            cls = _torch_class(scheduler)
            call = scheduler.site
            if cls is None or not isinstance(call, cst.Call) or id(call) in seen:
                continue
            seen.add(id(call))
            yield from self._removed(model, call, cls)
        for call in _super_init_calls(model):
            if id(call) not in seen:
                seen.add(id(call))
                yield from self._removed(model, call, "the torch scheduler this class extends")

    def _removed(self, model: Model, call: cst.Call, what: str) -> Iterable[Report]:
        for arg in call.args:
            if arg.keyword is None or arg.keyword.value not in known.REMOVED_SCHEDULER_ARGUMENTS:
                continue
            name = arg.keyword.value
            deprecated, removed = known.REMOVED_SCHEDULER_ARGUMENTS[name]
            yield self.report(
                arg,
                f"`{name}=` is no longer an argument of {what}: deprecated in torch {deprecated}, removed "
                f"in {removed} (a TypeError at construction from then on); the LR is not affected, drop "
                "the argument (print `scheduler.get_last_lr()` to see the LR)",
                fix=Fix(f"drop `{name}=`", ((call, lambda updated, arg=arg, call=call: _drop(updated, call, arg)),)),
            )


def _drop(updated: cst.Call, original: cst.Call, arg: cst.Arg) -> cst.Call:
    """Drop the argument at the same position from the call as updated by other edits."""
    index = next(i for i, a in enumerate(original.args) if a is arg)
    keyword = arg.keyword.value if arg.keyword is not None else None
    candidate = updated.args[index] if index < len(updated.args) else None
    if candidate is None or candidate.keyword is None or candidate.keyword.value != keyword:
        return updated
    return _without(updated, candidate)
