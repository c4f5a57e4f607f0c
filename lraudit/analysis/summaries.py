"""Per-module summaries: what one module of a project offers to the modules that import it, read with
Python's own ``ast`` (about a tenth of a libcst parse) and computed once per module content.

A summary is a fact about a module, never a finding. It says:

- ``imports``: local name -> qualified name (relative imports kept relative: ``.engine.train``,
  ``..utils.WarmupLR``; the project layer anchors them at the module's own path);
- ``functions`` and ``classes`` (with their methods): for each, whether it is *idle* (mentions no
  step, optimizer, scheduler, LR, checkpoint vocabulary, itself or through what it calls by name),
  whether it *constructs* a known optimizer or scheduler, and which of its parameters (or ``self.``
  attributes) it steps, writes the LR of, saves or loads (``touches``: name -> kinds);
- classes: their bases as written (qualified through the imports), so that a subclass of a torch
  scheduler is known before anything is parsed by libcst;
- ``tables``: module-level names bound to a literal dict/list/tuple that mentions a known
  construction (``SCHEDULERS = {"cosine": CosineAnnealingLR, ...}``: a factory of torch schedulers
  indexed by a config key);
- ``relevant``: the module references a known optimizer or scheduler through its imports.

The per-file interpreter consults a summary before parsing the module with libcst: an idle helper
is never parsed, a module that offers nothing is never parsed. Summaries are plain data (JSON-able),
so they can be cached by content hash like results.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from lraudit.analysis.imports import ImportTable, bind_imports
from lraudit.analysis.prescan import _INTERESTING, _dotted, _is_known

# What a function can do to what it is given, by the method or subscript it uses on it.
_TOUCHING_METHODS = {"step": "step", "zero_grad": "step", "load_state_dict": "load", "state_dict": "save",
                     "add_param_group": "groups", "get_lr": "get_lr", "get_last_lr": "reads_lr"}


@dataclass
class FunctionFacts:
    idle: bool = True
    constructs: bool = False  # references a known optimizer/scheduler construction
    touches: Dict[str, List[str]] = field(default_factory=dict)  # parameter or self.attr -> kinds
    params: List[str] = field(default_factory=list)  # positional parameters, in order


@dataclass
class ClassFacts:
    bases: List[str] = field(default_factory=list)  # qualified (or local) dotted names
    methods: Dict[str, FunctionFacts] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return all(m.idle for m in self.methods.values())


@dataclass
class Summary:
    imports: Dict[str, str] = field(default_factory=dict)
    functions: Dict[str, FunctionFacts] = field(default_factory=dict)
    classes: Dict[str, ClassFacts] = field(default_factory=dict)
    tables: Set[str] = field(default_factory=set)
    relevant: bool = False
    # ``sys.path.insert(0, ...)`` / ``sys.path.append(...)``: a script that makes its project importable
    extends_path: bool = False

    def import_table(self) -> ImportTable:
        table = ImportTable()
        for local, qualified in self.imports.items():
            table.bind(local, qualified)
        return table

    def idle_definitions(self) -> frozenset:
        """(class or None, function) pairs the interpreter need not run as entry points."""
        idle = {(None, name) for name, facts in self.functions.items() if facts.idle}
        for cls, facts in self.classes.items():
            idle.update((cls, name) for name, m in facts.methods.items() if m.idle)
        return frozenset(idle)

    def offers(self, name: str) -> bool:
        """Whether following ``name`` (a top-level definition) can matter to an importer."""
        if name in self.tables:
            return True
        if name in self.functions:
            return not self.functions[name].idle
        cls = self.classes.get(name)
        return cls is not None and (not cls.idle or bool(cls.bases))

    def constructs(self, name: str) -> bool:
        """A factory (or class) that builds a known optimizer or scheduler, or a table of them, as far
        as this module alone shows (direct bases only; ``Project.constructs`` follows the bases)."""
        if name in self.tables:
            return True
        if name in self.functions:
            return self.functions[name].constructs
        cls = self.classes.get(name)
        if cls is None:
            return False
        return any(_is_known(b) for b in cls.bases) or any(m.constructs for m in cls.methods.values())


def summarise(source: str) -> Optional[Summary]:
    """The summary of a module's source, or None when ``ast`` cannot parse it (unknown, silently).
    One walk over the tree: imports are read from statements only, each definition is walked once."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    imports = ImportTable()
    for statement in _statements(tree.body):
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            bind_imports(statement, imports)
    summary = Summary(imports=dict(imports.aliases))
    lines = source.splitlines()
    definitions = []  # (class or None, name, facts, names it calls)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            facts, calls = _function_facts(node, imports, lines)
            summary.functions[node.name] = facts
            definitions.append((None, node.name, facts, calls))
        elif isinstance(node, ast.ClassDef):
            bases = []
            for base in node.bases:
                dotted = _dotted(base)
                if dotted:
                    bases.append(imports.resolve(dotted) or dotted)
            cfacts = ClassFacts(bases=bases)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    facts, calls = _function_facts(item, imports, lines)
                    cfacts.methods[item.name] = facts
                    definitions.append((node.name, item.name, facts, calls))
            summary.classes[node.name] = cfacts
            summary.relevant = summary.relevant or any(_is_known(b) for b in bases)
        else:
            known_here = _mentions_known(node, imports)
            summary.relevant = summary.relevant or known_here
            if known_here and isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name) and isinstance(node.value, (ast.Dict, ast.List, ast.Tuple)):
                summary.tables.add(node.targets[0].id)
            if "sys.path" in source and any(isinstance(n, ast.Call) and _dotted(n.func) in (
                    "sys.path.insert", "sys.path.append") for n in ast.walk(node)):
                summary.extends_path = True
        summary.relevant = summary.relevant or any(d[2].constructs for d in definitions[-1:])
    _propagate_busy(definitions)
    return summary


def _statements(body):
    """Every statement, nested ones included (imports live in statements, never in expressions)."""
    stack = list(reversed(body))
    while stack:
        statement = stack.pop()
        yield statement
        for name in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(statement, name, None)
            if isinstance(inner, list):
                stack.extend(reversed([s for s in inner if isinstance(s, (ast.stmt, ast.excepthandler))]))


def _mentions_known(node: ast.AST, imports: ImportTable) -> bool:
    for child in ast.walk(node):
        if _known_reference(child, imports):
            return True
    return False


def _known_reference(node: ast.AST, imports: ImportTable) -> bool:
    if isinstance(node, ast.Name):
        qualified = imports.aliases.get(node.id)
    elif isinstance(node, ast.Attribute):
        dotted = _dotted(node)
        qualified = imports.resolve(dotted) if dotted and dotted.split(".", 1)[0] in imports.aliases else None
    else:
        return False
    return qualified is not None and _is_known(qualified)


def _function_facts(function: ast.AST, imports: ImportTable, lines: List[str]):
    """The facts of one function and the names it calls, in one walk of it."""
    facts = FunctionFacts()
    text = "\n".join(lines[function.lineno - 1:function.end_lineno])
    facts.idle = not _INTERESTING.search(text)
    args = function.args
    facts.params = [a.arg for a in args.posonlyargs + args.args]
    params = set(facts.params) | {a.arg for a in args.kwonlyargs}
    touches: Dict[str, Set[str]] = {}
    calls: Set[str] = set()
    for node in ast.walk(function):
        owner = None
        kind = None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                calls.add(func.id)
            elif isinstance(func, ast.Attribute):
                calls.add(func.attr)
                kind = _TOUCHING_METHODS.get(func.attr)
                owner = _dotted(func.value)
                if func.attr == "step" and node.args and _dotted(node.args[0]):
                    owner = _dotted(node.args[0])  # scaler.step(optimizer): the argument is stepped
        elif isinstance(node, ast.Attribute):
            if node.attr == "param_groups":
                kind = "param_groups"
                owner = _dotted(node.value)
            if not facts.constructs and _known_reference(node, imports):
                facts.constructs = True
        elif isinstance(node, ast.Name) and not facts.constructs and _known_reference(node, imports):
            facts.constructs = True
        if owner is None or kind is None:
            continue
        head = owner.split(".", 1)[0]
        if head in params and (head == owner or owner.startswith("self.")):
            touches.setdefault(owner, set()).add(kind)
    facts.touches = {k: sorted(v) for k, v in touches.items()}
    return facts, calls


def _propagate_busy(definitions) -> None:
    """A definition that calls (by name) a busy one is busy: f -> g, and C(...) -> C.__init__ (the
    prescan's rule for the checked module, so both agree on what is idle)."""
    changed = True
    while changed:
        busy = {name for _, name, facts, _ in definitions if not facts.idle}
        busy |= {owner for owner, name, facts, _ in definitions if owner and name == "__init__" and not facts.idle}
        changed = False
        for _, _, facts, calls in definitions:
            if facts.idle and calls & busy:
                facts.idle = False
                changed = True
