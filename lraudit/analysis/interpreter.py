"""Abstract interpretation of one module: walks every entry point in execution order, inlines calls
into same-module functions and methods (binding arguments to parameters), tracks which names and
attributes hold which optimizer/scheduler, and records events into a trace (see trace.py).

Loops run once (the first iteration is what ordering rules need); both arms of a branch run, each on
its own copy of the local names, merged after; dead branches (``if False:``, ``if TYPE_CHECKING:``)
and docstrings are not code. Anything the interpreter cannot follow becomes UNKNOWN.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Dict, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import known
from lraudit.analysis.imports import ImportTable, dotted_name
from lraudit.analysis.trace import Arm, Block, Container, Context, Event, Frame, Loop
from lraudit.analysis.values import (
    ALL,
    NONE,
    UNKNOWN,
    AcceleratorObj,
    ClassRef,
    Const,
    InstanceObj,
    Obj,
    Opaque,
    OptimizerObj,
    ParamGroup,
    ParamGroups,
    ScalerObj,
    SchedulerObj,
    StateDict,
    Value,
    some,
    union,
)
from lraudit.analysis import values as V
from lraudit.analysis.nodes import (  # noqa: F401 - re-exported for model.py and the rules
    GroupSlice,
    _called_names,
    _class_attribute,
    _constant_truth,
    _expression_children,
    _first_param_is_optimizer,
    _group_count,
    _is_docstring,
    _literal_int,
    _mentioned_names,
    _method,
    _number_value,
    _reachable,
    _read_names,
    _select_groups,
    _string_value,
    _subscript_key,
    _suite,
)

MAX_DEPTH = 8  # nested inlined calls
# Bounds on the cost of pathological files (a large class whose methods call each other, inlined
# from every entry point). A module that exceeds one is *exhausted*: its trace is incomplete, so
# rules that reason from absence (a scheduler never stepped) could be wrong, and it reports nothing.
# Real training scripts stay far below: an ImageNet-style main() with its helpers runs ~200.
MAX_STATEMENTS = 30_000  # per module
MAX_ENTRY_STATEMENTS = 5_000  # per entry point


# Methods of frameworks that hand back what they were given, wrapped, in order:
# ``accelerator.prepare(model, opt, loader, sched)``, ``fabric.setup(model, opt)``.
_POSITION_PRESERVING_METHODS = frozenset(
    {"prepare", "prepare_optimizer", "prepare_scheduler", "setup", "setup_optimizers"}
)
_TRAINING_CALL = re.compile(r"train", re.IGNORECASE)


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


def _callee_name(call: cst.Call) -> Optional[str]:
    if isinstance(call.func, cst.Name):
        return call.func.value
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


class Qual(Value):
    """A reference to an imported module, class or function, by qualified name; ``origin`` is the
    module file that imported it (relative and project names are resolved from there)."""

    def __init__(self, qualname: str, origin: Optional[str] = None) -> None:
        self.qualname = qualname
        self.origin = origin

    def __repr__(self) -> str:
        return f"Qual({self.qualname})"


class Unit:
    """One module whose code the interpreter runs: the checked module (``home``) or a module of its
    project read to follow a call (see project.py). Its names resolve through its own imports."""

    def __init__(self, module: cst.Module, imports: ImportTable, idle: frozenset, path: Optional[str],
                 home: bool) -> None:
        self.module = module
        self.imports = imports
        self.idle = idle
        self.path = path
        self.home = home
        self.scope = Scope(None, None, self)


class FuncRef(Value):
    """A function defined in this module (or a project module), with the scope it closes over and its bound ``self``."""

    def __init__(self, funcdef: cst.FunctionDef, scope: "Scope", bound_self: Optional[Value] = None,
                 owner: Optional[cst.ClassDef] = None) -> None:
        self.funcdef = funcdef
        self.scope = scope
        self.bound_self = bound_self
        self.owner = owner


class Scope:
    def __init__(self, funcdef: Optional[cst.FunctionDef], enclosing: Optional["Scope"],
                 unit: Optional[Unit] = None) -> None:
        self.funcdef = funcdef
        self.enclosing = enclosing
        self.unit: Optional[Unit] = unit if unit is not None else (enclosing.unit if enclosing is not None else None)
        self.vars: Dict[str, Value] = {}
        self.globals: set = set()
        self.ref: Optional["FuncRef"] = None  # the function (with its ``self``) this scope runs
        self.returns: List[Value] = []
        # name -> the expression it was last bound to by a plain ``name = expr`` (absent when bound
        # otherwise: a loop target, unpacking, two branches that disagree), with the scope of that
        # expression's own names. Lets rules ask what a size or count was computed from.
        self.exprs: Dict[str, Tuple[cst.BaseExpression, "Scope"]] = {}

    def lookup_expr(self, name: str) -> Optional[Tuple[cst.BaseExpression, "Scope"]]:
        scope: Optional[Scope] = self
        while scope is not None:
            if name in scope.vars:
                return scope.exprs.get(name)
            scope = scope.enclosing
        return None

    def lookup(self, name: str) -> Optional[Value]:
        scope: Optional[Scope] = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.enclosing
        return None


class _Stop(Exception):
    """Raised to abandon the rest of a block (return, raise, break, continue)."""


class Interpreter:
    def __init__(self, module: cst.Module, imports: ImportTable, called: Optional[set] = None,
                 idle: frozenset = frozenset(), project=None, path: Optional[str] = None) -> None:
        self._idle = idle  # (class name or None, function name) not worth running as entry points
        self.module = module
        self.imports = imports
        self._called = called  # names called anywhere, when a prescan already knows them
        self.home = Unit(module, imports, idle, path, True)
        self.module_scope = self.home.scope
        self.project = project  # project.Project, or None: calls into other modules stay unknown
        self._units: Dict[str, Optional[Unit]] = {}  # path -> unit of a project module
        self.entries: List[Tuple[str, Block]] = []
        self.inlined: set = set()
        self.objects: List[Obj] = []
        self._memo: Dict[tuple, Obj] = {}
        self._stack: List[cst.FunctionDef] = []
        self._calls: List[Optional[cst.Call]] = []
        self._statements = 0
        self._entry_statements = 0
        self.exhausted = False
        self._dry = 0  # > 0 while pre-populating class prototypes: events are discarded
        self._prototypes: Dict[int, InstanceObj] = {}
        self._class_of_method: Dict[int, cst.ClassDef] = {}
        self._nested: List[FuncRef] = []  # nested functions seen, with their defining scope
        self._arm_depth = 0

    # ------------------------------------------------------------------ entry points
    def run(self) -> None:
        functions, methods = self._collect_definitions()
        for name, node in functions.items():
            self.module_scope.vars[name] = FuncRef(node, self.module_scope)
        for cls in self._module_classes():
            self.module_scope.vars[cls.name.value] = ClassRef(cls)
        root = Block()
        self.entries.append(("<module>", root))
        self._exec_body(self.module.body, self.module_scope, root)

        called = self._called if self._called is not None else _called_names(self.module)
        candidates = [f for f in list(functions.values()) + methods]
        # Functions nobody calls by name are roots; then whatever was still never reached.
        ordered = [f for f in candidates if f.name.value not in called] + [
            f for f in candidates if f.name.value in called
        ]
        for funcdef in ordered:
            if id(funcdef) in self.inlined:
                continue
            owner = self._class_of_method.get(id(funcdef))
            if (owner.name.value if owner is not None else None, funcdef.name.value) in self._idle:
                continue
            if owner is not None:
                self._run_method_entry(funcdef, owner)
            else:
                self._run_function_entry(funcdef, self.module_scope)
        # Nested functions (callbacks, event handlers) close over the scope that defined them.
        seen = set()
        while self._nested:
            ref = self._nested.pop(0)
            if id(ref.funcdef) in self.inlined or id(ref.funcdef) in seen:
                continue
            seen.add(id(ref.funcdef))
            self._run_function_entry(ref.funcdef, ref.scope)

    def _module_classes(self):
        return [s for s in self.module.body if isinstance(s, cst.ClassDef)]

    def _collect_definitions(self):
        functions: Dict[str, cst.FunctionDef] = {}
        methods: List[cst.FunctionDef] = []
        for stmt in self.module.body:
            if isinstance(stmt, cst.FunctionDef):
                functions[stmt.name.value] = stmt
            elif isinstance(stmt, cst.ClassDef):
                for item in _suite(stmt.body):
                    if isinstance(item, cst.FunctionDef):
                        methods.append(item)
                        self._class_of_method[id(item)] = stmt
        return functions, methods

    def _run_function_entry(self, funcdef: cst.FunctionDef, enclosing: "Scope") -> None:
        root = Block()
        self.entries.append((funcdef.name.value, root))
        self._invoke(FuncRef(funcdef, enclosing), [], {}, None, root, opaque_params=True)

    def _prototype(self, classdef: cst.ClassDef) -> InstanceObj:
        proto = self._prototypes.get(id(classdef))
        if proto is None:
            proto = InstanceObj(None, classdef)
            self._prototypes[id(classdef)] = proto
            # Populate attributes from every method (``__init__`` first) before any entry runs, so a
            # method reads what another one stored on ``self``; constructions are memoised per site,
            # so the entries below see the very same objects.
            methods = [m for m in _suite(classdef.body) if isinstance(m, cst.FunctionDef)
                       and (classdef.name.value, m.name.value) not in self._idle]
            methods.sort(key=lambda m: m.name.value != "__init__")
            self._dry += 1
            try:
                for method in methods:
                    self._invoke(FuncRef(method, self.module_scope, proto, classdef), [], {}, None, Block(),
                                 opaque_params=True)
            finally:
                self._dry -= 1
        return proto

    def _run_method_entry(self, funcdef: cst.FunctionDef, classdef: cst.ClassDef) -> None:
        proto = self._prototype(classdef)
        root = Block()
        self.entries.append((f"{classdef.name.value}.{funcdef.name.value}", root))
        self._invoke(FuncRef(funcdef, self.module_scope, proto, classdef), [], {}, None, root, opaque_params=True)

    # ------------------------------------------------------------------ statements
    def _exec_body(self, body, scope: Scope, container: Container) -> None:
        try:
            self._exec_statements(body, scope, container)
        except _Stop:
            pass

    def _exec_statements(self, statements, scope: Scope, container: Container) -> None:
        for index, stmt in enumerate(statements):
            if index == 0 and _is_docstring(stmt):
                continue
            self._statements += 1
            self._entry_statements += 1
            if self._statements > MAX_STATEMENTS or self._entry_statements > MAX_ENTRY_STATEMENTS:
                self.exhausted = True
                raise _Stop()
            self._exec(stmt, scope, container)

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
            self._arm_depth += 1
            try:
                if isinstance(body, cst.If):
                    self._exec_if(body, scope, arm)
                elif body is not None:
                    self._exec_body(body, scope, arm)
            finally:
                self._arm_depth -= 1
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
            owner = self._eval(target.value, scope, container)
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

    def _assign_name(self, name: str, value: Value, scope: Scope) -> None:
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

    # ------------------------------------------------------------------ expressions
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
            return V.Container(items, keys)
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

    # ------------------------------------------------------------------ calls
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

    def _is_idle(self, ref: FuncRef) -> bool:
        unit = ref.scope.unit
        if not unit.idle or (ref.owner is None and ref.scope is not unit.scope):
            return False  # nested functions are not in the prescan's table
        return (ref.owner.name.value if ref.owner is not None else None, ref.funcdef.name.value) in unit.idle

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

    def _builtin_method(self, call, receiver: Value, method: str, positional, keywords, scope, container) -> Value:
        funcdef = scope.funcdef
        if method == "step":
            self._emit(container, Event("step", call, receiver, call, funcdef, args=positional, keywords=keywords))
            if positional and not any(isinstance(o, (OptimizerObj, SchedulerObj)) for o in receiver.options()):
                # ``scaler.step(optimizer)`` and other wrappers that step the optimizer they are given.
                self._emit(container, Event("scaler_step", call, positional[0], call, funcdef, via=receiver))
            return UNKNOWN
        if method == "get_lr":
            self._emit(container, Event("get_lr", call, receiver, call, funcdef))
            return UNKNOWN
        if method == "state_dict":
            if any(isinstance(o, (OptimizerObj, SchedulerObj)) for o in receiver.options()):
                self._emit(container, Event("state_dict", call, receiver, call, funcdef))
            return StateDict(receiver)
        if method == "load_state_dict":
            self._emit(container, Event("load_state", call, receiver, call, funcdef, args=positional))
            return UNKNOWN
        if method == "add_param_group":
            in_loop = any(isinstance(a, Loop) for a in [container, *container.ancestors()])
            for option in some(receiver, OptimizerObj):
                option.added_sites.add(id(call))
                option.added_repeatedly = option.added_repeatedly or in_loop
            self._emit(container, Event("add_param_group", call, receiver, call, funcdef))
            return NONE
        if method == "update" and any(isinstance(o, ParamGroup) for o in receiver.options()):
            if "lr" in keywords or (positional and isinstance(positional[0], V.Container)
                                    and "lr" in (positional[0].keys or [])):
                self._lr_write(receiver, call, scope, container)
            return NONE
        if method in _POSITION_PRESERVING_METHODS and not any(
            isinstance(o, (OptimizerObj, SchedulerObj)) for o in receiver.options()
        ):
            self._handoff_args(positional, keywords, call, scope, container, "prepared")
            if len(positional) == 1:
                return positional[0]
            return V.Container(positional)
        if method in ("save", "save_state") and any(isinstance(o, AcceleratorObj) for o in receiver.options()):
            self._emit(container, Event("save", call, positional[0] if positional else UNKNOWN, call, funcdef,
                                        saver="accelerator." + method))
            return NONE
        if method in ("copy", "__getitem__") and any(isinstance(o, ParamGroups) for o in receiver.options()):
            return receiver
        return self._unknown_call(call, positional, keywords, scope, container)

    def _call_qualified(self, qualname: str, call, positional, keywords, scope, container,
                        origin: Optional[str] = None) -> Value:
        funcdef = scope.funcdef
        kind = known.scheduler_kind(qualname)
        if kind is not None:
            return self._construct_scheduler(qualname, kind, call, positional, keywords, scope, container)
        if known.is_optimizer_constructor(qualname):
            params = positional[0] if positional else keywords.get("params", UNKNOWN)
            groups = _group_count(call, params)
            obj = self._memoised(("opt", id(call)), lambda: OptimizerObj(call, qualname, groups))
            self._emit(container, Event("construct", call, obj, call, funcdef))
            return obj
        if qualname in known.GRAD_SCALERS:
            return self._memoised(("scaler", id(call)), lambda: ScalerObj(call))
        if qualname in known.ACCELERATORS:
            return self._memoised(("acc", id(call)), lambda: AcceleratorObj(call))
        if qualname in known.TORCH_SAVE:
            self._emit(container, Event("save", call, positional[0] if positional else keywords.get("obj", UNKNOWN),
                                        call, funcdef, saver=qualname))
            return NONE
        if qualname in known.POSITION_PRESERVING:
            self._handoff_args(positional, keywords, call, scope, container, "prepared")
            return positional[0] if len(positional) == 1 else V.Container(positional)
        value = self._project_value(qualname, origin, (positional, keywords))
        if value is not None:  # a function, class or table of another module of the project
            return self._call_value(call, value, positional, keywords, scope, container)
        return self._unknown_call(call, positional, keywords, scope, container)

    def _unknown_call(self, call, positional, keywords, scope, container) -> Value:
        """A call we cannot follow: what it receives is handed on, and what it returns is an opaque
        object with identity (``opt = make_optimizer(...)``, then ``StepLR(opt)`` and ``opt.step()``
        concern one object). A training helper of another module that receives the optimizer
        (``train_one_epoch(model, optimizer, ...)``) is recorded as a place the optimizer may step."""
        self._handoff_args(positional, keywords, call, scope, container)
        name = _callee_name(call)
        if name in known.CHECKPOINT_SAVER_NAMES and positional:
            self._emit(container, Event("save", call, positional[0], call, scope.funcdef, saver=name))
        if name and _TRAINING_CALL.search(name):
            arguments = list(positional) + list(keywords.values())
            if any(isinstance(o, (OptimizerObj, Opaque)) for v in arguments for o in v.options()):
                self._emit(container, Event("train_call", call, V.Container(arguments), call, scope.funcdef,
                                            name=name))
        return self._memoised(("result", id(call)), lambda: Opaque(f"{name or 'call'}()"))

    def _construct_scheduler(self, qualname, kind, call, positional, keywords, scope, container) -> Value:
        name, position = kind.optimizer_arg
        optimizer = keywords.get(name, positional[position] if len(positional) > position else UNKNOWN)
        children: Tuple[Value, ...] = ()
        if kind.composite:
            schedulers = keywords.get("schedulers")
            if schedulers is None:
                index = 1 if kind.cls == "SequentialLR" else 0
                schedulers = positional[index] if len(positional) > index else UNKNOWN
            if isinstance(schedulers, V.Container):
                children = schedulers.items
            if kind.cls == "ChainedScheduler" and optimizer is UNKNOWN:
                firsts = [c.optimizer for child in children for c in some(child, SchedulerObj)]
                optimizer = union(firsts) if firsts else UNKNOWN
        key = ("sched", id(call)) + tuple(id(o) for o in optimizer.options())
        obj = self._memoised(key, lambda: SchedulerObj(call, qualname, kind, optimizer, children))
        for child in children:
            for option in some(child, SchedulerObj):
                option.parent = obj
        self._emit(container, Event("construct", call, obj, call, scope.funcdef, args=positional, keywords=keywords,
                                    origins=self._origins(call, scope) if not self._dry else {}))
        return obj

    def _instantiate(self, classdef: cst.ClassDef, call, positional, keywords, scope, container,
                     unit: Optional[Unit] = None) -> Value:
        unit = unit or self.home
        for base in self._lineage(classdef, unit):
            kind = known.scheduler_kind(base)
            if base in known.TORCH_SCHEDULER_BASES or kind is not None:
                # A subclass of a torch scheduler: a torch scheduler whose class specifics are its own.
                custom = known.SchedulerKind(cls=None)
                found = self._find_method(classdef, unit, "__init__")
                if found is not None and not _first_param_is_optimizer(found[0]):
                    return UNKNOWN
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

    # ------------------------------------------------------------------ classes across modules
    def _base_classes(self, classdef: cst.ClassDef, unit: Unit):
        """(qualified name, None) or (None, ClassRef) of each base: a class of the same module, or a
        qualified name (of the project, or of torch, a library ...), resolved later and lazily."""
        for base in classdef.bases:
            dotted = dotted_name(base.value)
            if dotted is None:
                continue
            local = unit.scope.vars.get(dotted) if "." not in dotted else None
            if isinstance(local, ClassRef):
                yield None, local
                continue
            qualified = unit.imports.resolve(dotted)
            if qualified is not None:
                yield qualified, None

    def _lineage(self, classdef: cst.ClassDef, unit: Unit, depth: int = 0):
        """Qualified names of the ancestors of a class, through classes of this module and, from
        their summaries alone, of its project (bounded: deep or cyclic hierarchies stay unknown)."""
        if depth > 4:
            return
        for qualified, ref in self._base_classes(classdef, unit):
            if ref is not None:
                if ref.classdef is not classdef:
                    yield from self._lineage(ref.classdef, ref.unit or self.home, depth + 1)
                continue
            yield qualified
            if self.project is not None and unit.path is not None:
                yield from self.project.ancestors(qualified, unit.path)

    def _find_method(self, classdef: cst.ClassDef, unit: Unit, name: str, inherited_only: bool = False,
                     depth: int = 0) -> Optional[Tuple[cst.FunctionDef, Unit, cst.ClassDef]]:
        """(method, its module, the class defining it) for ``name`` on ``classdef`` or a base class
        of this module or of the project; None when not found there (a library base, unknown). A
        base of another module is parsed only when its summary shows it (or its bases) has the method."""
        if not inherited_only:
            method = _method(classdef, name)
            if method is not None:
                return method, unit, classdef
        if depth > 4:
            return None
        for qualified, ref in self._base_classes(classdef, unit):
            if ref is None:
                if self.project is None or unit.path is None \
                        or not self.project.class_has_method(qualified, unit.path, name):
                    continue
                value = self._project_value(qualified, unit.path)
                ref = value if isinstance(value, ClassRef) else None
            if ref is not None and ref.classdef is not classdef:
                found = self._find_method(ref.classdef, ref.unit or self.home, name, False, depth + 1)
                if found is not None:
                    return found
        return None

    # ------------------------------------------------------------------ the project
    def _project_value(self, qualname: str, origin: Optional[str], arguments=None) -> Optional[Value]:
        """What a name of another module of the project stands for: a function, a class, or a
        table (``SCHEDULERS = {...}``) of it; None when not followed (unknown, idle, a bound).
        With ``arguments`` (of a call), a function or class is followed only when it is worth it:
        it builds an optimizer or scheduler, it receives one (or something holding one), or it
        steps, writes or saves a parameter that receives an object we cannot see into."""
        if self.project is None or origin is None or qualname.split(".", 1)[0] in ("torch", "typing"):
            return None
        if arguments is not None and not _may_matter(qualname, *arguments):
            return None  # reading the module could not change anything: spare it
        found = self.project.definition(qualname, origin)
        if found is None:
            return None
        module, name, after = found
        summary = module.summary
        if not name or after or not summary.offers(name):
            return None
        if arguments is not None and not summary.constructs(name) \
                and not self._worth_following(summary, name, *arguments):
            return None
        unit = self._unit(module)
        if unit is None:
            return None
        return unit.scope.vars.get(name)

    def _worth_following(self, summary, name: str, positional, keywords) -> bool:
        if any(_holds_tracked(v) for v in list(positional) + list(keywords.values())):
            return True
        facts = summary.functions.get(name)
        offset = 0
        if facts is None:  # a class: what its methods do to what ``__init__`` stores
            cls = summary.classes.get(name)
            facts = cls.methods.get("__init__") if cls is not None else None
            touched_self = cls is not None and any(k.startswith("self.") for m in cls.methods.values()
                                                   for k in m.touches)
            if facts is None or not touched_self:
                return False
            offset = 1
            touched = set(facts.params[offset:])
        else:
            touched = {k for k in facts.touches if "." not in k}
        params = facts.params[offset:]
        for index, value in enumerate(positional):
            if index < len(params) and params[index] in touched and isinstance(value, Opaque):
                return True
        return any(k in touched and isinstance(v, Opaque) for k, v in keywords.items())

    def _unit(self, module) -> Optional[Unit]:
        """The unit of a project module: parsed once, its definitions bound in its own scope."""
        if module.path in self._units:
            return self._units[module.path]
        if module.path == self.home.path:
            self._units[module.path] = self.home
            return self.home
        tree = self.project.tree(module)
        unit = None
        if tree is not None:
            summary = module.summary
            unit = Unit(tree, summary.import_table(), summary.idle_definitions(), module.path, False)
            tables = []
            for stmt in tree.body:
                if isinstance(stmt, cst.FunctionDef):
                    unit.scope.vars[stmt.name.value] = FuncRef(stmt, unit.scope)
                elif isinstance(stmt, cst.ClassDef):
                    unit.scope.vars[stmt.name.value] = _class_ref(stmt, unit)
                elif isinstance(stmt, cst.SimpleStatementLine):
                    tables.extend(small for small in stmt.body if isinstance(small, cst.Assign)
                                  and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name)
                                  and small.targets[0].target.value in summary.tables)
            self._units[module.path] = unit
            # Module-level tables of classes: evaluated without recording anything.
            self._dry += 1
            try:
                for small in tables:
                    unit.scope.vars[small.targets[0].target.value] = self._eval(small.value, unit.scope, Block())
            finally:
                self._dry -= 1
        self._units[module.path] = unit
        return unit

    def _invoke(self, ref: FuncRef, positional, keywords, call, container: Container,
                opaque_params: bool = False) -> Value:
        funcdef = ref.funcdef
        if len(self._stack) >= MAX_DEPTH or any(f is funcdef for f in self._stack):
            self._handoff_args(positional, keywords, call, Scope(None, None, self.home), container)
            return UNKNOWN
        if call is not None and self._is_idle(ref):
            # Mentions nothing we track, nor calls anything that does: following it cannot record an
            # event, and inlining every helper of a large class multiplies the cost.
            return self._memoised(("result", id(call)), lambda: Opaque(f"{funcdef.name.value}()"))
        if call is None:  # an entry point (or a prototype method): a fresh budget
            self._entry_statements = 0
        if not self._dry:
            self.inlined.add(id(funcdef))
        scope = Scope(funcdef, ref.scope)
        scope.ref = ref
        self._bind_params(funcdef, ref, positional, keywords, scope, opaque_params)
        frame = container.add(Frame(call, funcdef, ref.scope.unit.path if not ref.scope.unit.home else None)) \
            if call is not None else container
        self._stack.append(funcdef)
        self._calls.append(call)
        saved_depth, self._arm_depth = self._arm_depth, 0
        try:
            self._exec_body(_suite(funcdef.body), scope, frame)
        finally:
            self._stack.pop()
            self._calls.pop()
            self._arm_depth = saved_depth
        if not scope.returns:
            return NONE
        return union(scope.returns)

    def _bind_params(self, funcdef, ref: FuncRef, positional, keywords, scope: Scope, opaque: bool) -> None:
        params = funcdef.params
        ordered = list(params.posonly_params) + list(params.params)
        decorators = {dotted_name(d.decorator) for d in funcdef.decorators}
        args = list(positional)
        if ref.owner is not None and "staticmethod" not in decorators:
            if ordered:
                first = ordered.pop(0)
                scope.vars[first.name.value] = _class_ref(ref.owner, ref.scope.unit) if "classmethod" in decorators else (
                    ref.bound_self if ref.bound_self is not None else UNKNOWN)
        for index, param in enumerate(ordered):
            name = param.name.value
            if index < len(args):
                scope.vars[name] = args[index]
            elif name in keywords:
                scope.vars[name] = keywords[name]
            elif opaque:
                scope.vars[name] = Opaque(name)
            else:
                scope.vars[name] = UNKNOWN
        for param in params.kwonly_params:
            name = param.name.value
            scope.vars[name] = keywords.get(name, Opaque(name) if opaque else UNKNOWN)
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                scope.vars[star.name.value] = UNKNOWN

    # ------------------------------------------------------------------ helpers
    def _handoff(self, value: Value, node, scope: Scope, container: Container, how: str) -> None:
        for option in _reachable(value):
            if isinstance(option, SchedulerObj):
                self._emit(container, Event("handoff", node, option, None, scope.funcdef, how=how, value=value))

    def _handoff_args(self, positional, keywords, call, scope, container, how: str = "passed") -> None:
        for value in list(positional) + list(keywords.values()):
            self._handoff(value, call, scope, container, how)

    def _memoised(self, key, factory):
        # One object per construction site *and* chain of calls that reached it: ``make_opt(G)`` and
        # ``make_opt(D)`` build two optimizers, while re-running a method (class prototypes) finds
        # the object it built before.
        key = key + tuple(id(c) for c in self._calls)
        obj = self._memo.get(key)
        if obj is None:
            obj = factory()
            self._memo[key] = obj
            self.objects.append(obj)
        return obj

    def _emit(self, container: Container, event: Event) -> None:
        if not self._dry:
            container.add(event)

    def _text(self, node) -> str:
        try:
            return self.module.code_for_node(node)
        except Exception:  # pragma: no cover - defensive: text is only a hint
            return ""


def _class_ref(classdef: cst.ClassDef, unit: Optional[Unit]) -> ClassRef:
    return ClassRef(classdef, None if unit is None or unit.home else unit)


def _unit_of(value, home: Unit) -> Unit:
    """The module a class (ClassRef) or instance (InstanceObj) belongs to."""
    return getattr(value, "unit", None) or home


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


def _holds_tracked(value: Value, depth: int = 0) -> bool:
    """An optimizer, scheduler, scaler, accelerator or param groups, or something holding one."""
    for option in value.options():
        if isinstance(option, (OptimizerObj, SchedulerObj, ScalerObj, AcceleratorObj, ParamGroups, ParamGroup)):
            return True
        if depth < 2:
            if isinstance(option, V.Container) and any(_holds_tracked(i, depth + 1) for i in option.items):
                return True
            if isinstance(option, InstanceObj) and any(_holds_tracked(v, depth + 1) for v in option.attrs.values()):
                return True
    return False


# A call of another module's name is worth reading that module for when it is given something with
# identity (an optimizer, a scheduler, an object we cannot see into) or when its name speaks of
# training; a call with only constants and unknowns (``check_dataset("coco.yaml")``) is not.
_PROJECT_CALL_WORDS = re.compile(r"optim|sched|lr|LR|step|train|fit|epoch|warm|checkpoint|ckpt|save|load|build|"
                                 r"make|create|get_|setup|param|Trainer|Runner|Engine|Solver")


def _may_matter(qualname: str, positional, keywords) -> bool:
    if _PROJECT_CALL_WORDS.search(qualname.rsplit(".", 1)[-1]):
        return True
    return any(isinstance(o, (Obj, ParamGroups, ParamGroup, V.Container)) for v in list(positional) + list(
        keywords.values()) for o in v.options())
