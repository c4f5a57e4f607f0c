"""What every static rule shares: the report it makes and the helpers to describe model objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Tuple, Union

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.known import SCHEDULER_FACTORIES
from lraudit.analysis.values import SchedulerObj


# What an edited node becomes: a node, several statements, nothing, or a function of the node as
# updated by the transformer (to keep edits made inside it).
Replacement = Union[cst.CSTNode, cst.FlattenSentinel, cst.RemovalSentinel,
                    Callable[[cst.CSTNode], Union[cst.CSTNode, cst.FlattenSentinel, cst.RemovalSentinel]]]


@dataclass(frozen=True)
class Fix:
    """An autofix reported with its finding (Fixit style): each original node of ``edits`` is replaced
    by its replacement (see ``Replacement``); ``lraudit.fix`` applies them.
    ``safe`` fixes run under ``--fix``; the others only with ``--unsafe-fixes``."""

    title: str
    edits: Tuple[Tuple[cst.CSTNode, Replacement], ...]
    safe: bool = True


@dataclass(frozen=True)
class Report:
    """A rule's raw finding: a node of the module, located by the engine only when reported.
    ``fixable`` is True when a *safe* fix comes with it (what ``--fix`` applies)."""

    rule: str
    node: cst.CSTNode
    message: str
    fixable: bool = False
    fix: Optional[Fix] = None
    severity: Optional[str] = None  # milder than the catalogue's when the LR is right here


class StaticRule:
    """A rule is one small class: its catalogue code and a ``check`` querying the model."""

    code: str = ""

    def check(self, model: Model) -> Iterable[Report]:  # pragma: no cover - interface
        raise NotImplementedError

    def report(self, node: cst.CSTNode, message: str, fixable: bool = False, fix: Optional[Fix] = None,
               severity: Optional[str] = None) -> Report:
        """``severity``: this finding's own, when its consequence is milder than the rule's."""
        return Report(self.code, node, message, fixable or (fix is not None and fix.safe), fix, severity)


def describe_scheduler(scheduler: SchedulerObj) -> str:
    """``StepLR``, or the factory that built it (``get_linear_schedule_with_warmup``), for messages."""
    if scheduler.qualname in SCHEDULER_FACTORIES:
        return scheduler.qualname.rsplit(".", 1)[-1]
    if getattr(scheduler, "subclass", None):  # the project's own subclass: its name, and what it extends
        return f"{scheduler.subclass} (a {scheduler.qualname.rsplit('.', 1)[-1]})"
    return scheduler.cls or scheduler.qualname.rsplit(".", 1)[-1]


def receiver_text(model: Model, call: Optional[cst.Call]) -> str:
    """``self.scheduler`` for ``self.scheduler.step()``."""
    if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
        return model.text(call.func.value)
    return "scheduler"
