"""Abstract values the interpreter tracks: objects with identity (an optimizer built at one site, a
scheduler and the optimizer it drives, an instance of a same-module class) and what is derived from
them (param groups, state dicts). Anything else is UNKNOWN: unknown stays unknown.
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import libcst as cst

from lraudit.analysis.known import SchedulerKind


class Value:
    """Base of all abstract values."""

    def options(self) -> Tuple["Value", ...]:
        return (self,)


class _Unknown(Value):
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


class NoneValue(Value):
    """The constant None (``scheduler = None`` before a conditional construction)."""

    def __repr__(self) -> str:
        return "None"


NONE = NoneValue()


class Const(Value):
    """A literal number or string."""

    def __init__(self, value) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Const({self.value!r})"


class Obj(Value):
    """A value with identity. ``site`` is the CST node that created it (or None for opaque ones)."""

    def __init__(self, site: Optional[cst.CSTNode]) -> None:
        self.site = site


class Opaque(Obj):
    """Something whose origin is outside the module (a parameter of an uncalled function, an
    attribute never assigned here). It keeps identity, so ``StepLR(opt)`` and ``opt.step()`` on the
    same opaque ``opt`` are known to concern one object."""

    def __init__(self, label: str) -> None:
        super().__init__(None)
        self.label = label
        self.attrs: Dict[str, Value] = {}

    def __repr__(self) -> str:
        return f"Opaque({self.label})"


class OptimizerObj(Obj):
    def __init__(self, site: cst.CSTNode, qualname: str, groups: Optional[int]) -> None:
        super().__init__(site)
        self.qualname = qualname
        self.base_groups = groups  # number of param groups the constructor shows, else None
        # ``add_param_group`` call sites (a set: re-interpreting a method must not count twice);
        # ``repeated``: one of them runs in a loop, so the exact count is unknown.
        self.added_sites: set = set()
        self.added_repeatedly = False

    @property
    def groups(self) -> Optional[int]:
        """The exact number of param groups, when known."""
        if self.base_groups is None or self.added_repeatedly:
            return None
        return self.base_groups + len(self.added_sites)

    @property
    def min_groups(self) -> int:
        """A lower bound of the number of param groups (an optimizer has at least one)."""
        return (self.base_groups or 1) + len(self.added_sites)

    def __repr__(self) -> str:
        return f"Optimizer({self.qualname})"


class SchedulerObj(Obj):
    def __init__(
        self,
        site: cst.Call,
        qualname: str,
        kind: SchedulerKind,
        optimizer: Value,
        children: Tuple[Value, ...] = (),
    ) -> None:
        super().__init__(site)
        self.qualname = qualname
        self.kind = kind
        self.optimizer = optimizer
        self.children = children  # schedulers composed by SequentialLR / ChainedScheduler
        self.parent: Optional["SchedulerObj"] = None
        self.subclass: Optional[str] = None  # the project's own class name, for a subclass of ``qualname``

    @property
    def cls(self) -> Optional[str]:
        return self.kind.cls

    def __repr__(self) -> str:
        return f"Scheduler({self.qualname})"


class ScalerObj(Obj):
    def __repr__(self) -> str:
        return "GradScaler"


class AcceleratorObj(Obj):
    def __repr__(self) -> str:
        return "Accelerator"


class InstanceObj(Obj):
    """An instance of a class defined in the module; methods are interpreted with ``self`` = it."""

    def __init__(self, site: Optional[cst.CSTNode], classdef: cst.ClassDef, unit=None) -> None:
        super().__init__(site)
        self.classdef = classdef
        self.unit = unit  # the module the class is defined in (None: the checked module)
        self.attrs: Dict[str, Value] = {}

    def __repr__(self) -> str:
        return f"Instance({self.classdef.name.value})"


ALL = "all"


class ParamGroups(Value):
    """``opt.param_groups`` or a slice of it. ``indices`` is ALL or a frozenset of ints; None: unknown subset."""

    def __init__(self, optimizer: Value, indices) -> None:
        self.optimizer = optimizer
        self.indices = indices

    def __repr__(self) -> str:
        return f"ParamGroups({self.optimizer}, {self.indices})"


class ParamGroup(Value):
    """One element of ``opt.param_groups`` (the loop variable over them, or ``param_groups[i]``)."""

    def __init__(self, optimizer: Value, indices) -> None:
        self.optimizer = optimizer
        self.indices = indices  # ALL when it ranges over every group, a frozenset, or None

    def __repr__(self) -> str:
        return f"ParamGroup({self.optimizer}, {self.indices})"


class StateDict(Value):
    """``obj.state_dict()`` of a tracked object."""

    def __init__(self, owner: Value) -> None:
        self.owner = owner


class Container(Value):
    """A literal tuple/list/dict (or the tuple returned by ``accelerator.prepare``). A dict's items
    follow ``d["key"] = value`` (statements.py), as the dict object itself would."""

    def __init__(self, items: Iterable[Value], keys: Optional[List[Optional[str]]] = None,
                 site: Optional[cst.CSTNode] = None) -> None:
        self.items: Tuple[Value, ...] = tuple(items)
        self.keys = keys  # for dicts: the literal string keys (None where not a literal)
        self.site = site  # the dict literal it was built from, if any


class ClassRef(Value):
    def __init__(self, classdef: cst.ClassDef, unit=None) -> None:
        self.classdef = classdef
        self.unit = unit  # the module the class is defined in (None: the checked module)


class Union_(Value):
    """One of several values (assigned in different branches)."""

    def __init__(self, options: Tuple[Value, ...]) -> None:
        self._options = options

    def options(self) -> Tuple[Value, ...]:
        return self._options

    def __repr__(self) -> str:
        return "Union(" + ", ".join(map(repr, self._options)) + ")"


def union(values: Iterable[Value]) -> Value:
    """The join of several values: flattened, deduplicated by identity, UNKNOWN kept as an option."""
    seen: List[Value] = []
    for value in values:
        for option in value.options():
            if not any(option is s for s in seen):
                seen.append(option)
    if not seen:
        return UNKNOWN
    if len(seen) == 1:
        return seen[0]
    return Union_(tuple(seen))


def known_options(value: Value) -> Tuple[Value, ...]:
    """The options of a value other than None (a conditional ``x = None`` does not step anything)."""
    return tuple(o for o in value.options() if not isinstance(o, NoneValue))


def only(value: Value, kind) -> Tuple:
    """The options of ``value`` when every non-None option is of ``kind``, else ()."""
    options = known_options(value)
    if options and all(isinstance(o, kind) for o in options):
        return options
    return ()


def some(value: Value, kind) -> Iterator:
    """The options of ``value`` that are of ``kind``."""
    return (o for o in value.options() if isinstance(o, kind))
