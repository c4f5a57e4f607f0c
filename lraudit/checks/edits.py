"""Fix builders shared by the rules: each returns a ``Fix`` (edits of original nodes) or None when
the edit would not be clearly right. ``lraudit.fix`` applies them; the rules only describe them."""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.trace import Event, Frame
from lraudit.checks.base import Fix

# Code that reads (or may read) the LR: moving a scheduler step across it changes what it sees.
_READS_LR = re.compile(r"(?<![A-Za-z0-9])lrs?(?![A-Za-z0-9])|get_last_lr|get_lr|param_groups|learning_rate",
                       re.IGNORECASE)

_Block = (cst.IndentedBlock, cst.Module)


def _statements_up(model: Model, node: cst.CSTNode) -> List[Tuple[cst.BaseStatement, cst.CSTNode]]:
    """(statement, the block holding it) for every statement enclosing ``node``, innermost first,
    up to the enclosing function."""
    found = []
    current: Optional[cst.CSTNode] = node
    while current is not None and not isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
        parent = model.parent(current)
        if isinstance(current, cst.BaseStatement) and isinstance(parent, _Block):
            found.append((current, parent))
        current = parent
    return found


def _only_statement(block) -> Optional[cst.BaseStatement]:
    body = block.body if isinstance(block, cst.IndentedBlock) else None
    return body[0] if body is not None and len(body) == 1 else None


def _movable(model: Model, call: cst.Call) -> Optional[Tuple[cst.BaseStatement, cst.CSTNode]]:
    """The statement to move for a step call: its own line (nothing else on it), or an ``if`` without
    ``else`` holding only that line (``if scheduler is not None: scheduler.step()``)."""
    chain = _statements_up(model, call)
    if not chain:
        return None
    line, block = chain[0]
    if not (isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1
            and isinstance(line.body[0], cst.Expr) and line.body[0].value is call):
        return None
    if len(chain) > 1:
        outer, outer_block = chain[1]
        if (isinstance(outer, cst.If) and outer.orelse is None and _only_statement(outer.body) is line
                and not _READS_LR.search(model.text(outer.test))):
            return outer, outer_block
    return line, block


class _Exits(cst.CSTVisitor):
    """return/raise/yield outside nested functions, break/continue outside nested loops: control
    may leave the block before what follows."""

    def __init__(self) -> None:
        self.found = False
        self._loops = 0

    def visit_FunctionDef(self, node) -> bool:
        return False

    def visit_Lambda(self, node) -> bool:
        return False

    def visit_ClassDef(self, node) -> bool:
        return False

    def visit_For(self, node) -> None:
        self._loops += 1

    def leave_For(self, node) -> None:
        self._loops -= 1

    visit_While, leave_While = visit_For, leave_For

    def _hit(self, node) -> None:
        self.found = True

    def _loop_exit(self, node) -> None:
        if not self._loops:
            self.found = True

    visit_Return = visit_Raise = visit_Yield = _hit
    visit_Break = visit_Continue = _loop_exit


def _may_exit(statements: Sequence[cst.CSTNode]) -> bool:
    for statement in statements:
        visitor = _Exits()
        statement.visit(visitor)
        if visitor.found:
            return True
    return False


def move_step_after(model: Model, step: Event, optimizer_step: Event, receiver: str) -> Optional[Fix]:
    """LR001: move the scheduler step statement right after the statement of the same block that runs
    the optimizer step (the step itself, the loop or ``with`` around it, or the call of the helper
    that does it). Refused when code between them may read the LR or the scheduler, or may leave the
    block early."""
    if not isinstance(step.node, cst.Call):
        return None
    movable = _movable(model, step.node)
    if movable is None:
        return None
    statement, block = movable
    anchors: List[cst.CSTNode] = [optimizer_step.node]
    anchors += [a.call for a in optimizer_step.ancestors() if isinstance(a, Frame) and a.call is not None]
    body = list(block.body)
    index = next(i for i, s in enumerate(body) if s is statement)
    target = None
    for anchor in anchors:
        for enclosing, enclosing_block in _statements_up(model, anchor):
            if enclosing_block is block:
                target = enclosing
                break
        if target is not None:
            break
    if target is None:
        return None
    target_index = next((i for i, s in enumerate(body) if s is target), -1)
    if target_index <= index:
        return None
    crossed = body[index + 1: target_index + 1]
    if isinstance(target, cst.SimpleStatementLine):
        crossed = crossed[:-1]  # a line: the optimizer step itself, or the call of a helper (below)
    receiver_pattern = re.compile(r"(?<![\w.])" + re.escape(receiver) + r"(?!\w)")
    # The helpers called in between (inlined frames around the optimizer step only) run in between too.
    around_step = {id(a) for a in step.ancestors()}
    helpers = [a.funcdef for a in optimizer_step.ancestors() if isinstance(a, Frame) and id(a) not in around_step]
    texts = [model.text(s) for s in crossed] + [model.text(f) for f in helpers]
    if any(_READS_LR.search(t) or receiver_pattern.search(t) for t in texts):
        return None
    if _may_exit(crossed):
        return None
    # A later step of the same scheduler in the block: the move would put two steps in one iteration
    # (LR013's duplicated step), whatever guards the later one.
    stepped_again = re.compile(r"(?<![\w.])" + re.escape(receiver) + r"\s*\.\s*step\s*\(")
    if any(stepped_again.search(model.text(s)) for s in body[target_index + 1:]):
        return None
    moved = statement
    return Fix(
        "move the scheduler step after the optimizer step",
        ((statement, cst.RemovalSentinel.REMOVE),
         (target, lambda updated: cst.FlattenSentinel([updated, moved]))),
        safe=False,
    )
