"""Inline suppressions: ``# lraudit: ignore[LR001,LR002]``, bare ``# lraudit: ignore``, and ``# noqa``.

A directive suppresses a finding reported on its own line, or on any line of the (possibly multi-line)
statement whose first line carries it::

    optimizer.param_groups[0]["lr"] = (  # lraudit: ignore[LR004]
        base_lr * warmup(step))

Only real comments count (the source is tokenized), never text inside strings or docstrings.
``# noqa: LR001`` is honoured for habit's sake; a ``# noqa`` listing only other tools' codes
(``# noqa: E501``) leaves lraudit's findings alone, and a bare ``# noqa`` suppresses everything.

``--report-unused-ignores`` reports lraudit directives that suppressed nothing, and ``LR`` codes of
``# noqa`` lists that suppressed nothing. A bare ``# noqa`` is never reported (it may serve another
tool), nor a code of a rule that was not run (not selected, or switched off by per-file-ignores).
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

from lraudit.findings import Finding

_LRAUDIT_RE = re.compile(
    r"#\s*lraudit\s*:\s*ignore\b(?:\s*\[(?P<codes>[^\]]*)\])?(?P<unclosed>\s*\[)?", re.IGNORECASE
)
_NOQA_RE = re.compile(
    r"#\s*noqa(?!\w)(?:\s*:\s*(?P<codes>[A-Za-z]+[0-9]+(?:(?:\s*,\s*|\s+)[A-Za-z]+[0-9]+)*))?",
    re.IGNORECASE,
)
_CODE_SPLIT = re.compile(r"[\s,]+")


@dataclass
class Directive:
    line: int  # 1-based
    column: int  # 1-based column of the directive's '#'
    kind: str  # "lraudit" or "noqa"
    codes: Optional[Tuple[str, ...]]  # None: bare, suppresses every rule
    text: str
    used: Set[str] = field(default_factory=set)  # codes of the findings it suppressed
    malformed: Optional[str] = None  # why it suppresses nothing (``ignore[LR001`` never closed)

    def suppresses(self, rule: str) -> Optional[str]:
        """The directive code (or "*" when bare) that covers ``rule``, else None."""
        if self.malformed:
            return None
        if self.codes is None:
            return "*"
        for code in self.codes:
            if rule.startswith(code):
                return code
        return None


@dataclass(frozen=True)
class UnusedIgnore:
    """A suppression that suppressed nothing (reported with ``--report-unused-ignores``)."""

    path: str
    line: int
    column: int
    directive: str  # the directive's text, e.g. "lraudit: ignore[LR002]" after its hash sign
    codes: Tuple[str, ...] = ()  # the unused codes; empty: the whole (bare) directive
    cell: Optional[int] = None  # notebooks: ``line`` counts within this cell
    malformed: Optional[str] = None  # a directive that suppresses nothing, and why

    @property
    def message(self) -> str:
        if self.malformed:
            return f"malformed suppression ({self.malformed}): it suppresses nothing (`{self.directive}`)"
        if self.codes:
            return f"unused suppression of {', '.join(self.codes)} (`{self.directive}`)"
        return f"unused suppression (`{self.directive}`)"

    def to_json(self) -> dict:
        data = {"path": self.path, "line": self.line, "column": self.column, "codes": list(self.codes),
                "message": self.message}
        if self.cell is not None:
            data["cell"] = self.cell
        return data


def might_have_directives(source: str) -> bool:
    lower = source.lower()
    return "lraudit" in lower or "noqa" in lower


class Suppressions:
    """The directives of one module and the statement structure needed to place them."""

    def __init__(self, source: str):
        self.directives: Dict[int, List[Directive]] = {}
        self._stmt_start: Dict[int, int] = {}
        if might_have_directives(source):
            try:
                self._scan_tokens(source)
            except (tokenize.TokenError, SyntaxError, IndentationError):
                # Newer syntax than this Python's tokenizer knows (3.12 f-strings): fall back to
                # comments found line by line; multi-line statements then match on their own line.
                self.directives.clear()
                self._stmt_start.clear()
                self._scan_lines(source)

    # -- parsing ------------------------------------------------------------------------------------
    def _add_comment(self, text: str, line: int, col0: int) -> None:
        for match in _LRAUDIT_RE.finditer(text):
            if match.group("unclosed"):
                # ``ignore[LR001`` never closed: not a bare ignore of every rule; it suppresses nothing
                # and --report-unused-ignores says so.
                directive = text[match.start():].strip()
                self.directives.setdefault(line, []).append(
                    Directive(line, col0 + match.start() + 1, "lraudit", (), directive, malformed="unclosed `[`")
                )
                continue
            raw = match.group("codes")
            codes = None if raw is None else tuple(c.upper() for c in _CODE_SPLIT.split(raw) if c)
            if codes == ():
                codes = None
            self.directives.setdefault(line, []).append(
                Directive(line, col0 + match.start() + 1, "lraudit", codes, match.group(0).strip())
            )
        for match in _NOQA_RE.finditer(text):
            raw = match.group("codes")
            codes = None if raw is None else tuple(c.upper() for c in _CODE_SPLIT.split(raw) if c)
            self.directives.setdefault(line, []).append(
                Directive(line, col0 + match.start() + 1, "noqa", codes, match.group(0).strip())
            )

    def _scan_tokens(self, source: str) -> None:
        start: Optional[int] = None
        skip = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                self._add_comment(tok.string, tok.start[0], tok.start[1])
            if tok.type == tokenize.NEWLINE:
                if start is not None:
                    for line in range(start, tok.end[0] + 1):
                        self._stmt_start[line] = start
                start = None
            elif start is None and tok.type not in skip and tok.type != tokenize.ENDMARKER:
                start = tok.start[0]

    def _scan_lines(self, source: str) -> None:
        for number, text in enumerate(source.splitlines(), 1):
            idx = text.find("#")
            if idx >= 0:
                self._add_comment(text[idx:], number, idx)

    # -- queries ------------------------------------------------------------------------------------
    def covering(self, finding: Finding) -> Optional[Directive]:
        """The directive that suppresses ``finding``, if any (and records that it was used)."""
        if not self.directives:
            return None
        lines = [finding.line]
        first = self._stmt_start.get(finding.line, finding.line)
        if first != finding.line:
            lines.append(first)
        for line in lines:
            for directive in self.directives.get(line, ()):
                code = directive.suppresses(finding.rule)
                if code is not None:
                    directive.used.add(code)
                    return directive
        return None

    def filter(self, findings: Iterable[Finding]) -> Tuple[List[Finding], List[Finding]]:
        """(kept, suppressed)."""
        kept: List[Finding] = []
        suppressed: List[Finding] = []
        for finding in findings:
            (suppressed if self.covering(finding) is not None else kept).append(finding)
        return kept, suppressed

    def unused(self, path: str, active_rules: FrozenSet[str]) -> List[UnusedIgnore]:
        """Directives (or their codes) that suppressed nothing, among rules that actually ran."""
        out: List[UnusedIgnore] = []
        for line in sorted(self.directives):
            for d in self.directives[line]:
                if d.malformed:
                    out.append(UnusedIgnore(path, line, d.column, d.text, malformed=d.malformed))
                    continue
                if d.codes is None:
                    if d.kind == "lraudit" and not d.used:
                        out.append(UnusedIgnore(path, line, d.column, d.text))
                    continue
                unused = []
                for code in d.codes:
                    if d.kind == "noqa" and not code.startswith("LR"):
                        continue  # another tool's code
                    if code in d.used:
                        continue
                    covered = any(r.startswith(code) for r in active_rules)
                    if covered or not _is_known(code):
                        unused.append(code)
                if unused:
                    out.append(UnusedIgnore(path, line, d.column, d.text, tuple(unused)))
        return out


def _is_known(code: str) -> bool:
    from lraudit import catalog

    return bool(catalog.matching(code))
