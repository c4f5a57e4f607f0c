"""What a check run hands back: :class:`CheckResult`, and the exit status it means.

The engine (:mod:`lraudit.engine`) fills a :class:`CheckResult`; the renderers (:mod:`lraudit.report`),
``--add-noqa`` (:mod:`lraudit.add_noqa`) and the CLI read it. It holds no logic of the pipeline:
findings, error and note lines, fixes, and what the renderers need to show them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List

from lraudit.findings import Finding
from lraudit.suppressions import UnusedIgnore


@dataclass
class CheckResult:
    files_checked: int = 0
    findings: List[Finding] = field(default_factory=list)
    errors: List[Dict[str, str]] = field(default_factory=list)
    # Files whose analysis was cut short or skipped by a bound (size, work budget, libcst's parser):
    # ``{"path", "message"}``, reported so that no file is silently half-analysed; never change the exit.
    notes: List[Dict[str, str]] = field(default_factory=list)
    unused_ignores: List[UnusedIgnore] = field(default_factory=list)
    fixed: List[Finding] = field(default_factory=list)  # findings removed by --fix / --diff
    diffs: List[str] = field(default_factory=list)  # unified diffs (--diff)
    fix_available: bool = True  # False when lraudit.fix is not installed yet
    rules: FrozenSet[str] = frozenset()
    severity: Dict[str, str] = field(default_factory=dict)  # overrides from the config
    report_unused_ignores: bool = False
    #: text of each file with something to report (notebooks: their JSON), for code frames and the
    #: .ipynb lines of SARIF/GitHub annotations
    sources: Dict[str, str] = field(default_factory=dict)

    def severity_of(self, finding: Finding) -> str:
        return self.severity.get(finding.rule) or finding.severity

    def finding_json(self, finding: Finding) -> dict:
        data = finding.to_json()
        data["severity"] = self.severity_of(finding)
        return data


def exit_status(result: CheckResult, exit_zero: bool = False, diff: bool = False) -> int:
    """0: clean; 1: findings (or, with --diff, changes to apply); 2: a file could not be checked."""
    if result.errors:
        return 2
    if exit_zero:
        return 0
    if diff:
        return 1 if result.diffs else 0
    if result.findings or (result.report_unused_ignores and result.unused_ignores):
        return 1
    return 0
