"""The training-loop model of one module: what the rules query. It knows no rule.

Built once per file: import table -> interpretation of every entry point -> classification of the
recorded ``.step()`` calls once every construction is known (an opaque parameter becomes an optimizer
when a torch scheduler is built on it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from lraudit.analysis.imports import ImportTable, build_import_table
from lraudit.analysis.interpreter import Interpreter
from lraudit.analysis.trace import Arm, Block, Context, Event, Loop, arms_not_shared, exclusive, number
from lraudit.analysis.values import (
    Obj,
    Opaque,
    OptimizerObj,
    ParamGroup,
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
        self.roots: List[Block] = [root for _, root in interpreter.entries]
        for root in self.roots:
            number(root)
            for node in root.walk():
                node.root = root
        objects = interpreter.objects
        self.schedulers: List[SchedulerObj] = [o for o in objects if isinstance(o, SchedulerObj)]
        self.scalers = [o for o in objects if isinstance(o, ScalerObj)]
        self._driven: Dict[int, List[SchedulerObj]] = {}
        for scheduler in self.schedulers:
            for optimizer in self.optimizers_of(scheduler):
                self._driven.setdefault(id(optimizer), []).append(scheduler)
        self.events: List[Event] = [n for root in self.roots for n in root.walk() if isinstance(n, Event)]
        self.optimizer_steps: List[OptimizerStep] = []
        self.scheduler_steps: List[SchedulerStep] = []
        self._classify_steps()

    # ------------------------------------------------------------------ objects
    def optimizers_of(self, scheduler: SchedulerObj) -> List[Obj]:
        """The optimizer objects a scheduler drives (options of its optimizer argument)."""
        return [o for o in known_options(scheduler.optimizer) if isinstance(o, (OptimizerObj, Opaque))]

    def schedulers_driving(self, optimizer: Obj) -> List[SchedulerObj]:
        return self._driven.get(id(optimizer), [])

    def is_optimizer(self, value) -> bool:
        return isinstance(value, OptimizerObj) or (isinstance(value, Opaque) and id(value) in self._driven)

    def constructions(self, obj: Obj) -> List[Event]:
        return [e for e in self.events if e.kind == "construct" and e.target is obj]

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

    def steps_of_scheduler(self, scheduler: SchedulerObj, root: Optional[Block] = None) -> List[Event]:
        return sorted(
            (s.event for s in self.scheduler_steps if s.scheduler is scheduler and (root is None or s.event.root is root)),
            key=lambda e: e.order,
        )

    def steps_of_optimizers(self, optimizers: Iterable[Obj], root: Optional[Block] = None) -> List[Event]:
        wanted = {id(o) for o in optimizers}
        seen: Set[int] = set()
        events = []
        for step in self.optimizer_steps:
            if id(step.optimizer) in wanted and (root is None or step.event.root is root) and id(step.event) not in seen:
                seen.add(id(step.event))
                events.append(step.event)
        return sorted(events, key=lambda e: e.order)

    def lr_writes(self) -> List[Event]:
        return [e for e in self.events if e.kind == "lr_write"]

    # ------------------------------------------------------------------ conditions and loops
    def iteration_dependent(self, arm: Arm) -> bool:
        """Whether an arm's condition may change between iterations (``if epoch > 0``, ``if (i+1) % k``):
        such a guard may be false on the first pass, so the order of first occurrences is unknown."""
        if arm.condition is None:
            return False
        if _has_modulo(arm.condition):
            return True
        loop_names: Set[str] = set()
        for ancestor in arm.ancestors():
            if isinstance(ancestor, Loop):
                loop_names.update(ancestor.targets)
                loop_names.update(ancestor.counters)
        for name in arm.names:
            last = name.rsplit(".", 1)[-1]
            if name in loop_names or last in loop_names or _ITERATION_WORDS.search(last):
                return True
        return False

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
        """Source range of a node. Resolved on first use only: files without findings never pay for it."""
        if self._positions is None:
            wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
            self._positions = wrapper.resolve(PositionProvider)
        return self._positions[node]

    def line(self, node: cst.CSTNode) -> int:
        return self.position(node).start.line


def _has_modulo(node: cst.CSTNode) -> bool:
    found = []

    class _Mod(cst.CSTVisitor):
        def visit_Modulo(self, n) -> None:
            found.append(n)

    node.visit(_Mod())
    return bool(found)


def build_model(module: cst.Module) -> Model:
    imports = build_import_table(module)
    interpreter = Interpreter(module, imports)
    interpreter.run()
    return Model(module, imports, interpreter)
