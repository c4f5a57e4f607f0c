"""ReduceLROnPlateau usage: LR003 plateau-step-without-metric."""
from __future__ import annotations

from typing import Iterable

from lraudit.analysis import Model
from lraudit.analysis.values import SchedulerObj, only
from lraudit.checks.base import Report, StaticRule, receiver_text

PLATEAU = "ReduceLROnPlateau"


class PlateauStepWithoutMetric(StaticRule):
    """LR003: ``ReduceLROnPlateau.step()`` with no metric."""

    code = "LR003"

    def check(self, model: Model) -> Iterable[Report]:
        seen = set()
        for step in model.scheduler_steps:
            event = step.event
            if id(event) in seen:
                continue
            seen.add(id(event))
            schedulers = only(event.target, SchedulerObj)
            if not schedulers or any(s.cls != PLATEAU for s in schedulers):
                continue
            if event.call is not None and not event.call.args:
                yield self.report(
                    event.node,
                    f"`{receiver_text(model, event.call)}.step()` without a metric: ReduceLROnPlateau "
                    "raises TypeError at this call; pass the monitored value, e.g. `.step(val_loss)`",
                )
