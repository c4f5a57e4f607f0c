"""Where a call leads, a part of the Interpreter (mixed into it in interpreter.py).

A call's arguments are evaluated, then the callee decides: a function or method of the module or of
its project runs inlined (``_invoke``, interpreter.py); ``super().name(...)`` reaches the method a
base class defines, bound to the same ``self``; a class is instantiated (its ``__init__`` runs; a
subclass of a torch scheduler or optimizer is constructed as one); a table of torch scheduler classes
(``SCHEDULERS[name](opt)``) builds a scheduler of one of them; ``self.optimizers()`` in a
LightningModule returns what its ``configure_optimizers`` builds. What no code of the project
answers (torch, frameworks, unknown helpers) is library_calls.py's.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import known
from lraudit.analysis.nodes import _first_param_is_optimizer, _length_params, _method
from lraudit.analysis.scopes import FuncRef, Qual, Scope, Unit, _unit_of
from lraudit.analysis.trace import Block, Container, Event
from lraudit.analysis.values import (
    UNKNOWN, ClassRef, InstanceObj, Opaque, OptimizerObj, SchedulerObj, Value, union,
)
from lraudit.analysis import values as V


def _collect_lightning_config(value: Value, optimizers: List[Value], schedulers: List[Value]) -> None:
    """Optimizers and schedulers out of what ``configure_optimizers`` returns: an optimizer, a list,
    ``([opts], [scheds])``, a dict ``{"optimizer": o, "lr_scheduler": s or {"scheduler": s}}``."""
    for option in V.known_options(value):
        if isinstance(option, (OptimizerObj, Opaque)):
            optimizers.append(option)
        elif isinstance(option, SchedulerObj):
            schedulers.append(option)
        elif isinstance(option, V.Container):
            if option.keys is not None:
                for key, item in zip(option.keys, option.items):
                    if key in ("optimizer", "lr_scheduler", "scheduler"):
                        _collect_lightning_config(item, optimizers, schedulers)
            else:
                for item in option.items:
                    _collect_lightning_config(item, optimizers, schedulers)


def _one_or_tuple(values: List[Value]) -> Value:
    return values[0] if len(values) == 1 else V.Container(values)


def _scheduler_table(options) -> Optional[Tuple[str, known.SchedulerKind]]:
    """Several torch scheduler classes one call may construct (``SCHEDULERS[name](opt, ...)``): a
    torch scheduler whose class is decided at run time, chainable only when all of them are. A table
    holding ReduceLROnPlateau is not one (its step takes a metric): unknown."""
    if len(options) < 2 or not all(isinstance(o, Qual) for o in options):
        return None
    kinds = [known.scheduler_kind(o.qualname) for o in options]
    if any(k is None or k.cls in (None, "ReduceLROnPlateau") or k.composite for k in kinds):
        return None
    names = "/".join(dict.fromkeys(k.cls for k in kinds))
    return f"{known.LR_SCHEDULER}.{names}", known.SchedulerKind(cls=None, chainable=all(k.chainable for k in kinds))


class CallsMixin:
    """The Interpreter's dispatch of calls to the code they reach; see the module docstring."""

    def _eval_call(self, call: cst.Call, scope: Scope, container: Container) -> Value:
        func = call.func
        parent_method = self._super_method(func, scope)
        if parent_method is not None:
            receiver = parent_method
        elif isinstance(func, cst.Attribute):
            receiver = self._eval(func.value, scope, container)
        else:
            receiver = None
            callee = self._eval(func, scope, container)
        positional: List[Value] = []
        keywords: Dict[str, Value] = {}
        for arg in call.args:
            value = self._eval(arg.value, scope, container)
            if arg.keyword is not None:
                keywords[arg.keyword.value] = value
            elif arg.star == "":
                positional.append(value)
        if isinstance(receiver, FuncRef) and parent_method is not None:
            return self._invoke(receiver, positional, keywords, call, container)
        if receiver is not None:
            return self._call_method(call, receiver, func.attr.value, positional, keywords, scope, container)
        return self._call_value(call, callee, positional, keywords, scope, container)

    def _super_method(self, func, scope: Scope) -> Optional[FuncRef]:
        """``super().name`` inside a method whose class has a base of this module or its project
        that defines ``name``: that method, bound to the same ``self``. None otherwise."""
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call)
                and isinstance(func.value.func, cst.Name) and func.value.func.value == "super"
                and scope.lookup("super") is None):
            return None
        current: Optional[Scope] = scope
        while current is not None and current.ref is None:
            current = current.enclosing
        ref = current.ref if current is not None else None
        if ref is None or ref.owner is None or ref.bound_self is None:
            return None
        found = self._find_method(ref.owner, ref.scope.unit, func.attr.value, inherited_only=True)
        if found is None:
            return None
        method, unit, owner = found
        return FuncRef(method, unit.scope, ref.bound_self, owner)

    def _call_value(self, call, callee: Value, positional, keywords, scope, container) -> Value:
        table = _scheduler_table(callee.options())
        if table is not None:  # one of several torch scheduler classes, chosen at run time
            qualname, kind = table
            return self._construct_scheduler(qualname, kind, call, positional, keywords, scope, container)
        results = []
        for option in callee.options():
            if isinstance(option, FuncRef):
                results.append(self._invoke(option, positional, keywords, call, container))
            elif isinstance(option, ClassRef):
                results.append(self._instantiate(option.classdef, call, positional, keywords, scope, container,
                                                 option.unit))
            elif isinstance(option, Qual):
                results.append(self._call_qualified(option.qualname, call, positional, keywords, scope, container,
                                                    option.origin))
            else:
                results.append(self._unknown_call(call, positional, keywords, scope, container))
        return union(results)

    def _call_method(self, call, receiver: Value, method: str, positional, keywords, scope, container) -> Value:
        results: List[Value] = []
        handled = False
        for option in receiver.options():
            if isinstance(option, Qual):
                results.append(self._call_qualified(f"{option.qualname}.{method}", call, positional, keywords,
                                                    scope, container, option.origin))
                handled = True
            elif isinstance(option, InstanceObj):
                if method in ("optimizers", "lr_schedulers") and _method(option.classdef, method) is None \
                        and self._is_lightning_module(option.classdef, _unit_of(option, self.home)):
                    results.append(self._lightning_configured(option)[method])
                    handled = True
                    continue
                target = self._attribute_of(option, method)
                if isinstance(target, FuncRef):
                    results.append(self._invoke(target, positional, keywords, call, container))
                    handled = True
            elif isinstance(option, FuncRef) and method in ("__call__",):
                results.append(self._invoke(option, positional, keywords, call, container))
                handled = True
        if handled:
            return union(results)
        return self._builtin_method(call, receiver, method, positional, keywords, scope, container)

    def _instantiate(self, classdef: cst.ClassDef, call, positional, keywords, scope, container,
                     unit: Optional[Unit] = None) -> Value:
        unit = unit or self.home
        for base in self._lineage(classdef, unit):
            kind = known.scheduler_kind(base)
            if base in known.TORCH_SCHEDULER_BASES or kind is not None:
                # A subclass of a torch scheduler: a torch scheduler whose class specifics are its own;
                # its length, when its constructor names one (``max_epochs``, ``total_steps``).
                found = self._find_method(classdef, unit, "__init__")
                if found is not None and not _first_param_is_optimizer(found[0]):
                    return UNKNOWN
                custom = known.SchedulerKind(cls=None, size_args=_length_params(found[0]) if found else ())
                obj = self._construct_scheduler(base, custom, call, positional, keywords, scope, container)
                obj.subclass = classdef.name.value
                return obj
            if base in known.OPTIMIZER_BASES or known.is_optimizer_constructor(base):
                obj = self._memoised(("opt", id(call)), lambda: OptimizerObj(call, base, None))
                self._emit(container, Event("construct", call, obj, call, scope.funcdef))
                return obj
        instance = self._memoised(("inst", id(call), id(scope)),
                                  lambda: InstanceObj(call, classdef, None if unit.home else unit))
        found = self._find_method(classdef, unit, "__init__")
        if found is not None:
            init, init_unit, owner = found
            self._invoke(FuncRef(init, init_unit.scope, instance, owner), positional, keywords, call, container)
        return instance

    def _is_lightning_module(self, classdef: cst.ClassDef, unit: Optional[Unit] = None) -> bool:
        imports = (unit or self.home).imports
        return any((imports.resolve_expr(b.value) or "") in known.LIGHTNING_MODULES for b in classdef.bases)

    def _lightning_configured(self, instance: InstanceObj) -> Dict[str, Value]:
        """What ``self.optimizers()`` / ``self.lr_schedulers()`` return in a LightningModule: the
        optimizers and schedulers its ``configure_optimizers`` returns (one value when there is one,
        a tuple otherwise, as Lightning does), or opaque values when that cannot be read."""
        cached = getattr(instance, "_lightning", None)
        if cached is not None:
            return cached
        optimizers: List[Value] = []
        schedulers: List[Value] = []
        configure = _method(instance.classdef, "configure_optimizers")
        if configure is not None:
            # Run it as its own entry point runs it (same memo keys, so the very objects it builds),
            # without recording events into the caller's trace.
            saved = (self._stack, self._calls)
            self._stack, self._calls = [], []
            self._dry += 1
            try:
                returned = self._invoke(FuncRef(configure, _unit_of(instance, self.home).scope, instance,
                                                instance.classdef),
                                        [], {}, None, Block())
            finally:
                self._dry -= 1
                self._stack, self._calls = saved
            _collect_lightning_config(returned, optimizers, schedulers)
        result = {
            "optimizers": _one_or_tuple(optimizers) if optimizers else Opaque("self.optimizers()"),
            "lr_schedulers": _one_or_tuple(schedulers) if schedulers else Opaque("self.lr_schedulers()"),
        }
        instance._lightning = result
        return result
