"""Expression evaluation, a part of the Interpreter (mixed into it in interpreter.py).

The abstract value (values.py) of an expression in a scope: a name through the scope, then the
module's imports (``Qual``); attributes of instances (what a method stored on ``self``, or a method
found through the base classes), of optimizers and schedulers (``opt.param_groups``,
``sched.optimizer``) and of opaque objects (stable, so identity survives); subscripts (param-group
selections, literal containers, tables of classes of the project); literals. Every sub-expression is
evaluated, so the calls inside record their events; calls themselves are calls.py's. Anything it
cannot follow is UNKNOWN.
"""
from __future__ import annotations

import libcst as cst

from lraudit.analysis.nodes import _class_attribute, _number_value, _select_groups, _string_value
from lraudit.analysis.scopes import FuncRef, Qual, Scope, _unit_of
from lraudit.analysis.trace import Container
from lraudit.analysis.values import (
    ALL, NONE, UNKNOWN, ClassRef, Const, InstanceObj, Opaque, OptimizerObj, ParamGroups, SchedulerObj, Value,
    union,
)
from lraudit.analysis import values as V


class ExpressionsMixin:
    """The Interpreter's expression evaluation; see the module docstring."""

    def _peek(self, node, scope: Scope) -> Value:
        """The value of a Name/Attribute chain without side effects (no events)."""
        if isinstance(node, cst.Name):
            found = scope.lookup(node.value)
            return found if found is not None else UNKNOWN
        return UNKNOWN

    def _eval(self, node, scope: Scope, container: Container) -> Value:
        if node is None:
            return UNKNOWN
        if isinstance(node, cst.Name):
            return self._eval_name(node.value, scope)
        if isinstance(node, cst.Attribute):
            return self._eval_attribute(node, scope, container)
        if isinstance(node, cst.Call):
            return self._eval_call(node, scope, container)
        if isinstance(node, cst.Subscript):
            return self._eval_subscript(node, scope, container)
        if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
            return V.Container(self._eval(e.value, scope, container) for e in node.elements)
        if isinstance(node, cst.Dict):
            items, keys = [], []
            for element in node.elements:
                if isinstance(element, cst.DictElement):
                    keys.append(_string_value(element.key))
                    items.append(self._eval(element.value, scope, container))
                else:  # ``**other``: an item under no known key
                    keys.append(None)
                    items.append(self._eval(element.value, scope, container))
            return V.Container(items, keys, node)
        if isinstance(node, (cst.Integer, cst.Float)):
            return _number_value(node)
        if isinstance(node, cst.SimpleString):
            return Const(_string_value(node))
        if isinstance(node, cst.UnaryOperation):
            inner = self._eval(node.expression, scope, container)
            if isinstance(node.operator, cst.Minus) and isinstance(inner, Const) and isinstance(inner.value, (int, float)):
                return Const(-inner.value)
            return UNKNOWN
        if isinstance(node, cst.BinaryOperation):
            self._eval(node.left, scope, container)
            self._eval(node.right, scope, container)
            return UNKNOWN
        if isinstance(node, cst.BooleanOperation):
            left = self._eval(node.left, scope, container)
            right = self._eval(node.right, scope, container)
            return union([left, right])
        if isinstance(node, cst.Comparison):
            self._eval(node.left, scope, container)
            for comparison in node.comparisons:
                self._eval(comparison.comparator, scope, container)
            return UNKNOWN
        if isinstance(node, cst.IfExp):
            self._eval(node.test, scope, container)
            return union([self._eval(node.body, scope, container), self._eval(node.orelse, scope, container)])
        if isinstance(node, cst.Await):
            return self._eval(node.expression, scope, container)
        if isinstance(node, cst.NamedExpr):
            value = self._eval(node.value, scope, container)
            self._assign(node.target, value, scope, container, node)
            return value
        if isinstance(node, cst.FormattedString):
            for part in node.parts:  # f"{scheduler.get_lr()}": the expressions inside run
                if isinstance(part, cst.FormattedStringExpression):
                    self._eval(part.expression, scope, container)
            return UNKNOWN
        if isinstance(node, cst.ConcatenatedString):
            self._eval(node.left, scope, container)
            self._eval(node.right, scope, container)
            return UNKNOWN
        return UNKNOWN

    def _eval_name(self, name: str, scope: Scope) -> Value:
        found = scope.lookup(name)
        if found is not None:
            return found
        if name == "None":
            return NONE
        if name in ("True", "False"):
            return Const(name == "True")
        qualified = scope.unit.imports.resolve(name)
        if qualified is not None:
            return Qual(qualified, scope.unit.path)
        return UNKNOWN

    def _eval_attribute(self, node: cst.Attribute, scope: Scope, container: Container) -> Value:
        base = self._eval(node.value, scope, container)
        attr = node.attr.value
        results = []
        for option in base.options():
            results.append(self._attribute_of(option, attr))
        return union(results)

    def _attribute_of(self, base: Value, attr: str) -> Value:
        if isinstance(base, Qual):
            return Qual(f"{base.qualname}.{attr}", base.origin)
        if attr == "param_groups" and isinstance(base, (OptimizerObj, Opaque)):
            return ParamGroups(base, ALL)
        if isinstance(base, SchedulerObj) and attr == "optimizer":
            return base.optimizer
        if isinstance(base, InstanceObj):
            if attr in base.attrs:
                return base.attrs[attr]
            found = self._find_method(base.classdef, _unit_of(base, self.home), attr)
            if found is not None:
                method, unit, owner = found
                return FuncRef(method, unit.scope, base, owner)
            if _class_attribute(base.classdef, attr):
                return UNKNOWN
            # Never assigned here (set by a framework or a base class): opaque, but stable.
            opaque = Opaque(f"self.{attr}")
            base.attrs[attr] = opaque
            return opaque
        if isinstance(base, Opaque):
            return base.attrs.setdefault(attr, Opaque(f"{base.label}.{attr}"))
        if isinstance(base, ParamGroups) and attr in ("copy",):
            return base
        return UNKNOWN

    def _eval_subscript(self, node: cst.Subscript, scope: Scope, container: Container) -> Value:
        base = self._eval(node.value, scope, container)
        self._eval_slices(node, scope, container)
        if len(node.slice) != 1:
            return UNKNOWN
        element = node.slice[0].slice
        results = []
        for option in base.options():
            if isinstance(option, Qual):  # a table of another module of the project
                option = self._project_value(option.qualname, option.origin) or option
            if isinstance(option, ParamGroups):
                results.append(_select_groups(option, element))
            elif isinstance(option, V.Container) and isinstance(element, cst.Index):
                key = element.value
                if isinstance(key, cst.Integer) and option.keys is None:
                    index = int(key.evaluated_value)
                    results.append(option.items[index] if -len(option.items) <= index < len(option.items) else UNKNOWN)
                elif isinstance(key, cst.SimpleString) and option.keys is not None:
                    wanted = key.evaluated_value
                    results.append(next((v for k, v in zip(option.keys, option.items) if k == wanted), UNKNOWN))
                elif option.keys is not None and not isinstance(key, (cst.Integer, cst.SimpleString)) \
                        and option.items and all(isinstance(i, (Qual, ClassRef, FuncRef)) for i in option.items):
                    # ``SCHEDULERS[cfg.name]``: one of the classes (or functions) of the table.
                    results.append(union(option.items))
                else:
                    results.append(UNKNOWN)
            else:
                results.append(UNKNOWN)
        return union(results)

    def _eval_slices(self, node: cst.Subscript, scope: Scope, container: Container) -> None:
        for element in node.slice:
            inner = element.slice
            if isinstance(inner, cst.Index):
                self._eval(inner.value, scope, container)
