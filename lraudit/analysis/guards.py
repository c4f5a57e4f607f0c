"""``isinstance`` guards that type a value inside the branch they guard, a part of the Interpreter.

``if isinstance(self.trainer.lr_scheduler, ReduceLROnPlateau): self.trainer.lr_scheduler.step()``:
inside the true branch the object is a ReduceLROnPlateau, whatever the analysis knew of it before.
Only what is plain is used: the positive branch of a bare ``isinstance(subject, C)`` (or a tuple of
classes that are all the same torch scheduler class), where ``subject`` is a name or a dotted
attribute path and ``C`` resolves to a known torch scheduler class. A negated test, an ``else``
branch, a test combined with ``and``/``or``, or a project class (whose semantics are its own) types
nothing. A step is typed only when it is written on the same subject, in the same function run,
the subject not assigned in between, and still evaluating to the very object it was when tested. A
subject whose value has no identity (an element of an unknown list) is typed only when it is a local
name: only this function's own statements can re-bind it, and they are seen.
"""
from __future__ import annotations

from typing import List, Optional

import libcst as cst

from lraudit.analysis import known
from lraudit.analysis.imports import ImportTable, dotted_name
from lraudit.analysis.scopes import Scope
from lraudit.analysis.trace import Block
from lraudit.analysis.values import NoneValue, Obj, Value


class Guard:
    __slots__ = ("scope", "subject", "value", "cls", "valid")

    def __init__(self, scope: Scope, subject: str, value: Value, cls: str) -> None:
        self.scope = scope
        self.subject = subject  # dotted text of the guarded expression
        self.value = value  # what it evaluated to when tested
        self.cls = cls  # the torch scheduler class it is known to be (``ReduceLROnPlateau``)
        self.valid = True  # until the subject (or a prefix of its path) is assigned in the branch


def isinstance_test(test: cst.BaseExpression, scope: Scope, imports: ImportTable):
    """(subject expression, torch scheduler class name) of a bare ``isinstance(x, C)`` test, else None."""
    if not (isinstance(test, cst.Call) and isinstance(test.func, cst.Name) and test.func.value == "isinstance"
            and len(test.args) == 2 and all(a.keyword is None and a.star == "" for a in test.args)
            and scope.lookup("isinstance") is None):
        return None
    subject, classes = test.args[0].value, test.args[1].value
    if dotted_name(subject) is None:
        return None
    nodes = [e.value for e in classes.elements] if isinstance(classes, cst.Tuple) else [classes]
    names = set()
    for node in nodes:
        if isinstance(node, cst.StarredElement):
            return None
        qualified = imports.resolve_expr(node)
        kind = known.scheduler_kind(qualified) if qualified and qualified.startswith(known.LR_SCHEDULER + ".") else None
        if kind is None or kind.cls is None:
            return None
        names.add(kind.cls)
    return (subject, names.pop()) if len(names) == 1 else None


class GuardsMixin:
    """The Interpreter's isinstance guards; see the module docstring."""

    _guards: List[Guard]

    def _guard_of(self, test, scope: Scope) -> Optional[Guard]:
        """The guard the true branch of ``test`` holds, or None."""
        found = isinstance_test(test, scope, scope.unit.imports)
        if found is None:
            return None
        subject, cls = found
        value = self._eval(subject, scope, Block())  # a name or attribute chain: records nothing
        options = value.options()
        has_identity = all(isinstance(o, (Obj, NoneValue)) for o in options) and any(isinstance(o, Obj) for o in options)
        if not has_identity and not (isinstance(subject, cst.Name) and subject.value not in scope.globals):
            # An attribute path without identity could be re-assigned by a method it calls, unseen; a
            # local name is re-bound only by this function's own statements, which invalidate the guard.
            return None
        return Guard(scope, dotted_name(subject), value, cls)

    def _assigned(self, target: Optional[str], scope: Scope) -> None:
        """``target`` (a name or dotted path) is assigned in ``scope``: guards on it, or on a path
        through it, no longer say what it is."""
        if not self._guards or not target:
            return
        for guard in self._guards:
            if guard.scope is scope and (guard.subject == target or guard.subject.startswith(target + ".")):
                guard.valid = False

    def _guarded_class(self, call: cst.Call, receiver: Value, scope: Scope) -> Optional[str]:
        """The class an enclosing guard gives the receiver of ``call`` (``x.step()``), or None."""
        if not self._guards or not isinstance(call.func, cst.Attribute):
            return None
        subject = dotted_name(call.func.value)
        for guard in reversed(self._guards):
            if guard.valid and guard.scope is scope and guard.subject == subject and guard.value is receiver:
                return guard.cls
        return None
