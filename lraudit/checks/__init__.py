"""Static rules: one module per family, each rule a small class querying the training-loop model.

``check_source`` is the per-file core the engine calls: parse once, build the model once, run every
selected rule, return findings (suppressions and config are the engine's business).
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import build_model
from lraudit.analysis.prescan import Prescan, prescan
from lraudit.checks.base import Report, StaticRule
from lraudit.checks.epoch_argument import DeprecatedEpochArgument, GetLrCall
from lraudit.checks.granularity import StepGranularityMismatch
from lraudit.checks.lr_writes import ManualWriteWithScheduler, PartialParamGroupUpdate
from lraudit.checks.ordering import SchedulerBeforeOptimizer, StepCountMismatch
from lraudit.checks.checkpoints import CheckpointWithoutSchedulerState
from lraudit.checks.lifecycle import BuiltInLoop, SchedulerNeverStepped, UncomposedSchedulers
from lraudit.checks.literals import InvalidLr
from lraudit.checks.plateau import PlateauModeMismatch, PlateauStepWithoutMetric
from lraudit.findings import Finding

RULES: Tuple[StaticRule, ...] = (
    SchedulerBeforeOptimizer(),
    ManualWriteWithScheduler(),
    PlateauStepWithoutMetric(),
    PartialParamGroupUpdate(),
    StepCountMismatch(),
    SchedulerNeverStepped(),
    BuiltInLoop(),
    CheckpointWithoutSchedulerState(),
    UncomposedSchedulers(),
    PlateauModeMismatch(),
    InvalidLr(),
    DeprecatedEpochArgument(),
    GetLrCall(),
    StepGranularityMismatch(),
)


class SourceParseError(Exception):
    """The file is not valid Python; ``line``/``column`` locate the error when known (1-based)."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        super().__init__(message)
        self.line = line
        self.column = column


def parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else "invalid syntax"
        raise SourceParseError(f"syntax error: {message}", error.raw_line, error.raw_column + 1) from None


def run_rules(module: cst.Module, select: Optional[Iterable[str]] = None,
              scan: Optional[Prescan] = None) -> Tuple[object, List[Report]]:
    """The model of ``module`` and the reports of the selected rules (deduplicated)."""
    wanted = set(select) if select is not None else None
    model = build_model(module, scan)
    if model.exhausted:
        return model, []  # too large to follow completely: an incomplete trace could mislead, silent
    reports: List[Report] = []
    seen = set()
    for rule in RULES:
        if wanted is not None and rule.code not in wanted:
            continue
        for report in rule.check(model):
            key = (report.rule, id(report.node))
            if key not in seen:
                seen.add(key)
                reports.append(report)
    return model, reports


def check_source(source: str, path: str, select: Optional[Iterable[str]] = None) -> List[Finding]:
    """Findings of the rules in ``select`` (codes; None = all) for one module's source text."""
    scan = prescan(source)
    if scan is not None and not scan.relevant:
        return []  # references nothing the model knows: no rule can fire, libcst never runs
    module = parse(source)
    model, reports = run_rules(module, select, scan)
    findings = []
    for report in reports:
        span = model.position(report.node)
        findings.append(
            Finding(path, span.start.line, span.start.column + 1, span.end.line, span.end.column + 1,
                    report.rule, report.message, report.fixable)
        )
    return sorted(findings)
