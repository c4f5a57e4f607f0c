"""Abstract interpretation of one module: walks every entry point in execution order, inlines calls
into same-module functions and methods (binding arguments to parameters), tracks which names and
attributes hold which optimizer/scheduler, and records events into a trace (see trace.py).

Loops run once (the first iteration is what ordering rules need); both arms of a branch run, each on
its own copy of the local names, merged after; dead branches (``if False:``, ``if TYPE_CHECKING:``)
and docstrings are not code. Anything the interpreter cannot follow becomes UNKNOWN.

This module holds the driver: the entry points (module body, then functions and methods nobody
calls, then nested functions), class prototypes, running one function body with its arguments bound
(``_invoke``), the budgets, and what is recorded (objects, memoised per construction site, and
events). The rest of the Interpreter is mixed in, one job a module: statements.py (statements,
branches, loops, assignment), expressions.py (values of expressions), calls.py (where a call leads:
functions, methods, ``super()``, classes), library_calls.py (torch, frameworks, unknown calls),
definitions.py (methods through base classes, names of other modules of the project); scopes.py
holds what names stand for (Scope, Unit, FuncRef, Qual).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import libcst as cst

from lraudit.analysis.calls import CallsMixin
from lraudit.analysis.definitions import DefinitionsMixin
from lraudit.analysis.expressions import ExpressionsMixin
from lraudit.analysis.guards import GuardsMixin
from lraudit.analysis.imports import ImportTable, dotted_name
from lraudit.analysis.library_calls import LibraryCallsMixin
from lraudit.analysis.nodes import _called_names, _is_docstring, _reachable, _suite
from lraudit.analysis.scopes import FuncRef, Scope, Unit, _class_ref, _Stop
from lraudit.analysis.statements import StatementsMixin
from lraudit.analysis.trace import Block, Container, Event, Frame
from lraudit.analysis.values import NONE, UNKNOWN, ClassRef, InstanceObj, Obj, Opaque, SchedulerObj, Value, union

MAX_DEPTH = 8  # nested inlined calls
# Bounds on the cost of pathological files (a large class whose methods call each other, inlined
# from every entry point). A module that exceeds one is *exhausted*: its trace is incomplete, so
# rules that reason from absence (a scheduler never stepped) could be wrong, and it reports nothing.
# Real training scripts stay far below: an ImageNet-style main() with its helpers runs ~200.
MAX_STATEMENTS = 30_000  # per module
MAX_ENTRY_STATEMENTS = 5_000  # per entry point


class Interpreter(StatementsMixin, ExpressionsMixin, CallsMixin, LibraryCallsMixin, DefinitionsMixin, GuardsMixin):
    """Runs one module (``run``) and holds what it found: ``entries`` (name, trace root) per entry
    point, ``objects`` built, ``inlined`` functions, ``exhausted`` when a budget was spent. The
    mixins hold its other parts and share this state."""

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
        self._guards = []  # isinstance guards of the arms being run (guards.py)

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

    # ------------------------------------------------------------------ running code, within the budgets
    def _exec_statements(self, statements, scope: Scope, container: Container) -> None:
        # Every block of every part runs through here (statements.py's walking included): the one
        # place where statements are counted against the budgets above.
        for index, stmt in enumerate(statements):
            if index == 0 and _is_docstring(stmt):
                continue
            self._statements += 1
            self._entry_statements += 1
            if self._statements > MAX_STATEMENTS or self._entry_statements > MAX_ENTRY_STATEMENTS:
                self.exhausted = True
                raise _Stop()
            self._exec(stmt, scope, container)

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

    def _is_idle(self, ref: FuncRef) -> bool:
        unit = ref.scope.unit
        if not unit.idle or (ref.owner is None and ref.scope is not unit.scope):
            return False  # nested functions are not in the prescan's table
        return (ref.owner.name.value if ref.owner is not None else None, ref.funcdef.name.value) in unit.idle

    # ------------------------------------------------------------------ what is recorded
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
