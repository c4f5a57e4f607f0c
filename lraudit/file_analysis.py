"""The per-file unit of work: the rules (and, with --fix/--diff, the fixer) on one file's text.

:func:`analyse` takes a :class:`Job` (one file read by :mod:`lraudit.file_reading`) and returns a
:class:`Raw`: the rules' findings in checked-text coordinates (a notebook's code cells joined), or one
error line, or a note when a bound cut the analysis short; with a fix requested, also the fixed text,
checked again. It runs in the engine's process or in a pool worker (:mod:`lraudit.worker_pool`), in a
deep-stack thread (:mod:`lraudit.deep_thread`), and whatever goes wrong in there (a parse error, a
bug of ours, recursion or memory) is one error line for this file, never the end of the run.
Suppressions, per-file-ignores and notebook cell locations are applied later, by the engine.

The text prefilter (:func:`prefilter`) and the fixer (:func:`fixer`) are optional modules of the
analysis core and of :mod:`lraudit.fix`, looked up once, lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from lraudit import catalog
from lraudit import checks as _checks
from lraudit import notebook as _nb
from lraudit.deep_thread import in_deep_thread
from lraudit.findings import Finding


@dataclass
class Job:
    index: int
    path: str
    text: str  # decoded source; notebooks: their JSON
    notebook: bool
    fix_select: Optional[FrozenSet[str]] = None  # rules --fix may fix here; None: no fixing
    digest: str = ""  # content hash of the bytes read: a fix is written only over these very bytes


@dataclass
class Raw:
    findings: Optional[List[Finding]] = None  # in checked-text coordinates (joined notebook lines)
    error: Optional[str] = None  # parse or internal error
    new_text: Optional[str] = None  # fixed text (notebook: JSON), when a fix changed something
    fixed: List[Finding] = field(default_factory=list)
    fix_error: Optional[str] = None
    note: Optional[str] = None  # why the analysis was cut short (a bound), if it was
    unfixed: Optional[List[Finding]] = None  # with new_text: the findings before the fix (if not written)
    reads: Dict[str, str] = field(default_factory=dict)  # other modules of the project read: path -> hash

    def error_is_internal(self) -> bool:
        return bool(self.error and self.error.startswith("internal error"))


# --------------------------------------------------------------------------------------------------
# Prefilter and fixer, both optional modules of other owners


_prefilter_fn: Optional[Callable[[str], bool]] = None


def prefilter(text) -> bool:
    """The analysis core's prefilter (str or bytes; ASCII vocabulary, so any PEP 263 encoding)."""
    global _prefilter_fn
    if _prefilter_fn is None:
        try:
            from lraudit.analysis import may_contain_findings as fn
        except ImportError:  # the analysis core has no prefilter yet: parse everything

            def fn(text: str) -> bool:
                return True

        _prefilter_fn = fn
    return _prefilter_fn(text)


def fixer():
    try:
        from lraudit.fix import fix_source
    except ImportError:
        return None
    return fix_source


def fix_available() -> bool:
    return fixer() is not None


def has_unsafe_fix(code: str) -> bool:
    rule = catalog.RULES.get(code)
    return rule is not None and rule.fix == catalog.FIX_UNSAFE


def wants_fix(findings: Iterable[Finding], fix_select: Optional[FrozenSet[str]], unsafe: bool) -> bool:
    """Whether --fix/--diff may change a file with these findings: one of them is of a rule it may fix
    here and has a fix. Findings mark safe fixes as fixable; unsafe ones (LR001's move) count only
    with --unsafe-fixes, and findings whose safe fix was not offered still may have an unsafe one."""
    if not fix_select:
        return False
    return any(f.rule in fix_select and (f.fixable or (unsafe and has_unsafe_fix(f.rule))) for f in findings)


# --------------------------------------------------------------------------------------------------
# One file


def checked_source(job: Job) -> Tuple[str, Optional[_nb.Notebook]]:
    """The text the rules see (a notebook's code cells joined) and the notebook, if it is one."""
    if job.notebook:
        nb = _nb.load(job.text)
        return nb.source, nb
    return job.text, None


def analyse(job: Job, rules: FrozenSet[str], unsafe: bool) -> Raw:
    """Rules (and fixes) of one file, in a deep-stack thread (see :func:`in_deep_thread`); whatever
    goes wrong in there is one error line for this file."""
    try:
        return in_deep_thread(_analyse_here, job, rules, unsafe)
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the run
        return _internal_error(exc)


def _internal_error(exc: Exception) -> Raw:
    """One error line for what went wrong in lraudit itself (both :func:`analyse` and the re-lint after
    a fix catch their own: a failed re-lint rejects the fix and the file keeps its findings)."""
    if isinstance(exc, RecursionError):
        return Raw(error="internal error in lraudit: nesting beyond the analysis' recursion limit")
    if isinstance(exc, MemoryError):
        return Raw(error="internal error in lraudit: out of memory analysing this file")
    return Raw(error=f"internal error in lraudit: {type(exc).__name__}: {exc}")


def _run_rules(source: str, path: str, rules: FrozenSet[str], nb: Optional[_nb.Notebook]) -> Raw:
    try:
        reads: Dict[str, str] = {}
        analysis = _checks.analyse_source(source, path, sorted(rules), reads=reads)
        return Raw(findings=list(analysis.findings), note=analysis.cut_short, reads=reads)
    except _checks.SourceParseError as exc:
        where = ""
        if exc.line:
            where = nb.describe(exc.line, exc.column) if nb else f"line {exc.line}, column {exc.column}"
            where = f" at {where}"
        message = str(exc)
        if message.lower().startswith("syntax error: "):
            message = message[len("syntax error: "):]
        return Raw(error=f"syntax error{where}: {message}")
    except _checks.NotAnalysed as exc:
        return Raw(findings=[], note=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the run
        return _internal_error(exc)


def _analyse_here(job: Job, rules: FrozenSet[str], unsafe: bool) -> Raw:
    try:
        source, nb = checked_source(job)
    except _nb.NotebookError as exc:
        return Raw(error=str(exc))
    raw = _run_rules(source, job.path, rules, nb)
    if raw.findings is None or job.fix_select is None:
        return raw
    fix_source = fixer()
    if fix_source is None or not wants_fix(raw.findings, job.fix_select, unsafe):
        return raw
    fix_input = nb.fix_source() if nb else source
    try:
        result = fix_source(fix_input, job.path, sorted(job.fix_select), unsafe)
    except Exception as exc:  # noqa: BLE001
        raw.fix_error = f"fix failed, file left unchanged: {type(exc).__name__}: {exc}"
        return raw
    new_fix_text = getattr(result, "source", fix_input)
    if new_fix_text == fix_input:
        return raw
    if nb is not None:
        try:
            new_text = nb.apply_fixed(new_fix_text)
        except _nb.NotebookError as exc:
            raw.fix_error = str(exc)
            return raw
        if new_text is None:
            return raw
        new_nb = _nb.load(new_text)
        new_source = new_nb.source
    else:
        new_fix_text = _keep_final_newline(fix_input, new_fix_text)
        new_text, new_nb, new_source = new_fix_text, None, new_fix_text
    after = _run_rules(new_source, job.path, rules, new_nb)
    if after.findings is None:
        raw.fix_error = "fix refused: the fixed code does not parse; file left unchanged"
        return raw
    after.new_text = new_text
    after.fixed = list(getattr(result, "fixed", []) or [])
    if nb is not None:  # reported in the fixer's coordinates: cell and line, like the findings
        after.fixed = [nb.map_fixed(f) for f in after.fixed]
    after.unfixed = raw.findings  # what stands if the fixed text cannot be written
    after.note = after.note or raw.note
    return after


def _keep_final_newline(old: str, new: str) -> str:
    """libcst drops the final CR of a CR-only file: give the fixed text the original's last line end."""
    for ending in ("\r\n", "\r", "\n"):
        if old.endswith(ending):
            return new if new.endswith(("\r", "\n")) else new + ending
    return new
