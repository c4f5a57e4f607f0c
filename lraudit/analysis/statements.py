"""Statement walking, a part of the Interpreter (mixed into it in interpreter.py).

Runs a block's statements in order and builds the trace's structure around the events they record
(trace.py): a loop runs once (a ``Loop``: the first iteration is what ordering rules need); both arms
of a branch run (``Arm``s), each on its own copy of the local names, merged after; dead branches
(``if False:``, ``if TYPE_CHECKING:``) and docstrings are not code; a ``with`` body sits in a
``Context``; an ``except`` handler is an arm of its own branch. Assignment binds names, tuple targets
and attributes, remembers what a name was computed from (``Scope.exprs``, read back by ``_origins``),
and records writes to ``param_groups[...]["lr"]``. Expressions are expressions.py's; the statement
budget is the Interpreter's (``_exec_statements``, which runs a block's statements).
"""
from __future__ import annotations

from functools import partial
from typing import Dict

import libcst as cst

from lraudit.analysis.imports import dotted_name
from lraudit.analysis.nodes import (
    _constant_truth,
    _mentioned_names,
    _read_names,
    _reachable,
    _subscript_key,
    _suite,
)
from lraudit.analysis.scopes import FuncRef, Scope, _class_ref, _Stop
from lraudit.analysis.trace import Arm, Container, Context, Event, Loop
from lraudit.analysis.values import (
    NONE, UNKNOWN, InstanceObj, Opaque, OptimizerObj, ParamGroup, ParamGroups, SchedulerObj, Value, some,
    union,
)
from lraudit.analysis import values as V


_MAX_DICT_ITEMS = 64
_MAX_ITEM_OPTIONS = 16


class StatementsMixin:
    """The Interpreter's statement walking; see the module docstring."""

    def _exec_body(self, body, scope: Scope, container: Container) -> None:
        try:
            self._exec_statements(body, scope, container)
        except _Stop:
            pass

    def _exec(self, stmt: cst.CSTNode, scope: Scope, container: Container) -> None:
        if isinstance(stmt, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            for small in stmt.body:
                self._exec_small(small, stmt, scope, container)
        elif isinstance(stmt, cst.If):
            self._exec_if(stmt, scope, container)
        elif isinstance(stmt, cst.For):
            self._exec_for(stmt, scope, container)
        elif isinstance(stmt, cst.While):
            loop = container.add(Loop(stmt, partial(self._text, stmt.test), ()))
            loop.origins = self._origins(stmt.test, scope, depth=2)
            self._eval(stmt.test, scope, loop)
            self._exec_loop_body(stmt.body, scope, loop)
            if stmt.orelse is not None:
                self._exec_body(_suite(stmt.orelse.body), scope, container)
        elif isinstance(stmt, cst.With):
            self._exec_with(stmt, scope, container)
        elif isinstance(stmt, (cst.Try, getattr(cst, "TryStar", cst.Try))):
            self._exec_try(stmt, scope, container)
        elif isinstance(stmt, cst.FunctionDef):
            ref = FuncRef(stmt, scope)
            self._assign_name(stmt.name.value, ref, scope)
            if scope is not self.module_scope and scope.unit is self.home:
                self._nested.append(ref)
        elif isinstance(stmt, cst.ClassDef):
            self._assign_name(stmt.name.value, _class_ref(stmt, scope.unit), scope)
        elif type(stmt).__name__ == "Match":
            branch = object()
            self._eval(stmt.subject, scope, container)
            for case in stmt.cases:
                self._exec_arm(branch, None, True, case.body, scope, container)

    def _exec_small(self, small, line, scope: Scope, container: Container) -> None:
        if isinstance(small, cst.Expr):
            self._eval(small.value, scope, container)
        elif isinstance(small, cst.Assign):
            value = self._eval(small.value, scope, container)
            for target in small.targets:
                self._assign(target.target, value, scope, container, small)
                self._remember_expr(target.target, small.value, scope)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                value = self._eval(small.value, scope, container)
                self._assign(small.target, value, scope, container, small)
                self._remember_expr(small.target, small.value, scope)
        elif isinstance(small, cst.AugAssign):
            self._eval(small.value, scope, container)
            self._aug_assign(small, scope, container)
        elif isinstance(small, cst.Return):
            value = self._eval(small.value, scope, container) if small.value is not None else NONE
            scope.returns.append(value)
            self._handoff(value, small, scope, container, "returned")
            raise _Stop()
        elif isinstance(small, (cst.Raise, cst.Break, cst.Continue)):
            if isinstance(small, cst.Raise) and small.exc is not None:
                self._eval(small.exc, scope, container)
            raise _Stop()
        elif isinstance(small, cst.Global):
            scope.globals.update(n.name.value for n in small.names)
        elif isinstance(small, cst.Assert):
            self._eval(small.test, scope, container)

    def _exec_if(self, stmt: cst.If, scope: Scope, container: Container, branch=None) -> None:
        branch = branch if branch is not None else object()
        constant = _constant_truth(stmt.test, scope.unit.imports)
        if constant is None:
            self._eval(stmt.test, scope, container)
        arms = []
        if constant is not False:
            arms.append((True, _suite(stmt.body)))
        if constant is not True:
            if isinstance(stmt.orelse, cst.If):
                arms.append((False, stmt.orelse))
            elif isinstance(stmt.orelse, cst.Else):
                arms.append((False, _suite(stmt.orelse.body)))
            else:
                arms.append((False, None))
        if constant is not None:  # a dead branch is not code; the live one runs unconditionally
            live = arms[0][1]
            if isinstance(live, cst.If):
                self._exec_if(live, scope, container)
            elif live is not None:
                self._exec_body(live, scope, container)
            return
        self._exec_arms(branch, stmt.test, arms, scope, container)

    def _exec_arms(self, branch, test, arms, scope: Scope, container: Container) -> None:
        before = dict(scope.vars)
        before_exprs = dict(scope.exprs)
        outcomes = []
        expr_outcomes = []
        for polarity, body in arms:
            scope.vars = dict(before)
            scope.exprs = dict(before_exprs)
            arm = container.add(self._make_arm(branch, test, polarity))
            guard = self._guard_of(test, scope) if polarity is True and test is not None and body is not None else None
            if guard is not None:
                self._guards.append(guard)
            self._arm_depth += 1
            try:
                if isinstance(body, cst.If):
                    self._exec_if(body, scope, arm)
                elif body is not None:
                    self._exec_body(body, scope, arm)
            finally:
                self._arm_depth -= 1
                if guard is not None:
                    self._guards.pop()
            outcomes.append(scope.vars)
            expr_outcomes.append(scope.exprs)
        merged: Dict[str, Value] = {}
        for name in set().union(*outcomes):
            values = [o[name] for o in outcomes if name in o]
            first = values[0]
            # Most names are untouched by the arms: skip the join when every arm left the same value.
            merged[name] = first if all(v is first for v in values) else union(values)
        scope.vars = merged
        # An expression is remembered after the branch only when every arm leaves the same one.
        scope.exprs = {name: found for name, found in expr_outcomes[0].items()
                       if all(o.get(name, (None,))[0] is found[0] for o in expr_outcomes[1:])}

    def _exec_arm(self, branch, test, polarity, body, scope, container) -> None:
        self._exec_arms(branch, test, [(polarity, _suite(body))], scope, container)

    def _make_arm(self, branch, test, polarity) -> Arm:
        names = frozenset(_mentioned_names(test)) if test is not None else frozenset()
        return Arm(branch, test, polarity, partial(self._text, test) if test is not None else "", names)

    def _exec_for(self, stmt: cst.For, scope: Scope, container: Container) -> None:
        element = self._iter_element(stmt.iter, scope, container)
        targets = tuple(_mentioned_names(stmt.target))
        loop = container.add(Loop(stmt, partial(self._text, stmt.iter), targets))
        loop.origins = self._origins(stmt.iter, scope, depth=2)
        loop.over_param_groups = any(isinstance(o, ParamGroup) for o in _reachable(element))
        self._assign(stmt.target, element, scope, loop, stmt)
        self._exec_loop_body(stmt.body, scope, loop)
        if stmt.orelse is not None:
            self._exec_body(_suite(stmt.orelse.body), scope, container)

    def _iter_element(self, node, scope: Scope, container: Container) -> Value:
        """The loop variable's value for ``for x in <node>`` (seeing through enumerate, zip, list)."""
        if (isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.args
                and scope.lookup(node.func.value) is None):
            function = node.func.value
            if function == "enumerate":
                for extra in node.args[1:]:
                    self._eval(extra.value, scope, container)
                return V.Container((UNKNOWN, self._iter_element(node.args[0].value, scope, container)))
            if function in ("list", "tuple", "reversed", "iter", "sorted"):
                return self._iter_element(node.args[0].value, scope, container)
            if function == "zip":
                return V.Container(tuple(self._iter_element(a.value, scope, container) for a in node.args))
        iterable = self._eval(node, scope, container)
        results = []
        for option in iterable.options():
            if isinstance(option, ParamGroups):
                results.append(ParamGroup(option.optimizer, option.indices))
            elif isinstance(option, V.Container) and option.keys is None and option.items:
                results.append(union(option.items))
            else:
                results.append(UNKNOWN)
        return union(results)

    def _exec_loop_body(self, body, scope: Scope, loop: Loop) -> None:
        try:
            self._exec_statements(_suite(body), scope, loop)
        except _Stop:
            pass

    def _exec_with(self, stmt: cst.With, scope: Scope, container: Container) -> None:
        texts = []
        accumulate = False
        for item in stmt.items:
            value = self._eval(item.item, scope, container)
            texts.append(self._text(item.item))
            call = item.item
            if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
                receiver = self._peek(call.func.value, scope)
                if call.func.attr.value == "accumulate" and not isinstance(receiver, (OptimizerObj, SchedulerObj)):
                    accumulate = True
            if item.asname is not None:
                self._assign(item.asname.name, value, scope, container, stmt)
        body = container.add(Context(stmt, tuple(texts), accumulate))
        self._exec_body(_suite(stmt.body), scope, body)

    def _exec_try(self, stmt, scope: Scope, container: Container) -> None:
        self._exec_body(_suite(stmt.body), scope, container)
        for handler in stmt.handlers:
            # A handler runs only on failure: an arm of its own branch (exclusive with nothing).
            self._exec_arm(object(), None, True, handler.body, scope, container)
        if stmt.orelse is not None:
            self._exec_body(_suite(stmt.orelse.body), scope, container)
        if stmt.finalbody is not None:
            self._exec_body(_suite(stmt.finalbody.body), scope, container)

    # ------------------------------------------------------------------ assignment
    def _assign(self, target, value: Value, scope: Scope, container: Container, stmt) -> None:
        if isinstance(target, cst.Name):
            self._assign_name(target.value, value, scope)
        elif isinstance(target, (cst.Tuple, cst.List)):
            elements = [e.value for e in target.elements]
            items = None
            if isinstance(value, V.Container) and len(value.items) == len(elements):
                items = value.items
            elif isinstance(value, Opaque):
                items = [value.attrs.setdefault(f"[{i}]", Opaque(f"{value.label}[{i}]")) for i in range(len(elements))]
            for index, element in enumerate(elements):
                self._assign(element, items[index] if items else UNKNOWN, scope, container, stmt)
        elif isinstance(target, cst.Attribute):
            self._assigned(dotted_name(target), scope)
            owner = self._eval(target.value, scope, container)
            if target.attr.value == "last_epoch":  # a schedule repositioned by hand (analysis/positions.py)
                self._emit(container, Event("reposition", stmt, owner, funcdef=scope.funcdef))
            for option in owner.options():
                if isinstance(option, (InstanceObj, Opaque)):
                    previous = option.attrs.get(target.attr.value)
                    if self._arm_depth and previous is not None:
                        value_here = union([previous, value])
                    else:
                        value_here = value
                    option.attrs[target.attr.value] = value_here
        elif isinstance(target, cst.Subscript):
            owner = self._eval(target.value, scope, container)
            self._eval_slices(target, scope, container)
            key = _subscript_key(target)
            if key == "lr":
                self._lr_write(owner, stmt, scope, container)
            self._set_item(owner, key, value)

    def _set_item(self, owner: Value, key, value: Value) -> None:
        """``config["interval"] = "step"`` on a dict the interpreter holds: the dict now has that item.
        In one arm of a branch (or on one of several dicts) it may or may not: either value (UNKNOWN
        where there was none). A key that is not a literal string could be any: an item under no
        known key. Bounded (a dict filled item by item in generated code stays linear): past
        ``_MAX_DICT_ITEMS`` keys a dict gets no more, and an item with too many possible values is UNKNOWN."""
        options = owner.options()
        for option in options:
            if not isinstance(option, V.Container) or option.keys is None:
                continue
            keys, items = list(option.keys), list(option.items)
            index = keys.index(key) if key in keys else None
            if index is None:
                if len(keys) >= _MAX_DICT_ITEMS:
                    if None in keys:
                        continue
                    key, value = None, UNKNOWN  # one item under no known key says "more than we follow"
                keys.append(key)
                items.append(union([UNKNOWN, value]) if self._arm_depth or len(options) > 1 else value)
            elif key is None or self._arm_depth or len(options) > 1:
                joined = union([items[index], value])
                items[index] = joined if len(joined.options()) <= _MAX_ITEM_OPTIONS else UNKNOWN
            else:
                items[index] = value
            option.keys, option.items = keys, tuple(items)

    def _assign_name(self, name: str, value: Value, scope: Scope) -> None:
        self._assigned(name, scope)
        if name in scope.globals:
            scope.unit.scope.vars[name] = value
            scope.unit.scope.exprs.pop(name, None)
        else:
            scope.vars[name] = value
            scope.exprs.pop(name, None)

    def _remember_expr(self, target, expr: cst.BaseExpression, scope: Scope) -> None:
        """After ``name = expr``: remember ``expr`` as what ``name`` was computed from."""
        if isinstance(target, cst.Name):
            owner = scope.unit.scope if target.value in scope.globals else scope
            owner.exprs[target.value] = (expr, scope)

    def _origins(self, node: cst.CSTNode, scope: Scope, depth: int = 4) -> Dict[int, cst.BaseExpression]:
        """For each ``Name`` read in ``node`` (and, transitively, in the expressions found), the
        expression it was last assigned from: ``{id(name node): expression}``."""
        found: Dict[int, cst.BaseExpression] = {}
        work = [(node, scope, 0)]
        seen = set()
        while work:
            current, current_scope, level = work.pop()
            for name in _read_names(current):
                origin = current_scope.lookup_expr(name.value)
                if origin is None or id(name) in found:
                    continue
                expr, expr_scope = origin
                found[id(name)] = expr
                if level < depth and id(expr) not in seen:
                    seen.add(id(expr))
                    work.append((expr, expr_scope, level + 1))
        return found

    def _aug_assign(self, stmt: cst.AugAssign, scope: Scope, container: Container) -> None:
        target = stmt.target
        self._assigned(dotted_name(target), scope)
        if isinstance(target, cst.Subscript):
            owner = self._eval(target.value, scope, container)
            if _subscript_key(target) == "lr":
                self._lr_write(owner, stmt, scope, container)
            return
        if isinstance(target, cst.Name):  # ``total *= epochs``: no longer what it was assigned from
            (scope.unit.scope if target.value in scope.globals else scope).exprs.pop(target.value, None)
        name = dotted_name(target)
        if name:
            loop = next((a for a in [container, *container.ancestors()] if isinstance(a, Loop)), None)
            if loop is not None:
                loop.counters.add(name)

    def _lr_write(self, owner: Value, stmt, scope: Scope, container: Container) -> None:
        for option in some(owner, ParamGroup):
            self._emit(container, Event("lr_write", stmt, option.optimizer, funcdef=scope.funcdef,
                                        indices=option.indices))
