"""Static rules: one module per family, each rule a small class querying the training-loop model.

``check_source`` is the per-file core the engine calls: parse once, build the model once, run every
selected rule, return findings (suppressions and config are the engine's business).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import build_model
from lraudit.analysis.budget import BudgetExceeded
from lraudit.analysis.prescan import ParserLimit, Prescan, prescan
from lraudit.checks.base import Report, StaticRule
from lraudit.checks.epoch_argument import DeprecatedEpochArgument, GetLrCall
from lraudit.checks.granularity import StepGranularityMismatch
from lraudit.checks.lr_writes import ManualWriteWithScheduler, PartialParamGroupUpdate
from lraudit.checks.ordering import SchedulerBeforeOptimizer, StepCountMismatch
from lraudit.checks.checkpoints import CheckpointWithoutSchedulerState
from lraudit.checks.lifecycle import BuiltInLoop, SchedulerNeverStepped, UncomposedSchedulers
from lraudit.checks.literals import InvalidLr
from lraudit.checks.plateau import PlateauModeMismatch, PlateauStepWithoutMetric
from lraudit.checks.compiled import CompiledStepFloatLr
from lraudit.checks.momentum import InvalidMomentum
from lraudit.checks.param_groups import ParamGroupsAfterScheduler
from lraudit.checks.removed_api import RemovedSchedulerArgument
from lraudit.checks.resume import SchedulerBuiltAfterOptimizerLoad, SchedulerStateNotRestored
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
    ParamGroupsAfterScheduler(),
    SchedulerBuiltAfterOptimizerLoad(),
    SchedulerStateNotRestored(),
    RemovedSchedulerArgument(),
    CompiledStepFloatLr(),
    InvalidMomentum(),
)


class SourceParseError(Exception):
    """The file is not valid Python; ``line``/``column`` locate the error when known (1-based)."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        super().__init__(message)
        self.line = line
        self.column = column


class NotAnalysed(Exception):
    """Valid Python (the running Python's parser accepts it) that libcst's parser refuses: beyond
    its limits (thousands of implicitly concatenated strings) or syntax it does not know yet. Not
    the user's error: the engine reports it as a note, not as a syntax error."""


def parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else "invalid syntax"
        raise SourceParseError(f"syntax error: {message}", error.raw_line, error.raw_column + 1) from None


def _python_error(source: str) -> Optional[SourceParseError]:
    """Python's own report of a syntax error: its message and position are the ones users know
    (libcst puts tokenizer errors, a tab inconsistency or a non-breaking space, at 1:1)."""
    from lraudit.analysis.prescan import python_parse

    try:
        python_parse(source)
    except SyntaxError as error:
        return SourceParseError(f"syntax error: {error.msg}", error.lineno or 0, error.offset or 0)
    except (ValueError, RecursionError, MemoryError):
        return None
    return None


def run_rules(module: cst.Module, select: Optional[Iterable[str]] = None,
              scan: Optional[Prescan] = None) -> Tuple[object, List[Report]]:
    """The model of ``module`` and the reports of the selected rules (deduplicated).

    ``model.cut_short`` says why the analysis stopped early (None when it ran to the end): the
    interpreter's budget (nothing is reported: an incomplete trace could mislead the rules that
    reason from absence) or the rules' work budget (what the rules reported before it stands)."""
    wanted = set(select) if select is not None else None
    model = build_model(module, scan)
    model.cut_short = None
    if model.exhausted:
        model.cut_short = ("analysis cut short: the module exceeds the interpretation budget "
                           "(too many statements to follow); no findings reported for it")
        return model, []
    reports: List[Report] = []
    seen = set()
    try:
        for rule in RULES:
            if wanted is not None and rule.code not in wanted:
                continue
            for report in rule.check(model):
                key = (report.rule, id(report.node))
                if key not in seen:
                    seen.add(key)
                    reports.append(report)
    except BudgetExceeded as exceeded:
        model.cut_short = (f"analysis cut short: the rules {exceeded} (stopped in {rule.code}); findings of "
                           "this file may be incomplete")
    return model, reports


@dataclass
class SourceAnalysis:
    """What the analysis of one module found, and why it stopped early when it did."""

    findings: List[Finding] = field(default_factory=list)
    cut_short: Optional[str] = None  # the reason, for the report's notes; None: analysed to the end


def analyse_source(source: str, path: str, select: Optional[Iterable[str]] = None) -> SourceAnalysis:
    """:func:`check_source` plus the reason the analysis was cut short, if it was.

    Raises SourceParseError for code Python's parser refuses for its depth (reported from ``ast``'s
    own error, before libcst ever sees it) and for invalid code."""
    try:
        scan = prescan(source)
    except ParserLimit as limit:
        raise SourceParseError(f"syntax error: {limit} (Python refuses this code)", limit.line, limit.column) from None
    if scan is not None and not scan.relevant:
        return SourceAnalysis()  # references nothing the model knows: no rule can fire, libcst never runs
    try:
        module = parse(source)
    except SourceParseError as error:
        if scan is None:
            raise _python_error(source) or error  # Python refuses it too: a real syntax error
        raise NotAnalysed(f"not analysed: Python accepts this file but libcst's parser does not ({error})") from None
    model, reports = run_rules(module, select, scan)
    findings = []
    for report in reports:
        span = model.position(report.node)
        findings.append(
            Finding(path, span.start.line, span.start.column + 1, span.end.line, span.end.column + 1,
                    report.rule, report.message, report.fixable)
        )
    return SourceAnalysis(sorted(findings), model.cut_short)


def check_source(source: str, path: str, select: Optional[Iterable[str]] = None) -> List[Finding]:
    """Findings of the rules in ``select`` (codes; None = all) for one module's source text."""
    return analyse_source(source, path, select).findings
