"""The runtime half's finding and warning (no torch needed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lraudit import catalog


class LRAuditWarning(UserWarning):
    """Warned by ``audit(strict=False)`` at exit, once per rule found."""


class LRAuditNote(UserWarning):
    """Something worth knowing about the run that is not a finding (ranks that took different numbers
    of steps)."""


class LRAuditInternalWarning(LRAuditWarning):
    """lraudit itself failed while observing (training was not affected; findings may be incomplete)."""


@dataclass(frozen=True)
class RuntimeFinding:
    rule: str  # "LR001"
    message: str
    step: Optional[int] = None  # 0-based index of the optimizer step concerned (within the audit)
    group: Optional[int] = None  # param group index (0-based)
    optimizer: Optional[str] = None  # series name, "lr-SGD"
    # The finding's own severity when its consequence is milder than the rule's (the LR is right here),
    # as the static half's Finding.level; None: the catalogue's.
    level: Optional[str] = None

    @property
    def name(self) -> str:
        return catalog.RULES[self.rule].name

    @property
    def severity(self) -> str:
        return self.level or catalog.RULES[self.rule].severity

    def to_dict(self) -> dict:
        """The finding as it appears in the trajectory file (DESIGN.md section 4); ``severity`` only
        when the finding has its own."""
        out = {
            "rule": self.rule,
            "message": self.message,
            "step": self.step,
            "group": self.group,
            "optimizer": self.optimizer,
        }
        if self.level is not None:
            out["severity"] = self.level
        return out

    def __str__(self) -> str:
        where = []
        if self.optimizer is not None:
            where.append(self.optimizer)
        if self.step is not None:
            where.append(f"step {self.step}")
        if self.group is not None:
            where.append(f"group {self.group}")
        loc = f" [{', '.join(where)}]" if where else ""
        level = f" ({self.level})" if self.level is not None else ""
        return f"{self.rule} {self.name}{level}{loc}: {self.message}"
