"""Where a name leads beyond the running scope, a part of the Interpreter (mixed into it in
interpreter.py).

The base classes and ancestors of a class (of the same module, or from the summaries of its project),
the method a class or one of its bases defines, and what a qualified name of another module of the
project stands for (a function, a class, a table of classes), that module parsed on demand as a
``Unit`` of its own (once). The project's summaries (project.py, summaries.py) are asked first, so a
module is read only when following the call could change the trace: it builds an optimizer or
scheduler, receives one, or steps, writes or saves what it is given.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

import libcst as cst

from lraudit.analysis.imports import dotted_name
from lraudit.analysis.nodes import _method
from lraudit.analysis.scopes import FuncRef, Unit, _class_ref
from lraudit.analysis.trace import Block
from lraudit.analysis.values import (
    AcceleratorObj, ClassRef, InstanceObj, Obj, Opaque, OptimizerObj, ParamGroup, ParamGroups, ScalerObj,
    SchedulerObj, Value,
)
from lraudit.analysis import values as V


class DefinitionsMixin:
    """The Interpreter's lookup of methods through base classes and of names of the project; see the
    module docstring."""

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
        if arguments is not None and not self.project.constructs(module, name) \
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
