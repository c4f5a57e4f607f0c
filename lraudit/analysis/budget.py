"""A bound in work units on what one module's analysis may cost, interpretation and rules alike.

Most of the analysis is near-linear in the module (indexes built once, queried many times). What is
not (pairs of schedulers of one optimizer, pairs of steps of two schedulers) spends units from one
budget per module; past it the analysis stops, and the file is reported as *cut short* with the
reason, never silently half-analysed. Units count comparisons, not seconds, so the bound is the same
on every machine and a result never depends on load.
"""
from __future__ import annotations

#: Units one module may spend in the rules (a real training file spends a few hundred; the
#: pathological shapes of bench/static_scaling.py stay below it up to thousands of schedulers).
MAX_RULE_WORK = 5_000_000


class BudgetExceeded(Exception):
    """Raised by :meth:`WorkBudget.spend` past the bound; ``str()`` says what was cut short."""


class WorkBudget:
    def __init__(self, limit: int = MAX_RULE_WORK) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, units: int, what: str = "rules") -> None:
        self.used += max(0, int(units))
        if self.used > self.limit:
            raise BudgetExceeded(f"exceeded the analysis budget of {self.limit:,} work units")
