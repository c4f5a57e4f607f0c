"""A cheap first look at a module with Python's own ``ast`` (about 10x faster than libcst): its import
table, the names it calls, and whether it references anything the model knows at all.

Every rule needs a known construction in the module (a torch scheduler, an optimizer, a scheduler
factory): a module that references none of them through its imports cannot hold a finding, and is
never parsed by libcst. This is the second stage of the prefilter, after the text test.
"""
from __future__ import annotations

import ast
import re
import sys
from typing import FrozenSet, Optional, Set, Tuple

from lraudit.analysis import known
from lraudit.analysis.imports import ImportTable, bind_imports


# What a function must mention, itself or through what it calls, to be worth interpreting as an
# entry point: steps, param groups, optimizers and schedulers, LR, checkpoints, framework wrappers.
_INTERESTING = re.compile(r"step|param_groups|optim|sched|lr|save|Adam|SGD|Scaler|prepare|setup")


class Prescan:
    def __init__(self, imports: ImportTable, called: Set[str], relevant: bool,
                 idle: FrozenSet[Tuple[Optional[str], str]] = frozenset()) -> None:
        self.imports = imports
        self.called = called  # names of everything called: ``f(...)``, ``x.f(...)``
        self.relevant = relevant
        # (class name or None, function name) of module-level functions and methods that neither
        # mention the vocabulary nor call (by name) anything that does: their interpretation as an
        # entry point cannot produce an event, so the interpreter skips it (a library module full of
        # nn.Module classes costs little). They are still interpreted when an entry point calls them.
        self.idle = idle


def _dotted(node: ast.AST) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _is_known(qualname: str) -> bool:
    return (
        known.scheduler_kind(qualname) is not None
        or known.is_optimizer_constructor(qualname)
        or qualname in known.OPTIMIZER_BASES
        or qualname in known.TORCH_SCHEDULER_BASES
    )


class ParserLimit(Exception):
    """Python's own parser refuses ``source`` for its nesting (``too many nested parentheses``, its
    recursion limit): code no Python runs. libcst must not see it: its native parser recurses without
    a bound and crashes the process (segmentation fault) or spends minutes on such input."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


#: CPython's default recursion limit: what a plain ``python train.py`` runs with, so what it accepts.
PYTHON_RECURSION_LIMIT = 1000


def python_parse(source: str) -> ast.Module:
    """``ast.parse`` as a plain ``python`` run would (on 3.9-3.11 the parser's depth limit follows the
    recursion limit, which :mod:`lraudit.deep_thread` raises for libcst's sake): code Python itself
    refuses for its depth is refused here too, before libcst spends minutes on it."""
    limit = sys.getrecursionlimit()
    if limit <= PYTHON_RECURSION_LIMIT:
        return ast.parse(source)
    sys.setrecursionlimit(PYTHON_RECURSION_LIMIT)
    try:
        return ast.parse(source)
    finally:
        sys.setrecursionlimit(limit)


_NESTING_MESSAGES = ("too many nested", "too complex", "too deeply nested", "too many statically nested")


def prescan(source: str) -> Optional[Prescan]:
    """The prescan of ``source``, or None when ``ast`` cannot parse it (syntax newer than the running
    Python, or invalid code): the caller then falls back to libcst alone. Raises ParserLimit when
    the parser refuses it for its depth."""
    try:
        tree = python_parse(source)
    except (RecursionError, MemoryError):
        raise ParserLimit("too deeply nested for Python's parser") from None
    except SyntaxError as error:
        message = error.msg or str(error)
        if any(text in message for text in _NESTING_MESSAGES):
            raise ParserLimit(message, error.lineno or 0, error.offset or 0) from None
        return None
    except ValueError:
        return None
    imports = ImportTable()
    called: Set[str] = set()
    references = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bind_imports(node, imports)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                called.add(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                called.add(node.func.attr)
        elif isinstance(node, (ast.Attribute, ast.Name)):
            references.append(node)
    relevant = False
    for node in references:
        dotted = _dotted(node)
        qualified = imports.resolve(dotted) if dotted else None
        if qualified is not None and _is_known(qualified):
            relevant = True
            break
    return Prescan(imports, called, relevant, _idle_definitions(tree, source) if relevant else frozenset())


def _idle_definitions(tree: ast.Module, source: str) -> FrozenSet[Tuple[Optional[str], str]]:
    lines = source.splitlines()
    definitions = []  # (key, mentions vocabulary, names it calls)
    for node in tree.body:
        owner = None
        functions = [node]
        if isinstance(node, ast.ClassDef):
            owner = node.name
            functions = node.body
        for function in functions:
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            text = "\n".join(lines[function.lineno - 1:function.end_lineno])
            calls = {c.func.id if isinstance(c.func, ast.Name) else c.func.attr
                     for c in ast.walk(function) if isinstance(c, ast.Call)
                     and isinstance(c.func, (ast.Name, ast.Attribute))}
            definitions.append(((owner, function.name), bool(_INTERESTING.search(text)), calls))
    # Interesting through calls by name (f -> g, and C(...) -> C.__init__): a walk up the reverse call
    # graph from what mentions the vocabulary, linear in the calls (a chain of a thousand helpers too).
    callers_of: dict = {}
    for key, _, calls in definitions:
        for name in calls:
            callers_of.setdefault(name, []).append(key)
    interesting = {key for key, mentions, _ in definitions if mentions}
    todo = list(interesting)
    while todo:
        owner, name = todo.pop()
        for called_as in ((name, owner) if name == "__init__" and owner else (name,)):
            for caller in callers_of.get(called_as, ()):
                if caller not in interesting:
                    interesting.add(caller)
                    todo.append(caller)
    return frozenset(key for key, _, _ in definitions if key not in interesting)
