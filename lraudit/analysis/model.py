"""The training-loop model of one module: what the rules query. It knows no rule.

Built once per file: import table -> interpretation of every entry point -> classification of the
recorded ``.step()`` calls once every construction is known (an opaque parameter becomes an optimizer
when a torch scheduler is built on it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from lraudit.analysis.budget import WorkBudget
from lraudit.analysis.imports import ImportTable, build_import_table, dotted_name
from lraudit.analysis.interpreter import Interpreter
from lraudit.analysis.nodes import _expression_children
from lraudit.analysis.prescan import Prescan
from lraudit.analysis.trace import Arm, Block, Context, Event, Frame, Loop, arms_not_shared, exclusive, number
from lraudit.analysis.values import (
    Obj,
    Opaque,
    OptimizerObj,
    ScalerObj,
    SchedulerObj,
    known_options,
    only,
)

# Names whose value changes from one iteration to the next (a condition on them may be false at first).
_ITERATION_WORDS = re.compile(
    r"(^|_)(step|steps|iter|iters|iteration|iterations|epoch|epochs|it|idx|index|batch_idx|n_iter|"
    r"global_step|num_updates|updates|count|counter|accum\w*)$",
    re.IGNORECASE,
)


# Objects that hold the run's configuration: their attributes do not change between iterations.
_SETTINGS = frozenset({"args", "opt", "opts", "cfg", "config", "conf", "hparams", "hp", "hyp", "FLAGS", "flags",
                       "settings", "options", "training_args", "train_args"})


@dataclass
class OptimizerStep:
    event: Event
    optimizer: Obj


@dataclass
class SchedulerStep:
    event: Event
    scheduler: SchedulerObj


class Model:
    def __init__(self, module: cst.Module, imports: ImportTable, interpreter: Interpreter) -> None:
        self.module = module
        self.imports = imports
        self._positions = None
        self._constructions: Optional[Dict[int, List[Event]]] = None
        self._scheduler_steps_index: Optional[tuple] = None
        self._optimizer_steps_index: Optional[tuple] = None
        self._events_by_kind: Optional[Dict[str, List[Event]]] = None
        self._touching: Optional[Dict[int, List[Event]]] = None
        self._iteration_dependent: Dict[int, bool] = {}
        self._loop_names: Dict[int, FrozenSet[str]] = {}
        self.budget = WorkBudget()  # what the rules may spend on what is not linear (pairs)
        self.exhausted = interpreter.exhausted  # the interpreter hit its budget: the trace is incomplete
        self._syntax_index: Optional[_SyntaxIndex] = None
        self._assigned: Dict[cst.CSTNode, Set[str]] = {}
        self._frames = None  # (callees per call, callers per function), built on first use
        self.roots: List[Block] = [root for _, root in interpreter.entries]
        # Modules of the project whose code the trace went into (path -> unit), and for each of
        # their functions entered from this module, the call here that entered it (first one).
        self.home_path = interpreter.home.path
        self.units = {path: unit for path, unit in interpreter._units.items() if unit is not None and not unit.home}
        self._entered_from: Dict[int, Tuple[cst.Call, str]] = {}  # funcdef -> (call here, module entered)
        self._foreign_syntax: Dict[str, "_SyntaxIndex"] = {}
        self._foreign_positions: Dict[str, object] = {}
        for root in self.roots:
            number(root)
            for node in root.walk():
                node.root = root
            if self.units:
                self._map_foreign_frames(root)
        objects = interpreter.objects
        self.schedulers: List[SchedulerObj] = [o for o in objects if isinstance(o, SchedulerObj)]
        self.scalers = [o for o in objects if isinstance(o, ScalerObj)]
        self._driven: Dict[int, List[SchedulerObj]] = {}
        for scheduler in self.schedulers:
            for optimizer in self.optimizers_of(scheduler):
                self._driven.setdefault(id(optimizer), []).append(scheduler)
        self.events: List[Event] = [n for root in self.roots for n in root.walk() if isinstance(n, Event)]
        self.optimizer_steps: List[OptimizerStep] = []
        self.external_steps: List[OptimizerStep] = []
        self.scheduler_steps: List[SchedulerStep] = []
        self._classify_steps()

    def spend(self, units: int, what: str = "rules") -> None:
        """Count work that is not linear in the module; raises BudgetExceeded past the bound."""
        self.budget.spend(units, what)

    # ------------------------------------------------------------------ objects
    def optimizers_of(self, scheduler: SchedulerObj) -> List[Obj]:
        """The optimizer objects a scheduler drives (options of its optimizer argument)."""
        return [o for o in known_options(scheduler.optimizer) if isinstance(o, (OptimizerObj, Opaque))]

    def schedulers_driving(self, optimizer: Obj) -> List[SchedulerObj]:
        return self._driven.get(id(optimizer), [])

    def is_optimizer(self, value) -> bool:
        return isinstance(value, OptimizerObj) or (isinstance(value, Opaque) and id(value) in self._driven)

    def constructions(self, obj: Obj) -> List[Event]:
        """The construction events of an object (rules ask per write and per pair: indexed once)."""
        if self._constructions is None:
            self._constructions = {}
            for event in self.events:
                if event.kind == "construct":
                    self._constructions.setdefault(id(event.target), []).append(event)
        return self._constructions.get(id(obj), [])

    def _classify_steps(self) -> None:
        for event in self.events:
            if event.kind == "step":
                options = known_options(event.target)
                schedulers = only(event.target, SchedulerObj)
                if schedulers:
                    self.scheduler_steps.extend(SchedulerStep(event, s) for s in schedulers)
                elif options and all(self.is_optimizer(o) for o in options):
                    self.optimizer_steps.extend(OptimizerStep(event, o) for o in options)
            elif event.kind == "scaler_step":
                via = known_options(event.data.get("via"))
                if any(isinstance(o, (SchedulerObj, OptimizerObj)) for o in via):
                    continue
                options = known_options(event.target)
                if options and all(self.is_optimizer(o) for o in options):
                    self.optimizer_steps.extend(OptimizerStep(event, o) for o in options)
            elif event.kind == "train_call":
                # A training helper of another module given the optimizer: it probably steps it.
                # Kept apart from the steps we saw, for the rules that only need "may step here".
                for item in event.target.items:
                    self.external_steps.extend(OptimizerStep(event, o) for o in known_options(item)
                                               if self.is_optimizer(o))

    def steps_of_scheduler(self, scheduler: SchedulerObj, root: Optional[Block] = None) -> List[Event]:
        """The steps of one scheduler in execution order (of one entry point's trace when ``root``).

        Rules ask this per scheduler and per pair of schedulers: indexed once, by scheduler and by
        (scheduler, root), so that a module of many schedulers stays linear in its events."""
        if self._scheduler_steps_index is None:
            by_scheduler: Dict[int, List[Event]] = {}
            by_root: Dict[tuple, List[Event]] = {}
            for step in sorted(self.scheduler_steps, key=lambda s: s.event.order):
                by_scheduler.setdefault(id(step.scheduler), []).append(step.event)
                by_root.setdefault((id(step.scheduler), id(step.event.root)), []).append(step.event)
            self._scheduler_steps_index = (by_scheduler, by_root)
        by_scheduler, by_root = self._scheduler_steps_index
        found = by_scheduler.get(id(scheduler)) if root is None else by_root.get((id(scheduler), id(root)))
        return list(found or ())

    def roots_stepping(self, scheduler: SchedulerObj) -> List[Block]:
        """The entry points whose trace steps ``scheduler`` (in the order of their first such step)."""
        roots: List[Block] = []
        for event in self.steps_of_scheduler(scheduler):
            if not any(r is event.root for r in roots):
                roots.append(event.root)
        return roots

    def steps_of_optimizers(self, optimizers: Iterable[Obj], root: Optional[Block] = None,
                            include_external: bool = False) -> List[Event]:
        """Optimizer steps of these optimizers in execution order; ``include_external`` adds calls of
        other modules' training helpers that receive one of them (``train_call`` events). Indexed by
        optimizer on first use (asked per construction, per scheduler and per write)."""
        if self._optimizer_steps_index is None:
            own: Dict[int, List[OptimizerStep]] = {}
            external: Dict[int, List[OptimizerStep]] = {}
            for step in self.optimizer_steps:
                own.setdefault(id(step.optimizer), []).append(step)
            for step in self.external_steps:
                external.setdefault(id(step.optimizer), []).append(step)
            self._optimizer_steps_index = (own, external)
        own, external = self._optimizer_steps_index
        seen: Set[int] = set()
        events = []
        for optimizer in optimizers:
            steps = own.get(id(optimizer), [])
            if include_external:
                steps = steps + external.get(id(optimizer), [])
            for step in steps:
                if (root is None or step.event.root is root) and id(step.event) not in seen:
                    seen.add(id(step.event))
                    events.append(step.event)
        return sorted(events, key=lambda e: e.order)

    def steps_touching(self, obj: Obj) -> List[Event]:
        """Every ``.step()`` whose receiver may be ``obj`` (also among other options), and every
        ``x.step(obj)`` wrapper call, in trace order. Asked per scheduler: indexed once."""
        if self._touching is None:
            self._touching = {}
            for event in self.events:
                if event.kind == "step":
                    options = event.target.options()
                elif event.kind == "scaler_step":
                    options = event.data.get("via").options()
                else:
                    continue
                for option in options:
                    found = self._touching.setdefault(id(option), [])
                    if not found or found[-1] is not event:
                        found.append(event)
        return list(self._touching.get(id(obj), ()))

    def events_of_kind(self, kind: str) -> List[Event]:
        """The events of one kind (``"lr_write"``, ``"handoff"``, ...), in trace order; indexed once."""
        if self._events_by_kind is None:
            self._events_by_kind = {}
            for event in self.events:
                self._events_by_kind.setdefault(event.kind, []).append(event)
        return self._events_by_kind.get(kind, [])

    def lr_writes(self) -> List[Event]:
        return list(self.events_of_kind("lr_write"))

    # ------------------------------------------------------------------ conditions and loops
    def iteration_dependent(self, arm: Arm) -> bool:
        """Whether an arm's condition may change between iterations (``if epoch > 0``, ``if (i+1) % k``):
        such a guard may be false on the first pass, so the order of first occurrences is unknown.
        Asked for every arm above every step: memoised per arm."""
        known = self._iteration_dependent.get(id(arm))
        if known is None:
            known = self._iteration_dependent[id(arm)] = self._compute_iteration_dependent(arm)
        return known

    def _compute_iteration_dependent(self, arm: Arm) -> bool:
        if arm.condition is None:
            return False
        if _has_modulo(arm.condition):
            return True
        loop_names = self._loop_names_above(arm)
        for name in arm.names:
            head, _, _ = name.partition(".")
            last = name.rsplit(".", 1)[-1]
            if name in loop_names or last in loop_names:
                return True
            # ``args.warmup_epochs`` is a setting fixed for the run, whatever its name says.
            if head not in _SETTINGS and _ITERATION_WORDS.search(last):
                return True
        return False

    def _loop_names_above(self, node) -> FrozenSet[str]:
        """Targets and counters of the loops enclosing ``node``, memoised per container (a chain of
        hundreds of ``elif`` arms would otherwise walk its ancestors once per arm)."""
        missing = []
        container = node.parent
        while container is not None and id(container) not in self._loop_names:
            missing.append(container)
            container = container.parent
        names = self._loop_names.get(id(container), frozenset()) if container is not None else frozenset()
        for container in reversed(missing):
            if isinstance(container, Loop):
                names = names | frozenset(container.targets) | frozenset(container.counters)
            self._loop_names[id(container)] = names
        return names

    def accumulation_guard(self, arm: Arm) -> bool:
        """A gradient-accumulation condition: ``(i + 1) % k == 0`` or a name about accumulation."""
        if arm.condition is None:
            return False
        return _has_modulo(arm.condition) or any("accum" in n.lower() for n in arm.names)

    def in_accumulate_context(self, event: Event) -> bool:
        return any(isinstance(a, Context) and a.accumulate for a in event.ancestors())

    def iteration_guards(self, event: Event, relative_to: Event) -> List[Arm]:
        """Iteration-dependent arms guarding ``event`` that do not also guard ``relative_to``."""
        return [a for a in arms_not_shared(event, relative_to) if self.iteration_dependent(a)]

    def certainly_before(self, first: Event, second: Event) -> bool:
        """``first`` runs before ``second`` on the first pass whenever ``second`` runs."""
        return (
            first.root is second.root
            and first.order < second.order
            and not exclusive(first, second)
            and not self.iteration_guards(first, second)
        )

    # ------------------------------------------------------------------ source text and positions
    def text(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def position(self, node: cst.CSTNode) -> CodeRange:
        """Source range of a node. Resolved on first use only: files without findings never pay for it.
        A node of another module of the project is located at the call here that led to it."""
        positions = self._positions_of_home()
        found = positions.get(node)
        if found is None and self.units:
            home = self.home_node(node)
            if home is not None and home is not node:
                return positions[home]
        return positions[node]

    def line(self, node: cst.CSTNode) -> int:
        return self.position(node).start.line

    # ------------------------------------------------------------------ the project's other modules
    def _map_foreign_frames(self, root: Block) -> None:
        stack = [(child, None) for child in reversed(root.children)]
        while stack:
            node, entered_by = stack.pop()
            if isinstance(node, Frame):
                if node.module is not None:  # code of another module, entered from here
                    entered_by = entered_by if entered_by is not None else (node.call, node.module)
                    self._entered_from.setdefault(id(node.funcdef), entered_by)
            if hasattr(node, "children"):
                stack.extend((child, entered_by) for child in reversed(node.children))

    def module_of(self, node: cst.CSTNode) -> Optional[str]:
        """The path of the other module of the project a node belongs to; None for the checked
        module (or a node of no module the trace entered)."""
        if not self.units or self._positions_of_home().get(node) is not None:
            return None
        for path in self.units:
            if node in self._foreign_index(path).parents:
                return path
        return None

    def home_node(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        """``node`` when it is code of the checked module; for code of another module of the project,
        the call in the checked module through which the trace entered it; None when unknown."""
        if self.module_of(node) is None:
            return node
        entered = self._entry_of(node)
        return entered[0] if entered is not None else None

    def entered_module(self, node: cst.CSTNode) -> Optional[str]:
        """For code of another module: the module the trace entered first on its way there (the one
        whose own analysis would see the same thing); None for the checked module or unknown."""
        if self.module_of(node) is None:
            return None
        entered = self._entry_of(node)
        return entered[1] if entered is not None else None

    def _entry_of(self, node: cst.CSTNode) -> Optional[Tuple[cst.Call, str]]:
        index = self._foreign_index(self.module_of(node))
        current: Optional[cst.CSTNode] = node
        while current is not None:
            if isinstance(current, cst.FunctionDef) and id(current) in self._entered_from:
                return self._entered_from[id(current)]
            current = index.parents.get(current)
        return None

    def foreign_location(self, node: cst.CSTNode) -> Optional[Tuple[str, int]]:
        """(path, line) of a node of another module of the project; None for the checked module."""
        path = self.module_of(node)
        if path is None:
            return None
        positions = self._foreign_positions.get(path)
        if positions is None:
            wrapper = MetadataWrapper(self.units[path].module, unsafe_skip_copy=True)
            positions = self._foreign_positions[path] = wrapper.resolve(PositionProvider)
        return path, positions[node].start.line

    def _positions_of_home(self):
        if self._positions is None:
            wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
            self._positions = wrapper.resolve(PositionProvider)
        return self._positions

    def _foreign_index(self, path: str) -> "_SyntaxIndex":
        index = self._foreign_syntax.get(path)
        if index is None:
            index = self._foreign_syntax[path] = _SyntaxIndex()
            self.units[path].module.visit(index)
        return index

    # ------------------------------------------------------------------ syntax questions (lazy)
    def parent(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        """The syntactic parent of a node of the module, or of a module of the project the trace
        entered (None for a module itself)."""
        found = self._syntax().parents.get(node)
        if found is None and self.units:
            for path in self.units:
                found = self._foreign_index(path).parents.get(node)
                if found is not None:
                    break
        return found


    def enclosing(self, node: cst.CSTNode, kind: Any) -> Optional[cst.CSTNode]:
        """The nearest syntactic ancestor of ``node`` of type ``kind`` (a class or a tuple of them)."""
        parent = self.parent(node)
        while parent is not None and not isinstance(parent, kind):
            parent = self.parent(parent)
        return parent

    def mentions(self, identifier: str) -> List[cst.CSTNode]:
        """Every reference to ``identifier`` in the module, scope-blind: ``Name`` nodes spelled so and
        ``Attribute`` nodes whose attribute is so spelled (``self.scheduler``); not definitions,
        keyword-argument names or imports. Used to prove the *absence* of other uses, so the modules
        of the project the trace entered are searched too (their code ran as part of this one)."""
        found = self._syntax().mentions.get(identifier, [])
        if self.units:
            found = found + [m for path in self.units for m in self._foreign_index(path).mentions.get(identifier, [])]
        return found

    def assigned_names(self, node: cst.CSTNode) -> Set[str]:
        """Dotted names bound anywhere inside ``node`` (assignment, augmented assignment, ``for`` and
        ``with ... as`` targets, walrus; parameters when ``node`` is a function)."""
        cached = self._assigned.get(node)
        if cached is None:
            collector = _Assigned()
            node.visit(collector)
            cached = self._assigned[node] = collector.names
        return cached

    def inlined(self, call: cst.Call) -> List[cst.FunctionDef]:
        """The same-module functions the interpreter entered from ``call`` (empty: not followed)."""
        return self._calls()[0].get(call, [])

    def callers(self, funcdef: cst.FunctionDef) -> List[cst.Call]:
        """The calls from which the interpreter entered ``funcdef`` (empty: only run as an entry)."""
        return self._calls()[1].get(funcdef, [])

    def _calls(self):
        if self._frames is None:
            callees: Dict[cst.CSTNode, List[cst.FunctionDef]] = {}
            callers: Dict[cst.CSTNode, List[cst.Call]] = {}
            for root in self.roots:
                for node in root.walk():
                    if isinstance(node, Frame) and node.call is not None:
                        found = callees.setdefault(node.call, [])
                        if not any(f is node.funcdef for f in found):
                            found.append(node.funcdef)
                        calls = callers.setdefault(node.funcdef, [])
                        if not any(c is node.call for c in calls):
                            calls.append(node.call)
            self._frames = (callees, callers)
        return self._frames

    def _syntax(self) -> "_SyntaxIndex":
        if self._syntax_index is None:
            self._syntax_index = _SyntaxIndex()
            self.module.visit(self._syntax_index)
        return self._syntax_index


class _SyntaxIndex(cst.CSTVisitor):
    """Parents and identifier references of a module, built in one pass when first asked."""

    def __init__(self) -> None:
        self.parents: Dict[cst.CSTNode, cst.CSTNode] = {}
        self.mentions: Dict[str, List[cst.CSTNode]] = {}
        self._stack: List[cst.CSTNode] = []
        self._not_references: Set[int] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._stack:
            self.parents[node] = self._stack[-1]
        self._stack.append(node)
        if isinstance(node, cst.Attribute):
            self._not_references.add(id(node.attr))
            self.mentions.setdefault(node.attr.value, []).append(node)
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Param)):
            self._not_references.add(id(node.name))
        elif isinstance(node, cst.Arg) and node.keyword is not None:
            self._not_references.add(id(node.keyword))
        elif isinstance(node, (cst.Import, cst.ImportFrom)):
            return False
        elif isinstance(node, cst.Name) and id(node) not in self._not_references:
            self.mentions.setdefault(node.value, []).append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self._stack.pop()


class _Assigned(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: Set[str] = set()

    def _add(self, target) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._add(element.value)
        elif isinstance(target, cst.StarredElement):
            self._add(target.value)
        else:
            name = dotted_name(target)
            if name:
                self.names.add(name)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._add(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._add(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._add(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._add(node.target)

    def visit_AsName(self, node: cst.AsName) -> None:
        self._add(node.name)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._add(node.target)

    def visit_Param(self, node: cst.Param) -> None:
        self.names.add(node.name.value)


def _has_modulo(node: cst.CSTNode) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, cst.Modulo):
            return True
        stack.extend(_expression_children(current))
    return False


def build_model(module: cst.Module, prescan: Optional[Prescan] = None, project=None,
                path: Optional[str] = None) -> Model:
    """The model of a parsed module; ``prescan`` (from ``ast``) saves two passes over the libcst tree;
    ``project`` (project.Project) lets calls into other modules of the project be followed, from the
    module at ``path``."""
    imports = prescan.imports if prescan is not None else build_import_table(module)
    interpreter = Interpreter(module, imports, prescan.called if prescan is not None else None,
                              prescan.idle if prescan is not None else frozenset(), project=project,
                              path=path if path is not None else (project.home if project is not None else None))
    interpreter.run()
    return Model(module, imports, interpreter)
