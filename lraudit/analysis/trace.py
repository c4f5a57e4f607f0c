"""The execution trace of one entry point: events in execution order inside the loops, branches and
contexts that enclose them, with calls into same-module functions inlined.

Positions: every node gets a pre-order index (``order``), which is the order of the *first*
iteration of every loop (loops are treated as running at least once).
"""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple

import libcst as cst

from lraudit.analysis.values import Value


def _resolved(text) -> str:
    """Source texts are rendered only when a rule asks (code generation is not free): the
    interpreter stores a callable producing the text, replaced by the text on first use."""
    return text() if callable(text) else text


class TraceNode:
    parent: Optional["Container"] = None
    order: int = 0

    def ancestors(self) -> Iterator["Container"]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class Container(TraceNode):
    def __init__(self) -> None:
        self.children: List[TraceNode] = []

    def add(self, child: TraceNode) -> TraceNode:
        child.parent = self
        self.children.append(child)
        return child

    def walk(self) -> Iterator[TraceNode]:
        """Every node below, in pre-order (an explicit stack: nested generators would cost the
        depth on every node of a deep trace, hundreds of ``elif`` arms)."""
        stack = [iter(self.children)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            yield child
            if isinstance(child, Container):
                stack.append(iter(child.children))


class Block(Container):
    """A sequence (the body of an entry point)."""


class Loop(Container):
    def __init__(self, node: cst.CSTNode, iter_text: str, targets: Tuple[str, ...]) -> None:
        super().__init__()
        self.node = node
        self._iter_text = iter_text  # the iterated expression (for) or condition (while), as code
        self.targets = targets  # names bound by the loop header
        self.counters: set = set()  # names incremented inside the body (global_step += 1)
        self.over_param_groups = False  # ``for g in opt.param_groups`` (or enumerate of it)
        # id of each Name read in the header -> the expression it was last assigned from
        # (``train_iterator = trange(num_epochs)``; ``for _ in train_iterator``)
        self.origins: dict = {}

    @property
    def iter_text(self) -> str:
        self._iter_text = _resolved(self._iter_text)
        return self._iter_text

    @property
    def is_while(self) -> bool:
        return isinstance(self.node, cst.While)


class Arm(Container):
    """One arm of a branch: taken when ``condition`` is ``polarity``. ``branch`` groups the arms of
    one if/elif/else (or try/except) so that two arms of one branch are known to be exclusive."""

    def __init__(self, branch: object, condition: Optional[cst.BaseExpression], polarity: bool,
                 condition_text: str, names: frozenset) -> None:
        super().__init__()
        self.branch = branch
        self.condition = condition
        self.polarity = polarity
        self._condition_text = condition_text
        self.names = names  # dotted names the condition mentions

    @property
    def condition_text(self) -> str:
        self._condition_text = _resolved(self._condition_text)
        return self._condition_text


class Context(Container):
    """The body of a ``with`` statement; ``qualnames`` holds what its items resolve to."""

    def __init__(self, node: cst.With, item_texts: Tuple[str, ...], accumulate: bool) -> None:
        super().__init__()
        self.node = node
        self.item_texts = item_texts
        self.accumulate = accumulate  # ``with accelerator.accumulate(...)``


class Frame(Container):
    """An inlined call of a function or method of the same module, or of another module of the
    project (``module``: that module's path; None for the checked module)."""

    def __init__(self, call: cst.Call, funcdef: cst.FunctionDef, module: Optional[str] = None) -> None:
        super().__init__()
        self.call = call
        self.funcdef = funcdef
        self.module = module


class Event(TraceNode):
    """Something the rules care about.

    kinds: ``step`` (a ``.step(...)`` call; what it steps is decided by the model once every
    construction is known), ``scaler_step`` (``x.step(opt)``), ``construct`` (optimizer/scheduler;
    for schedulers ``origins``: id of each Name read in the call -> the expression it was last
    assigned from, transitively),
    ``lr_write``, ``get_lr``, ``handoff`` (a scheduler returned or passed to a call; ``value``: what
    was handed on, e.g. the dict returned to Lightning), ``save`` (``torch.save`` and friends),
    ``load_state``, ``state_dict`` (``x.state_dict()`` of an optimizer or scheduler),
    ``add_param_group`` (``x.add_param_group(...)``; ``target``: the receiver), ``reposition``
    (``x.last_epoch = ...``; ``node``: the assignment, ``target``: ``x``).
    """

    def __init__(self, kind: str, node: cst.CSTNode, target: Value, call: Optional[cst.Call] = None,
                 funcdef: Optional[cst.FunctionDef] = None, **data) -> None:
        self.kind = kind
        self.node = node
        self.target = target
        self.call = call
        self.funcdef = funcdef  # the function the event is written in (None: module level)
        self.data = data

    def __repr__(self) -> str:
        return f"Event({self.kind}, {self.target!r}, #{self.order})"

    def loops(self) -> List[Loop]:
        return [a for a in self.ancestors() if isinstance(a, Loop)]

    def arms(self) -> List[Arm]:
        return [a for a in self.ancestors() if isinstance(a, Arm)]


def number(root: Container) -> None:
    """Assign pre-order indices (first-iteration execution order)."""
    for index, node in enumerate(root.walk(), start=1):
        node.order = index


def exclusive(a: TraceNode, b: TraceNode) -> bool:
    """True when a and b sit in different arms of one branch: they never both run in one pass."""
    arms_a = {id(x.branch): x for x in a.ancestors() if isinstance(x, Arm)}
    for arm in b.ancestors():
        if isinstance(arm, Arm):
            other = arms_a.get(id(arm.branch))
            if other is not None and other is not arm:
                return True
    return False


def common_ancestors(a: TraceNode, b: TraceNode) -> List[Container]:
    mine = {id(x) for x in a.ancestors()}
    return [x for x in b.ancestors() if id(x) in mine]


def arms_not_shared(a: TraceNode, b: TraceNode) -> List[Arm]:
    """The arms guarding ``a`` that do not also guard ``b``."""
    shared = {id(x) for x in b.ancestors()}
    return [x for x in a.ancestors() if isinstance(x, Arm) and id(x) not in shared]


def _nearest(node: TraceNode, kind: type, key: str) -> Any:
    """The nearest enclosing ``kind``, remembered on the node under ``key`` (a node's ancestors never
    change once it is in the trace, and rules ask this for every pair of steps)."""
    cached = node.__dict__.get(key, _UNSET)
    if cached is not _UNSET:
        return cached
    found = None
    for a in node.ancestors():
        if isinstance(a, kind):
            found = a
            break
    node.__dict__[key] = found
    return found


def innermost_loop(node: TraceNode) -> Optional[Loop]:
    """The nearest enclosing loop."""
    return _nearest(node, Loop, "_innermost_loop")


def nearest_arm(node: TraceNode) -> Optional["Arm"]:
    """The nearest enclosing arm. Two nodes guarded by exactly the same arms have the same nearest arm,
    and are then never exclusive."""
    return _nearest(node, Arm, "_nearest_arm")


_UNSET = object()
