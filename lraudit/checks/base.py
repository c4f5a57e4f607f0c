"""What every static rule shares: the report it makes and the helpers to describe model objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.values import SchedulerObj


@dataclass(frozen=True)
class Report:
    """A rule's raw finding: a node of the module, located by the engine only when reported."""

    rule: str
    node: cst.CSTNode
    message: str
    fixable: bool = False


class StaticRule:
    """A rule is one small class: its catalogue code and a ``check`` querying the model."""

    code: str = ""

    def check(self, model: Model) -> Iterable[Report]:  # pragma: no cover - interface
        raise NotImplementedError

    def report(self, node: cst.CSTNode, message: str, fixable: bool = False) -> Report:
        return Report(self.code, node, message, fixable)


def describe_scheduler(model: Model, scheduler: SchedulerObj) -> str:
    """``StepLR`` (or the factory name) for messages."""
    name = scheduler.cls or scheduler.qualname.rsplit(".", 1)[-1]
    return name


def receiver_text(model: Model, call: Optional[cst.Call]) -> str:
    """``self.scheduler`` for ``self.scheduler.step()``."""
    if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
        return model.text(call.func.value)
    return "scheduler"
