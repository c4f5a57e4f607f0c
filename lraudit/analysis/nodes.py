"""Helpers that read libcst nodes: statement suites, docstrings, constant conditions, names mentioned
or read in an expression, literals, and the param-group selections of ``param_groups[...]``.
Pure functions of the syntax tree (and, for literals and selections, the abstract values they denote);
the interpreter's modules (interpreter.py and its parts) and the model (model.py) share them.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import libcst as cst

from lraudit.analysis.imports import ImportTable, dotted_name
from lraudit.analysis.values import Const, ParamGroup, ParamGroups, UNKNOWN, Value
from lraudit.analysis import values as V


class GroupSlice:
    """``param_groups[lower:upper]``: which groups it covers depends on how many there are."""

    def __init__(self, lower: Optional[int], upper: Optional[int]) -> None:
        self.lower = lower
        self.upper = upper

    def covered(self, count: int) -> range:
        return range(count)[self.lower:self.upper]



def _suite(body) -> Sequence:
    """Statements of an IndentedBlock / SimpleStatementSuite / list."""
    if isinstance(body, (list, tuple)):
        return body
    if isinstance(body, cst.SimpleStatementSuite):
        return [body]
    return body.body


def _is_docstring(stmt) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _constant_truth(test, imports: ImportTable) -> Optional[bool]:
    """True/False for conditions that are constant (dead branches are not code), else None."""
    if isinstance(test, cst.Name):
        if test.value in ("False", "True"):
            return test.value == "True"
        if imports.resolve(test.value) == "typing.TYPE_CHECKING" or test.value == "TYPE_CHECKING":
            return False
    if isinstance(test, cst.Integer):
        return test.value not in ("0",)
    if isinstance(test, cst.Attribute) and dotted_name(test) == "typing.TYPE_CHECKING":
        return False
    return None


def _mentioned_names(node) -> List[str]:
    """Dotted names (``a``, ``self.step``) mentioned in an expression (a plain recursion: libcst's
    visitor machinery costs more than the interpretation itself on these small expressions)."""
    found: List[str] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Attribute):
            name = dotted_name(current)
            if name:
                found.append(name)
                continue
        elif isinstance(current, cst.Name):
            found.append(current.value)
            continue
        elif isinstance(current, (cst.Lambda, cst.BaseComp)):
            continue
        stack.extend(_expression_children(current))
    return found


def _expression_children(node) -> List[cst.CSTNode]:
    """Sub-expressions of the expression kinds conditions and loop headers are made of."""
    if isinstance(node, cst.Attribute):
        return [node.value]
    if isinstance(node, cst.BinaryOperation):
        return [node.left, node.right]
    if isinstance(node, cst.BooleanOperation):
        return [node.left, node.right]
    if isinstance(node, cst.UnaryOperation):
        return [node.expression]
    if isinstance(node, cst.Comparison):
        return [node.left] + [c.comparator for c in node.comparisons]
    if isinstance(node, cst.Call):
        return [node.func] + [a.value for a in node.args]
    if isinstance(node, cst.Subscript):
        children = [node.value]
        for element in node.slice:
            inner = element.slice
            if isinstance(inner, cst.Index):
                children.append(inner.value)
            elif isinstance(inner, cst.Slice):
                children.extend(x for x in (inner.lower, inner.upper, inner.step) if x is not None)
        return children
    if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
        return [e.value for e in node.elements]
    if isinstance(node, cst.IfExp):
        return [node.test, node.body, node.orelse]
    if isinstance(node, (cst.Await,)):
        return [node.expression]
    if isinstance(node, cst.NamedExpr):
        return [node.target, node.value]
    if isinstance(node, cst.StarredElement):
        return [node.value]
    return []


def _read_names(node) -> List[cst.Name]:
    """The ``Name`` nodes read in an expression: not attribute names, keyword names, nor what a
    lambda or comprehension binds for itself."""
    found: List[cst.Name] = []

    class _Reads(cst.CSTVisitor):
        def visit_Attribute(self, n: cst.Attribute) -> bool:
            n.value.visit(self)
            return False

        def visit_Arg(self, n: cst.Arg) -> bool:
            n.value.visit(self)
            return False

        def visit_Lambda(self, n: cst.Lambda) -> bool:
            return False

        def visit_CompFor(self, n: cst.CompFor) -> bool:
            return False

        def visit_Name(self, n: cst.Name) -> None:
            found.append(n)

    if node is not None:
        node.visit(_Reads())
    return found


def _called_names(module: cst.Module) -> set:
    """Names of everything called anywhere (``f(...)``, ``self.f(...)``, ``obj.f(...)``)."""
    names: set = set()

    class _Calls(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            if isinstance(n.func, cst.Name):
                names.add(n.func.value)
            elif isinstance(n.func, cst.Attribute):
                names.add(n.func.attr.value)

    module.visit(_Calls())
    return names


def _method(classdef: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
    for item in _suite(classdef.body):
        if isinstance(item, cst.FunctionDef) and item.name.value == name:
            return item
    return None


def _class_attribute(classdef: cst.ClassDef, name: str) -> bool:
    for item in _suite(classdef.body):
        if isinstance(item, cst.SimpleStatementLine):
            for small in item.body:
                targets = []
                if isinstance(small, cst.Assign):
                    targets = [t.target for t in small.targets]
                elif isinstance(small, cst.AnnAssign):
                    targets = [small.target]
                if any(isinstance(t, cst.Name) and t.value == name for t in targets):
                    return True
    return False


def _first_param_is_optimizer(init: cst.FunctionDef) -> bool:
    params = list(init.params.posonly_params) + list(init.params.params)
    return len(params) >= 2 and params[1].name.value == "optimizer"


# Constructor parameters of a project scheduler class that name the schedule's length, counted in its own
# steps; the unit (epochs or optimizer steps) is read from the argument at each construction, as for
# torch's T_max. Beside a parameter counting the steps of an epoch it is a factor of the length, not it.
LENGTH_PARAMS = frozenset({
    "max_epochs", "total_epochs", "num_epochs", "max_steps", "total_steps", "num_steps", "num_training_steps",
    "t_total", "T_max", "max_iter", "max_iters", "total_iters", "max_iterations", "total_iterations",
    "num_iterations", "max_updates", "total_updates", "training_steps",
})
def _per_epoch_param(name: str) -> bool:
    """A parameter that may count the batches of an epoch (``steps_per_epoch``, ``epoch_steps``,
    ``iters_per_epoch``, ``niter_per_ep``, ``epoch_size``, ``num_batches``): the schedule's length may be
    a product the class computes. A warm-up's length and ``last_epoch`` are not."""
    n = name.lower()
    if n in LENGTH_PARAMS or n.startswith(("warmup", "warm_up", "last_epoch")):
        return False
    return "epoch" in n or "per_ep" in n or "batch" in n


def _length_params(init: cst.FunctionDef) -> Tuple[Tuple[str, int], ...]:
    """``(name, position after the optimizer)`` of the length parameters of a scheduler subclass's
    ``__init__(self, optimizer, ...)``; none when another parameter may count the steps of an epoch."""
    params = list(init.params.posonly_params) + list(init.params.params)
    names = [p.name.value for p in params[2:]]
    if any(_per_epoch_param(n) for n in names):
        return ()
    return tuple((n, k) for k, n in enumerate(names) if n in LENGTH_PARAMS)


def _subscript_key(node: cst.Subscript) -> Optional[str]:
    if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        return _string_value(node.slice[0].slice.value)
    return None


def _number_value(node) -> Value:
    """A numeric literal's value, without ``ast.literal_eval`` for the plain decimal ones."""
    raw = node.value.replace("_", "")
    try:
        return Const(int(raw) if raw.isdigit() else float(raw))
    except ValueError:
        try:
            return Const(node.evaluated_value)  # 0x10, 1e-3j and friends
        except Exception:  # pragma: no cover - odd literals
            return UNKNOWN


def _string_value(node) -> Optional[str]:
    """The value of a string literal. Plain literals are unquoted directly: libcst's
    ``evaluated_value`` calls ``ast.literal_eval``, whose ``compile`` dominated the profile."""
    if not isinstance(node, cst.SimpleString):
        return None
    raw = node.value
    if raw[:1] in ("'", '"') and "\\" not in raw:
        quote = raw[:3] if raw[:3] in ('"""', "'''") else raw[0]
        return raw[len(quote):-len(quote)]
    value = node.evaluated_value
    return value if isinstance(value, str) else None


def _select_groups(groups: ParamGroups, element) -> Value:
    """``param_groups[k]`` -> ParamGroup with indices {k} (negative kept as written);
    ``param_groups[a:b]`` -> ParamGroups with a GroupSlice; anything else -> unknown indices."""
    if isinstance(element, cst.Index):
        index = _literal_int(element.value)
        return ParamGroup(groups.optimizer, frozenset({index}) if index is not None else None)
    if isinstance(element, cst.Slice):
        if element.lower is None and element.upper is None and element.step is None:
            return groups
        bounds = [_literal_int(b) if b is not None else None for b in (element.lower, element.upper)]
        literal = all(b is not None or node is None for b, node in zip(bounds, (element.lower, element.upper)))
        if element.step is None and literal:
            return ParamGroups(groups.optimizer, GroupSlice(*bounds))
        return ParamGroups(groups.optimizer, None)
    return UNKNOWN


def _literal_int(node) -> Optional[int]:
    if isinstance(node, cst.Integer):
        value = _number_value(node)
        return value.value if isinstance(value, Const) and isinstance(value.value, int) else None
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = _literal_int(node.expression)
        return -inner if inner is not None else None
    return None


def _group_count(call: cst.Call, params: Value) -> Optional[int]:
    """Number of param groups an optimizer constructor shows: a literal list of dicts, or the value
    of a name bound to one; 1 for ``model.parameters()``; None when unknown."""
    if isinstance(params, V.Container) and params.items:
        return len(params.items) if all(isinstance(i, V.Container) and i.keys is not None for i in params.items) else None
    arg = call.args[0].value if call.args else None
    if isinstance(arg, cst.Call) and isinstance(arg.func, cst.Attribute) and arg.func.attr.value in (
        "parameters",
    ):
        return 1
    return None


def _reachable(value: Value, depth: int = 0):
    """Every option of a value, including those inside containers (a dict returned to Lightning)."""
    for option in value.options():
        yield option
        if isinstance(option, V.Container) and depth < 3:
            for item in option.items:
                yield from _reachable(item, depth + 1)
