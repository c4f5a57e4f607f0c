"""What names stand for while the interpreter runs code (interpreter.py and its mixins share them).

- ``Scope``: the local names of one running function (or of a module), each with its abstract value
  and, when it was bound by a plain ``name = expr``, the expression it was computed from.
- ``Unit``: a module whose code runs: the checked module (``home``) or a module of its project read to
  follow a call (see project.py); its names resolve through its own imports.
- ``FuncRef`` and ``Qual``: values that refer to code: a function of a unit (with the scope it closes
  over and its bound ``self``), and an imported module, class or function by qualified name.
- ``_Stop``: ends the rest of a block (return, raise, break, continue, a budget spent).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import libcst as cst

from lraudit.analysis.imports import ImportTable
from lraudit.analysis.values import ClassRef, Value


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
    """The local names of one running function (or of a unit's module level), chained to the scope
    the function closes over; ``globals`` are the names a ``global`` statement sends to the unit."""

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
    """Raised to abandon the rest of a block (return, raise, break, continue, a budget spent)."""


def _class_ref(classdef: cst.ClassDef, unit: Optional[Unit]) -> ClassRef:
    return ClassRef(classdef, None if unit is None or unit.home else unit)


def _unit_of(value, home: Unit) -> Unit:
    """The module a class (ClassRef) or instance (InstanceObj) belongs to."""
    return getattr(value, "unit", None) or home
