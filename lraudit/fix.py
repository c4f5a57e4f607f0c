"""Autofixes: apply the fixes the rules report with their findings (libcst edits of original nodes).

``fix_source`` is what the engine calls for ``--fix`` / ``--diff`` (``unsafe`` for
``--unsafe-fixes``). It works in passes: each pass lints, applies every applicable fix whose edits do
not overlap an edit already taken in that pass, and re-lints; an overlapping fix (an LR007 argument
inside a statement LR001 moves) waits for the next pass. The result is checked before it is
returned: it parses, and re-linting reports none of what was fixed and nothing new. Otherwise
``FixError`` is raised and the caller keeps the file as it was. libcst keeps everything it does not
edit byte for byte (comments, CRLF line endings, encoding declarations).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set

import libcst as cst

from lraudit.checks import SourceParseError, parse, run_rules
from lraudit.checks.base import Report
from lraudit.findings import Finding

__all__ = ["FixError", "FixResult", "fix_source"]

MAX_PASSES = 8


class FixError(Exception):
    """A fix could not be applied cleanly; the source is left as it was."""


@dataclass
class FixResult:
    source: str  # the fixed source (the input itself when nothing was fixed)
    fixed: List[Finding] = field(default_factory=list)  # the findings fixed (positions as found)


def applicable(report: Report, select: Optional[Set[str]], unsafe: bool) -> bool:
    fix = report.fix
    return fix is not None and (fix.safe or unsafe) and (select is None or report.rule in select)


class _Apply(cst.CSTTransformer):
    def __init__(self, edits: Dict[int, object]) -> None:
        super().__init__()
        self.edits = edits
        self.applied = 0

    def on_leave(self, original_node, updated_node):
        replacement = self.edits.get(id(original_node))
        if replacement is None:
            return updated_node
        self.applied += 1
        if callable(replacement) and not isinstance(replacement, cst.CSTNode):
            return replacement(updated_node)
        return replacement


def _subtree_ids(node: cst.CSTNode) -> Set[int]:
    ids: Set[int] = set()

    class _Ids(cst.CSTVisitor):
        def on_visit(self, n) -> bool:
            ids.add(id(n))
            return True

    node.visit(_Ids())
    return ids


def _choose(reports: List[Report]) -> List[Report]:
    """Fixes whose edited subtrees are disjoint; the first reported wins (rules run in catalogue
    order, so LR001's move goes before an LR007 edit inside the moved statement)."""
    taken: List[Report] = []
    covered: Set[int] = set()
    for report in reports:
        nodes = [node for node, _ in report.fix.edits]
        subtrees = [_subtree_ids(node) for node in nodes]
        if any(ids & covered for ids in subtrees):
            continue
        taken.append(report)
        for ids in subtrees:
            covered |= ids
    return taken


def _finding(model, report: Report, path: str) -> Finding:
    span = model.position(report.node)
    return Finding(path, span.start.line, span.start.column + 1, span.end.line, span.end.column + 1,
                   report.rule, report.message, report.fixable, report.severity)


def _counts(reports: Iterable[Report]) -> Counter:
    return Counter(r.rule for r in reports)


def fix_source(source: str, path: str, select: Optional[Iterable[str]] = None, unsafe: bool = False) -> FixResult:
    """Apply the safe fixes (and the unsafe ones with ``unsafe``) of the rules in ``select`` (None: all).

    Raises ``SourceParseError`` when ``source`` does not parse and ``FixError`` when the fixed code
    would not parse or would still (or newly) be reported; the input is never modified in place."""
    wanted = set(select) if select is not None else None
    module = parse(source)
    model, reports = run_rules(module, wanted)
    before = _counts(reports)
    current, current_module = source, module
    fixed: List[Finding] = []
    for index in range(MAX_PASSES):
        if index:
            model, reports = run_rules(current_module, wanted)
        chosen = _choose([r for r in reports if applicable(r, wanted, unsafe)])
        if not chosen:
            break
        edits: Dict[int, object] = {}
        for report in chosen:
            for node, replacement in report.fix.edits:
                edits[id(node)] = replacement
        transformer = _Apply(edits)
        try:
            new_module = current_module.visit(transformer)
        except Exception as error:  # libcst refuses an invalid tree (a removal where none is allowed)
            raise FixError(f"cannot apply {', '.join(sorted({r.rule for r in chosen}))} fix: {error}") from None
        new_source = new_module.code
        if new_source == current:
            break
        fixed.extend(_finding(model, r, path) for r in chosen)
        try:
            current_module = parse(new_source)
        except SourceParseError as error:
            raise FixError(f"the fixed code does not parse ({error}); file left unchanged") from None
        current = new_source
    if not fixed:
        return FixResult(source, [])
    _verify(current_module, wanted, before, fixed)
    return FixResult(current, fixed)


def _verify(module: cst.Module, wanted: Optional[Set[str]], before: Counter, fixed: List[Finding]) -> None:
    _, after_reports = run_rules(module, wanted)
    after = _counts(after_reports)
    done = Counter(f.rule for f in fixed)
    for rule in set(after) | set(before):
        if after[rule] > before[rule] - done[rule]:
            raise FixError(
                f"fixing {rule} left {after[rule]} finding(s) where at most {max(before[rule] - done[rule], 0)} "
                "were expected; file left unchanged"
            )
