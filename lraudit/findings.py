"""The static half's finding: one rule violation at one source range."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lraudit import catalog


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int  # 1-based
    column: int  # 1-based
    end_line: int
    end_column: int
    rule: str  # "LR001"
    message: str
    fixable: bool = field(default=False, compare=False)
    # The finding's own severity when its consequence is milder than the rule's (the LR is right here,
    # only a warning or an old API is tripped); None: the catalogue's.
    level: Optional[str] = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return catalog.RULES[self.rule].name

    @property
    def severity(self) -> str:
        return self.level or catalog.RULES[self.rule].severity

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "fixable": self.fixable,
        }
