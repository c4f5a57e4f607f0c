"""Static rules: one module per family, each rule a small class querying the training-loop model.

``check_source`` is the per-file core the engine calls: parse once, build the model once, run every
selected rule, return findings (suppressions and config are the engine's business).
"""
from __future__ import annotations

from typing import Iterable, List, Optional

from lraudit.findings import Finding


class SourceParseError(Exception):
    """The file is not valid Python; ``line``/``column`` locate the error when known (1-based)."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        super().__init__(message)
        self.line = line
        self.column = column


def check_source(source: str, path: str, select: Optional[Iterable[str]] = None) -> List[Finding]:
    """Findings of the rules in ``select`` (codes; None = all) for one module's source text."""
    raise NotImplementedError  # filled in by the analysis work (issue 2)
