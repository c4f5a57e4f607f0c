"""Static rules: one module per family, each rule a small class querying the training-loop model.

``check_source`` is the per-file core the engine calls: parse once, build the model once, run every
selected rule, return findings (suppressions and config are the engine's business).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import build_model
from lraudit.analysis.budget import BudgetExceeded
from lraudit.analysis.prescan import ParserLimit, Prescan, prescan
from lraudit.analysis.project import imports_project_constructions, open_project
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
              scan: Optional[Prescan] = None, project=None) -> Tuple[object, List[Report]]:
    """The model of ``module`` and the reports of the selected rules (deduplicated). With a
    ``project`` (analysis.project.Project), calls into the project's other modules are followed.

    ``model.cut_short`` says why the analysis stopped early (None when it ran to the end): the
    interpreter's budget (nothing is reported: an incomplete trace could mislead the rules that
    reason from absence) or the rules' work budget (what the rules reported before it stands)."""
    wanted = set(select) if select is not None else None
    model = build_model(module, scan, project)
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


def analyse_source(source: str, path: str, select: Optional[Iterable[str]] = None,
                   reads: Optional[Dict[str, str]] = None, project: bool = True) -> SourceAnalysis:
    """:func:`check_source` plus the reason the analysis was cut short, if it was.

    ``path`` places the module in its project: the modules it imports from the project are read
    (never reported on) so that calls into them are followed (``project=False``: this module alone).
    ``reads``, when given, receives path -> content hash of every other module read.

    Raises SourceParseError for code Python's parser refuses for its depth (reported from ``ast``'s
    own error, before libcst ever sees it) and for invalid code."""
    try:
        scan = prescan(source)
    except ParserLimit as limit:
        raise SourceParseError(f"syntax error: {limit} (Python refuses this code)", limit.line, limit.column) from None
    context = open_project(path) if project else None
    if scan is not None and not scan.relevant and not (
            context is not None and imports_project_constructions(scan, context)):
        _record(reads, context)
        return SourceAnalysis()  # references nothing the model knows: no rule can fire, libcst never runs
    try:
        module = parse(source)
    except SourceParseError as error:
        if scan is None:
            raise _python_error(source) or error  # Python refuses it too: a real syntax error
        raise NotAnalysed(f"not analysed: Python accepts this file but libcst's parser does not ({error})") from None
    model, reports = run_rules(module, select, scan, context)
    if model.units:
        reports = _project_reports(model, reports, select, context)
    _record(reads, context)
    findings = []
    for report in reports:
        span = model.position(report.node)
        message = report.message
        where = model.foreign_location(report.node)
        if where is not None:
            message += f" (in {_relative(where[0], path)}:{where[1]})"
        findings.append(
            Finding(path, span.start.line, span.start.column + 1, span.end.line, span.end.column + 1,
                    report.rule, message, report.fixable and where is None, report.severity)
        )
    return SourceAnalysis(sorted(findings), model.cut_short)


def check_source(source: str, path: str, select: Optional[Iterable[str]] = None,
                 reads: Optional[Dict[str, str]] = None, project: bool = True) -> List[Finding]:
    """Findings of the rules in ``select`` (codes; None = all) for one module's source text (see
    :func:`analyse_source` for ``reads`` and ``project``)."""
    return analyse_source(source, path, select, reads, project).findings


def _record(reads: Optional[Dict[str, str]], context) -> None:
    if reads is not None and context is not None:
        reads.update(context.reads)


def _relative(target: str, path: str) -> str:
    try:
        return os.path.relpath(target, os.path.dirname(os.path.abspath(path)))
    except ValueError:  # another drive (Windows)
        return target


def _project_reports(model, reports: List[Report], select, context) -> List[Report]:
    """Reports on code of another module of the project stay only when they need this module to be
    seen: one that the analysis of the module entered from here (the one whose code led there)
    makes too is that module's finding (reported when it is checked), never this one's. The rest are
    located at the call here that led there."""
    kept: List[Report] = []
    own: Dict[str, set] = {}
    for report in reports:
        if model.module_of(report.node) is None:
            kept.append(report)
            continue
        path = model.entered_module(report.node)
        if path is None:
            continue  # no call of this module leads there: not this module's to report
        if path not in own:
            unit = model.units[path]
            _, theirs = run_rules(unit.module, select, _unit_scan(unit), context.sibling(path))
            own[path] = {(r.rule, id(r.node)) for r in theirs}
        if (report.rule, id(report.node)) not in own[path]:
            kept.append(Report(report.rule, report.node, report.message, False, None, report.severity))
    return kept


def _unit_scan(unit) -> Prescan:
    return Prescan(unit.imports, None, True, unit.idle)
