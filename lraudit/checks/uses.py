"""Where a constructed object goes by name: the helpers LR005 and LR014 use to prove that an object is
*not* used in a way the interpreter cannot follow (a lambda, a comprehension, a nested class, a call
into another module). They only ever make a rule quieter: the evidence a rule reports on comes from
the model's values and events; the names below can only veto it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, FrozenSet, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.imports import dotted_name

# Calls that only look at an object (never step it, store it or hand it on).
_INSPECTING_CALLS = frozenset(
    {"print", "isinstance", "repr", "str", "type", "id", "hasattr", "len", "format", "pprint", "pprint.pprint"}
)
_LOGGING_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
# Reading these names hands the whole namespace to code we cannot follow.
_INTROSPECTION = ("locals", "globals", "vars", "eval", "exec")


@dataclass(frozen=True)
class Binding:
    """How a construction's result is bound: ``names`` of variables (``kind == "local"``), attribute
    names (``"attribute"``), nothing at all (``"discarded"``, a bare expression statement).
    ``scope`` is the function a local variable lives in (None: module level or declared global)."""

    kind: str
    names: Tuple[str, ...] = ()
    scope: Optional[cst.FunctionDef] = field(default=None, repr=False)


def binding(model: Model, node: cst.CSTNode) -> Optional[Binding]:
    """What the value of expression ``node`` is assigned to; None when it flows anywhere else (an
    argument, a container, a return, a tuple target ...)."""
    child = node
    parent = model.parent(child)
    # ``x = A(...) if cond else None`` and ``x = a or A(...)`` still bind the construction to ``x``.
    while isinstance(parent, (cst.IfExp, cst.BooleanOperation)) and child is not getattr(parent, "test", None):
        child, parent = parent, model.parent(parent)
    if isinstance(parent, cst.Expr):
        return Binding("discarded")
    if isinstance(parent, cst.Assign):
        targets = [t.target for t in parent.targets]
    elif isinstance(parent, cst.AnnAssign) and parent.value is child:
        targets = [parent.target]
    else:
        return None
    if all(isinstance(t, cst.Name) for t in targets):
        names = tuple(t.value for t in targets)
        return Binding("local", names, _local_scope(model, parent, names))
    if all(isinstance(t, cst.Attribute) for t in targets):
        return Binding("attribute", tuple(t.attr.value for t in targets))
    return None



def _local_scope(model: Model, statement: cst.CSTNode, names: Tuple[str, ...]) -> Optional[cst.FunctionDef]:
    """The function whose local variables ``names`` are; None for module-level (or ``global``) ones."""
    function = model.enclosing(statement, cst.FunctionDef)
    if function is None:
        return None
    for name in names:
        for mention in model.mentions(name):
            if isinstance(model.parent(mention), cst.NameItem) and _within(model, mention, function):
                return None  # ``global x`` / ``nonlocal x``: visible outside the function
    return function


def _within(model: Model, node: cst.CSTNode, scope: cst.CSTNode) -> bool:
    parent = model.parent(node)
    while parent is not None:
        if parent is scope:
            return True
        parent = model.parent(parent)
    return False


def introspective(model: Model) -> bool:
    """The module reads its namespace dynamically (``locals()``, ``eval``): names prove nothing."""
    for name in _INTROSPECTION:
        for mention in model.mentions(name):
            call = model.parent(mention)
            if isinstance(mention, cst.Name) and isinstance(call, cst.Call) and call.func is mention:
                if name != "vars" or not call.args:  # ``vars(obj)`` reads an object, not the namespace
                    return True
    return False


def use_of(model: Model, mention: cst.CSTNode) -> str:
    """What a reference to a name does with the object, in the few words the rules need:

    ``write`` (rebinds the name or an attribute of it), ``step`` (``x.step``), ``attribute`` (any other
    attribute read or method call on it: ``x.get_last_lr()``, ``x.state_dict()``), ``inspect`` (tested
    for truth or identity, compared, formatted, printed or logged), ``argument`` (passed to a call),
    ``other`` (anything else: returned, stored in a container, aliased, yielded, captured ...).
    """
    node, parent = mention, model.parent(mention)
    if isinstance(parent, cst.AssignTarget) and parent.target is node:
        return "write"
    if isinstance(parent, cst.Element) and _unpacking_target(model, parent):
        return "write"  # ``model, optimizer, scheduler = accelerator.prepare(...)`` rebinds it
    if isinstance(parent, (cst.AnnAssign,)) and parent.target is node:
        return "write"
    if isinstance(parent, cst.Del):
        return "write"
    if isinstance(parent, cst.Attribute) and parent.value is node:
        if parent.attr.value == "step":
            return "step"
        grand = model.parent(parent)
        if isinstance(grand, cst.AssignTarget) and grand.target is parent:
            return "write"
        return "attribute"
    if isinstance(parent, (cst.Comparison, cst.ComparisonTarget)):
        return "inspect"
    if _truth_tested(model, node):
        return "inspect"
    if isinstance(parent, cst.FormattedStringExpression):
        return "inspect"
    if isinstance(parent, cst.Arg) and parent.value is node:
        call = model.parent(parent)
        if isinstance(call, cst.Call) and _inspecting_call(call):
            return "inspect"
        return "argument"
    return "other"


def _unpacking_target(model: Model, element: cst.Element) -> bool:
    sequence = model.parent(element)
    target = model.parent(sequence) if isinstance(sequence, (cst.Tuple, cst.List)) else None
    return isinstance(target, (cst.AssignTarget, cst.For)) and getattr(target, "target", None) is sequence


def _truth_tested(model: Model, node: cst.CSTNode) -> bool:
    """``if x:``, ``if a and x:``, ``if not x:``, ``y if x else z``, ``assert x``."""
    child, parent = node, model.parent(node)
    while isinstance(parent, cst.BooleanOperation) or (
        isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not)
    ):
        if isinstance(parent, cst.BooleanOperation) and parent.right is child and not _is_test(model, parent):
            return False  # ``y = a and x`` evaluates to x: a use of the value
        child, parent = parent, model.parent(parent)
    return isinstance(parent, (cst.If, cst.While, cst.IfExp, cst.Assert)) and parent.test is child


def _is_test(model: Model, node: cst.CSTNode) -> bool:
    parent = model.parent(node)
    while isinstance(parent, cst.BooleanOperation) or (
        isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not)
    ):
        node, parent = parent, model.parent(parent)
    return isinstance(parent, (cst.If, cst.While, cst.IfExp, cst.Assert)) and parent.test is node


def _inspecting_call(call: cst.Call) -> bool:
    name = dotted_name(call.func)
    if name is None:
        return False
    if name in _INSPECTING_CALLS or name in ("warnings.warn", "warn"):
        return True
    if name.rsplit(".", 1)[-1].endswith(("Error", "Exception", "Warning")):
        return True  # an exception's message
    head, _, last = name.rpartition(".")
    return bool(head) and last in _LOGGING_METHODS and ("log" in head.lower())


def argument_call(model: Model, mention: cst.CSTNode) -> Optional[cst.Call]:
    """The call a mention is an argument of (for ``use_of(...) == "argument"``)."""
    parent = model.parent(mention)
    call = model.parent(parent) if isinstance(parent, cst.Arg) else None
    return call if isinstance(call, cst.Call) else None


def uses(model: Model, names: Tuple[str, ...], scope: Optional[cst.CSTNode] = None,
         attributes: bool = False) -> List[Tuple[cst.CSTNode, str]]:
    """Every reference to a variable of ``names`` (to an attribute so named when ``attributes``)
    inside ``scope`` (nested functions included; the whole module when None), with what it does
    (see ``use_of``)."""
    kind = cst.Attribute if attributes else cst.Name
    return [(m, use_of(model, m)) for name in names for m in model.mentions(name)
            if isinstance(m, kind) and (scope is None or _within(model, m, scope))]


SAFE_USES = frozenset({"write", "attribute", "inspect"})


def may_escape(model: Model, names: Tuple[str, ...], scope: Optional[cst.CSTNode],
               safe: FrozenSet[str] = SAFE_USES, safe_argument: Optional[Callable] = None,
               attributes: bool = False, _depth: int = 0) -> bool:
    """Whether the object bound to ``names`` may be used beyond ``safe`` uses: stepped, returned,
    stored, captured, passed to code we cannot see. An argument of a same-module function the
    interpreter inlined is followed into that function (its parameter is audited there);
    ``safe_argument(call)`` may accept other calls."""
    for mention, use in uses(model, names, scope, attributes):
        if use in safe:
            continue
        if use == "argument":
            call = argument_call(model, mention)
            if safe_argument is not None and call is not None and safe_argument(call):
                continue
            callees = _inlined_callees(model, call)
            if callees and _depth < 4:
                arg = model.parent(mention)
                for funcdef, method in callees:
                    param = _parameter_for(call, arg, funcdef, method)
                    if param is None or may_escape(model, (param,), funcdef, safe, safe_argument, False, _depth + 1):
                        return True
                continue
        if use == "other" and isinstance(model.parent(mention), cst.Return) and _depth < 4 and scope is not None:
            if _returned_value_escapes(model, scope, safe, safe_argument, _depth):
                return True
            continue
        return True
    return False


def _returned_value_escapes(model: Model, function: cst.FunctionDef, safe, safe_argument, depth: int) -> bool:
    """``return x`` from a function the interpreter inlined: audit what each caller does with it."""
    calls = model.callers(function)
    if not calls:
        return True  # returned to code outside the module
    for call in calls:
        bound = binding(model, call)
        if bound is None or bound.kind == "attribute":
            return True
        if bound.kind == "local" and may_escape(model, bound.names, bound.scope, safe, safe_argument, False, depth + 1):
            return True
    return False


def _inlined_callees(model: Model, call: Optional[cst.Call]) -> List[Tuple[cst.FunctionDef, bool]]:
    """The same-module functions the interpreter entered from ``call`` (and whether as a method)."""
    if call is None:
        return []
    found = []
    for funcdef in model.inlined(call):
        params = list(funcdef.params.posonly_params) + list(funcdef.params.params)
        method = (isinstance(call.func, cst.Attribute) and bool(params)
                  and params[0].name.value in ("self", "cls"))
        found.append((funcdef, method))
    return found


def _parameter_for(call: cst.Call, arg: cst.Arg, funcdef: cst.FunctionDef, method: bool) -> Optional[str]:
    """The parameter of ``funcdef`` that argument ``arg`` of ``call`` binds; None when unsure."""
    params = funcdef.params
    if arg.keyword is not None:
        names = {p.name.value for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params)}
        return arg.keyword.value if arg.keyword.value in names else None
    if arg.star:
        return None
    index = 0
    for other in call.args:
        if other is arg:
            break
        if other.star:
            return None
        if other.keyword is None:
            index += 1
    positional = list(params.posonly_params) + list(params.params)
    if method:
        positional = positional[1:]
    return positional[index].name.value if index < len(positional) else None
