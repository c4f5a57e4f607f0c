"""The static pipeline: files -> bytes -> text -> prefilter -> rules -> suppressions -> findings.

Programmatic use::

    from lraudit.config import resolve_settings
    from lraudit.engine import check_paths, exit_status

    settings = resolve_settings(["src"], select=["LR00"])
    result = check_paths(["src"], settings)
    for finding in result.findings: ...
    status = exit_status(result)          # 0 clean, 1 findings, 2 errors

or, for one text already in memory, :func:`check_text` (and :func:`check_stdin` for ``lraudit check -``).

This module is the orchestration; each stage is a module of its own:

1. which files: :mod:`lraudit.discovery`;
2. per file, read its bytes and decode them per PEP 263, turning hostile input away with one line
   (:mod:`lraudit.file_reading`); notebooks are joined into one module (:mod:`lraudit.notebook`);
3. settle what needs no parse: a result cached by content hash (:mod:`lraudit.cache`), or a file the
   analysis core's cheap text prefilter clears;
4. analyse the rest: parse, model and rules (:func:`lraudit.checks.analyse_source`), and the fixer with
   --fix/--diff, one file per unit of work (:mod:`lraudit.file_analysis`, in a deep-stack thread:
   :mod:`lraudit.deep_thread`), in a guarded process pool when there is enough of it
   (:mod:`lraudit.worker_pool`);
5. in file order: write or show the fixes (:mod:`lraudit.fix_apply`), store the cache entry, apply
   per-file-ignores and inline suppressions (:mod:`lraudit.suppressions`), map notebook locations,
   and collect it all into a :class:`lraudit.results.CheckResult`.

A file that cannot be read or parsed becomes ``{"path", "message"}`` in ``errors``, one cut short by
a bound a note in ``notes``, and every other file is still checked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from lraudit import file_analysis
from lraudit import notebook as _nb
from lraudit.cache import Cache, default_cache_dir, entry_findings, findings_entry
from lraudit.config import Settings
from lraudit.discovery import SourceFile, discover
from lraudit.file_analysis import Job, Raw, checked_source, fix_available, wants_fix
from lraudit.file_reading import DecodeError, Unread, decode_source, describe_size, read_source
from lraudit.findings import Finding
from lraudit.fix_apply import apply_fix, fix_select_without_suppressed
from lraudit.results import CheckResult, exit_status
from lraudit.suppressions import Suppressions, UnusedIgnore, might_have_directives
from lraudit.worker_pool import default_jobs, run_pool, worth_a_pool

__all__ = ["CheckResult", "Progress", "check_paths", "check_stdin", "check_text", "default_jobs", "exit_status",
           "fix_available"]

#: ``progress(done, total)``: called once per file, when it is settled.
Progress = Callable[[int, int], None]


def check_text(
    source: str, path: str, settings: Settings, *, notebook: Optional[bool] = None
) -> CheckResult:
    """Check one in-memory text (``notebook``: JSON of an .ipynb; default: from the suffix)."""
    is_nb = path.endswith(".ipynb") if notebook is None else notebook
    result = CheckResult(rules=settings.rules, severity=dict(settings.severity))
    job = Job(0, path, source, is_nb)
    _finish(result, job, file_analysis.analyse(job, settings.rules, False), settings, report_unused=False)
    result.files_checked = 0 if result.errors else 1
    return result


def check_stdin(
    data: bytes,
    filename: Optional[str],
    settings: Settings,
    *,
    fix: bool = False,
    diff: bool = False,
    unsafe_fixes: bool = False,
) -> Tuple[CheckResult, Optional[str]]:
    """``lraudit check -``: check source read from stdin as if it were the file ``filename`` (its
    per-file-ignores, notebook-ness and reported path; ``-`` when None). Returns the result and the
    text to echo for ``--fix`` (the fixed source, the input unchanged, or None when it could not be
    decoded: echo the bytes). With ``force_exclude``, an
    excluded ``filename`` is not checked (nothing reported, the input echoed), as in ruff."""
    from lraudit.discovery import force_excluded

    path = filename or "-"
    result = CheckResult(rules=settings.rules, severity=dict(settings.severity),
                         fix_available=fix_available() if (fix or diff) else True)
    notebook = path.endswith(".ipynb")
    try:
        text = data.decode("utf-8-sig") if notebook else decode_source(data).text
    except (UnicodeDecodeError, DecodeError) as exc:
        result.errors.append({"path": path, "message": str(exc) if isinstance(exc, DecodeError)
                              else "cannot decode notebook as UTF-8"})
        return result, None
    if filename and settings.force_exclude and force_excluded(filename, settings):
        return result, text
    job = Job(0, path, text, notebook)
    if (fix or diff) and result.fix_available:
        job.fix_select = settings.rules - settings.ignored_for(path)
        try:
            job.fix_select = fix_select_without_suppressed(job, checked_source(job)[0], settings.rules)
        except _nb.NotebookError:
            pass
    raw = file_analysis.analyse(job, settings.rules, unsafe_fixes)
    if raw.new_text is not None:
        apply_fix(result, job, raw, None, write=False)
    _finish(result, job, raw, settings, report_unused=False)
    return result, job.text


def check_paths(
    paths: Sequence[str],
    settings: Settings,
    *,
    fix: bool = False,
    diff: bool = False,
    unsafe_fixes: bool = False,
    use_cache: bool = True,
    cache_dir: Optional[str] = None,
    jobs: Optional[int] = None,
    report_unused_ignores: bool = False,
    progress: Optional[Progress] = None,
) -> CheckResult:
    """Check files and directories; see the module docstring. ``diff`` computes fixes without writing."""
    fix_mode = fix or diff
    result = CheckResult(
        rules=settings.rules,
        severity=dict(settings.severity),
        report_unused_ignores=report_unused_ignores,
        fix_available=fix_available() if fix_mode else True,
    )
    files, errors = discover(list(paths) or ["."], settings)
    result.errors.extend(errors)
    cache = Cache(default_cache_dir(settings.root) if cache_dir is None else cache_dir, settings.rules) if use_cache else None
    total = len(files)
    done = 0

    def settled() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    # Read every file; the cache, a broken notebook or the prefilter settle some without a parse.
    pending: List[_Item] = []
    finished: List[_Item] = []
    for index, sf in enumerate(files):
        item = _prepare(index, sf, settings, result, cache, fix_mode, unsafe_fixes)
        if item is not None and item.raw is None:
            pending.append(item)
            continue
        if item is not None:
            finished.append(item)
        settled()

    # Analyse the rest, in a pool of worker processes when there is enough of it.
    def analysed(item: _Item, raw: Raw) -> None:
        item.raw = raw
        finished.append(item)
        settled()

    workers = default_jobs() if jobs is None else max(1, jobs)
    _analyse_all(pending, settings, unsafe_fixes, workers, analysed)

    # In file order: fixes, the cache, suppressions.
    for item in sorted(finished, key=lambda item: item.job.index):
        raw = item.raw
        if raw.new_text is not None:
            apply_fix(result, item.job, raw, item.encoding, write=fix and not diff)
        elif cache is not None:
            _store(cache, item)
        _finish(result, item.job, raw, settings, report_unused=report_unused_ignores)
    if cache is not None:
        cache.save()

    result.findings.sort(key=_sort_key)
    result.errors.sort(key=lambda e: e["path"])
    result.notes.sort(key=lambda e: e["path"])
    result.unused_ignores.sort(key=lambda u: (u.path, u.cell or 0, u.line, u.column))
    return result


@dataclass
class _Item:
    """One file of :func:`check_paths` on its way through the pipeline."""

    job: Job
    key: str  # its cache key: the absolute path
    encoding: Optional[str]  # the encoding its text was decoded with (None: a notebook)
    raw: Optional[Raw] = None  # the analysis' outcome, once there is one


def _prepare(index: int, sf: SourceFile, settings: Settings, result: CheckResult, cache: Optional[Cache],
             fix_mode: bool, unsafe: bool) -> Optional[_Item]:
    """Read one file and settle what needs no analysis. None: the file ends here, as an error or a
    note line in ``result``; an item with its ``raw``: settled by the cache, a broken notebook or the
    prefilter; an item without: to analyse."""
    read = read_source(sf, settings.max_file_size)
    if isinstance(read, str):
        if isinstance(read, Unread):
            result.notes.append({"path": sf.path, "message": str(read)})
        else:
            result.errors.append({"path": sf.path, "message": read})
        return None
    job = Job(index, sf.path, read.text, sf.is_notebook, digest=read.digest)
    item = _Item(job, os.path.abspath(sf.path), read.encoding)
    if fix_mode and result.fix_available:
        job.fix_select = settings.rules - settings.ignored_for(sf.path)
    cached = cache.get(item.key, read.digest) if cache is not None else None
    if cached is not None and cached.get("r") and not _project_unchanged(cached["r"]):
        cached = None  # a module of the project it read has changed since
    if cached is not None:
        raw = Raw(error=cached["e"]) if "e" in cached else Raw(
            findings=entry_findings(sf.path, cached), note=cached.get("n"), reads=cached.get("r") or {},
        )
        # The cache holds findings, not fixes: a file that --fix/--diff may change is analysed again.
        if not wants_fix(raw.findings or (), job.fix_select, unsafe):
            item.raw = raw
            return item
    try:
        checked_text = checked_source(job)[0]
    except _nb.NotebookError as exc:
        item.raw = Raw(error=str(exc))
        return item
    if job.notebook and settings.max_file_size and len(checked_text) > settings.max_file_size:
        result.notes.append({"path": sf.path, "message": (
            f"not analysed: its code cells hold {describe_size(len(checked_text))}, over the size bound "
            f"of {describe_size(settings.max_file_size)} (`max-file-size` in [tool.lraudit])")})
        return None
    if not file_analysis.prefilter(checked_text if job.notebook else read.data):
        item.raw = Raw(findings=[])
        return item
    if job.fix_select is not None:
        # never fix a rule that is suppressed somewhere in this file: the fixer cannot see comments
        job.fix_select = fix_select_without_suppressed(job, checked_text, settings.rules)
    return item


def _project_unchanged(reads: Dict[str, str]) -> bool:
    from lraudit.analysis.project import unchanged

    return unchanged(reads)


def _analyse_all(pending: List[_Item], settings: Settings, unsafe: bool, workers: int,
                 analysed: Callable[[_Item, Raw], None]) -> None:
    """:func:`lraudit.file_analysis.analyse` on every pending file; ``analysed(item, raw)`` for each."""
    size = sum(len(item.job.text) for item in pending)
    if worth_a_pool(workers, len(pending), size):
        tasks = [(item.job, settings.rules, unsafe) for item in pending]
        run_pool(tasks, workers, lambda position, raw: analysed(pending[position], raw))
    else:
        for item in pending:
            analysed(item, file_analysis.analyse(item.job, settings.rules, unsafe))


def _store(cache: Cache, item: _Item) -> None:
    """Cache what the rules said of this file; never an internal error or a failed fix (worth a retry)."""
    raw = item.raw
    if raw is None or raw.fix_error is not None or raw.error_is_internal():
        return
    if raw.error is not None:
        cache.put(item.key, item.job.digest, {"e": raw.error})
    elif raw.findings is not None:
        cache.put(item.key, item.job.digest, findings_entry(raw.findings, raw.note, raw.reads))


def _finish(result: CheckResult, job: Job, raw: Raw, settings: Settings, report_unused: bool) -> None:
    """Per-file-ignores, suppressions, notebook locations; append to ``result``."""
    if raw.fix_error:
        result.errors.append({"path": job.path, "message": raw.fix_error})
    if raw.error is not None or raw.findings is None:
        result.errors.append({"path": job.path, "message": raw.error or "not checked"})
        return
    result.files_checked += 1
    if raw.note:
        result.notes.append({"path": job.path, "message": raw.note})
    nb: Optional[_nb.Notebook] = None
    source = job.text
    if job.notebook:
        nb = _nb.load(job.text)
        source = nb.source
    ignored = settings.ignored_for(job.path)
    active = frozenset(settings.rules - ignored)
    findings = [f for f in raw.findings if f.rule in active]
    if findings or (report_unused and might_have_directives(source)):
        sup = Suppressions(source)
        findings, _ = sup.filter(findings)
        if report_unused:
            for u in sup.unused(job.path, active):
                if nb is not None:
                    cell, line = nb.locate(u.line)
                    u = UnusedIgnore(u.path, line, u.column, u.directive, u.codes, cell, u.malformed)
                result.unused_ignores.append(u)
    if nb is not None:
        findings = [nb.map_finding(f) for f in findings]
    result.findings.extend(findings)
    if findings or (report_unused and result.unused_ignores and result.unused_ignores[-1].path == job.path):
        result.sources[job.path] = job.text


def _sort_key(f: Finding):
    return (f.path, getattr(f, "cell", 0), f.line, f.column, f.rule, f.message)
