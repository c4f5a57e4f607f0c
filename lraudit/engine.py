"""The static pipeline: files -> bytes -> text -> prefilter -> rules -> suppressions -> findings.

Programmatic use::

    from lraudit.config import resolve_settings
    from lraudit.engine import check_paths, exit_status

    settings = resolve_settings(["src"], select=["LR00"])
    result = check_paths(["src"], settings)
    for finding in result.findings: ...
    status = exit_status(result)          # 0 clean, 1 findings, 2 errors

or, for one text already in memory, :func:`check_text`.

Per file: read bytes; decode per PEP 263 (``tokenize.detect_encoding``; NUL bytes or undecodable text
are an error entry); notebooks are joined into one module (:mod:`lraudit.notebook`); the analysis
core's cheap text prefilter skips files that cannot hold a finding; the rest is parsed and checked
by :func:`lraudit.checks.check_source` (in a process pool when there is enough of it); then
per-file-ignores and inline suppressions. Raw rule output is cached by content hash
(:mod:`lraudit.cache`). A file that cannot be read or parsed becomes ``{"path", "message"}`` in
``errors`` and every other file is still checked.
"""
from __future__ import annotations

import difflib
import io
import os
import stat
import sys
import tempfile
import threading
import tokenize
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from lraudit.atomic import replace_atomically
from lraudit import catalog
from lraudit import checks as _checks
from lraudit import notebook as _nb
from lraudit.cache import Cache, content_hash, default_cache_dir
from lraudit.config import Settings
from lraudit.discovery import SourceFile, discover
from lraudit.findings import Finding
from lraudit.suppressions import Suppressions, UnusedIgnore, might_have_directives

#: Below this much work (files needing a parse, or their total size), a pool costs more than it saves.
PARALLEL_MIN_FILES = 8
PARALLEL_MIN_BYTES = 256 * 1024

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------
# Results


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


# --------------------------------------------------------------------------------------------------
# Decoding and writing


class DecodeError(Exception):
    pass


@dataclass
class Decoded:
    text: str
    encoding: str


def decode_source(data: bytes) -> Decoded:
    """Text of a Python file per PEP 263 (coding cookie or BOM, default UTF-8)."""
    if b"\x00" in data:
        raise DecodeError("binary file (contains NUL bytes), not checked")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        message = getattr(exc, "msg", None) or str(exc)
        if "invalid or missing encoding declaration" not in message:
            raise DecodeError(f"cannot decode: {message}") from None
        encoding = "utf-8"  # not UTF-8 and no cookie: say where it breaks
    try:
        return Decoded(data.decode(encoding), encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DecodeError(f"cannot decode as {encoding}: invalid byte 0x{data[exc.start]:02x} on line {line}") from None
    except LookupError:
        raise DecodeError(f"unknown encoding {encoding!r} in coding cookie") from None


def write_atomic(path: str, text, encoding: str = "utf-8") -> None:
    """Replace ``path``'s content atomically (temp file + os.replace), keeping its mode and encoding.

    ``text`` (str, encoded with ``encoding``, or bytes) keeps its own line endings (files are decoded
    without newline translation).
    """
    target = os.path.realpath(path)
    data = text if isinstance(text, bytes) else text.encode(encoding)
    try:
        mode: Optional[int] = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = None
    replace_atomically(target, lambda fh: fh.write(data), mode)


# --------------------------------------------------------------------------------------------------
# Prefilter and fixer, both optional modules of other owners


_prefilter_fn: Optional[Callable[[str], bool]] = None


def _prefilter(text) -> bool:
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


def _project_unchanged(reads: Dict[str, str]) -> bool:
    from lraudit.analysis.project import unchanged

    return unchanged(reads)


def _fixer():
    try:
        from lraudit.fix import fix_source
    except ImportError:
        return None
    return fix_source


def fix_available() -> bool:
    return _fixer() is not None


# --------------------------------------------------------------------------------------------------
# The per-file unit of work (runs in the parent or in a worker process)


@dataclass
class _Job:
    index: int
    path: str
    text: str  # decoded source; notebooks: their JSON
    notebook: bool
    fix_select: Optional[FrozenSet[str]] = None  # rules --fix may fix here; None: no fixing
    digest: str = ""  # content hash of the bytes read: a fix is written only over these very bytes


@dataclass
class _Raw:
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


def _checked_source(job: _Job) -> Tuple[str, Optional[_nb.Notebook]]:
    if job.notebook:
        nb = _nb.load(job.text)
        return nb.source, nb
    return job.text, None


#: The analysis runs in a thread with this much stack and this recursion limit, so that valid code
#: however deep CPython accepts it (hundreds of ``elif`` branches or concatenated string lines, nested
#: calls) is analysed by libcst's recursive parser and visitors instead of refused. The stack is
#: virtual memory: only what a deep file touches is ever committed.
ANALYSIS_STACK_BYTES = 512 * 1024 * 1024
ANALYSIS_RECURSION_LIMIT = 60_000
_deep_lock = threading.Lock()


def _in_deep_thread(fn, *args):
    """``fn(*args)`` in a thread with a large stack and a raised recursion limit (the one place the
    engine does this); exceptions propagate. Falls back to the calling thread if no such thread can
    be made."""
    outcome: Dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            outcome["error"] = exc

    with _deep_lock:
        previous_limit = sys.getrecursionlimit()
        if previous_limit < ANALYSIS_RECURSION_LIMIT:
            sys.setrecursionlimit(ANALYSIS_RECURSION_LIMIT)
        try:
            try:
                previous_size = threading.stack_size(ANALYSIS_STACK_BYTES)
            except (ValueError, RuntimeError):  # platform without settable stacks
                previous_size = None
            try:
                thread = threading.Thread(target=target, name="lraudit-analysis", daemon=True)
                thread.start()
            except (RuntimeError, MemoryError):
                thread = None
            finally:
                if previous_size is not None:
                    threading.stack_size(previous_size)
            if thread is None:
                target()
            else:
                thread.join()
        finally:
            if previous_limit < ANALYSIS_RECURSION_LIMIT:
                sys.setrecursionlimit(previous_limit)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def _run_rules(source: str, path: str, rules: FrozenSet[str], nb: Optional[_nb.Notebook]) -> _Raw:
    try:
        reads: Dict[str, str] = {}
        analysis = _checks.analyse_source(source, path, sorted(rules), reads=reads)
        return _Raw(findings=list(analysis.findings), note=analysis.cut_short, reads=reads)
    except _checks.SourceParseError as exc:
        where = ""
        if exc.line:
            where = nb.describe(exc.line, exc.column) if nb else f"line {exc.line}, column {exc.column}"
            where = f" at {where}"
        message = str(exc)
        if message.lower().startswith("syntax error: "):
            message = message[len("syntax error: "):]
        return _Raw(error=f"syntax error{where}: {message}")
    except _checks.NotAnalysed as exc:
        return _Raw(findings=[], note=str(exc))
    except RecursionError:
        return _Raw(error="internal error in lraudit: nesting beyond the analysis' recursion limit")
    except MemoryError:
        return _Raw(error="internal error in lraudit: out of memory analysing this file")
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the run
        return _Raw(error=f"internal error in lraudit: {type(exc).__name__}: {exc}")


def _has_unsafe_fix(code: str) -> bool:
    rule = catalog.RULES.get(code)
    return rule is not None and rule.fix == catalog.FIX_UNSAFE


def _analyse(job: _Job, rules: FrozenSet[str], unsafe: bool) -> _Raw:
    """Rules (and fixes) of one file, in a deep-stack thread (see :func:`_in_deep_thread`); whatever
    goes wrong in there is one error line for this file."""
    try:
        return _in_deep_thread(_analyse_here, job, rules, unsafe)
    except RecursionError:
        return _Raw(error="internal error in lraudit: nesting beyond the analysis' recursion limit")
    except MemoryError:
        return _Raw(error="internal error in lraudit: out of memory analysing this file")
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the run
        return _Raw(error=f"internal error in lraudit: {type(exc).__name__}: {exc}")


def _analyse_here(job: _Job, rules: FrozenSet[str], unsafe: bool) -> _Raw:
    try:
        source, nb = _checked_source(job)
    except _nb.NotebookError as exc:
        return _Raw(error=str(exc))
    raw = _run_rules(source, job.path, rules, nb)
    if raw.findings is None or job.fix_select is None:
        return raw
    fix_source = _fixer()
    if fix_source is None or not job.fix_select:
        return raw
    # Findings mark safe fixes as fixable; unsafe ones (LR001's move) are only tried on request.
    if not any(f.rule in job.fix_select and (f.fixable or (unsafe and _has_unsafe_fix(f.rule)))
               for f in raw.findings):
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


def _worker(args: Tuple[_Job, FrozenSet[str], bool]) -> _Raw:
    job, rules, unsafe = args
    return _analyse(job, rules, unsafe)


# --------------------------------------------------------------------------------------------------
# The guarded pool: a worker that dies (a parser's segmentation fault, the OOM killer) costs one
# error line for the file it was analysing, never the run. Each worker writes the position of the
# file it is on into its own marker file; when the pool breaks, the markers name the files in flight.
# Those are re-run one by one in a child process of their own (the one that crashes again is the
# culprit), and every other unfinished file goes to a fresh pool.

_marker_fd: Optional[int] = None
_BLANK = b" " * 12


def _pool_init(mark_dir: str) -> None:
    global _marker_fd
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    _marker_fd = os.open(os.path.join(mark_dir, str(os.getpid())), os.O_WRONLY | os.O_CREAT, 0o600)


def _die_with_parent() -> None:
    """Linux: this worker gets SIGKILL when the process that started it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - best effort
            pass


def _mark(position: Optional[int]) -> None:
    if _marker_fd is not None:
        os.pwrite(_marker_fd, _BLANK if position is None else b"%12d" % position, 0)


def _worker_chunk(chunk: List[Tuple[int, Tuple[_Job, FrozenSet[str], bool]]]) -> List[Tuple[int, _Raw]]:
    out = []
    for position, task in chunk:
        _mark(position)
        out.append((position, _worker(task)))
    _mark(None)
    return out


def _in_flight(mark_dir: str) -> List[int]:
    found = []
    for name in os.listdir(mark_dir):
        try:
            with open(os.path.join(mark_dir, name), "rb") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text))
    return sorted(set(found))


def _isolated_child(conn, task) -> None:
    _die_with_parent()
    try:
        conn.send(_worker(task))
    finally:
        conn.close()


def _run_isolated(task: Tuple[_Job, FrozenSet[str], bool]) -> _Raw:
    """One file in a child process of its own: its result, or an error line if the child dies."""
    import signal

    ctx = _mp_context()
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_isolated_child, args=(child, task), daemon=True)
    process.start()
    child.close()
    try:
        raw = parent.recv()
    except (EOFError, OSError):
        raw = None
    finally:
        process.join()
        parent.close()
    if isinstance(raw, _Raw):
        return raw
    code = process.exitcode
    how = f"exit status {code}"
    if code is not None and code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
    return _Raw(error=f"internal error in lraudit: the analysis of this file crashed its process ({how}); "
                      "the other files were checked")


def _terminate_pool(pool: ProcessPoolExecutor) -> None:
    """End a pool now (Ctrl-C, SIGTERM): no worker left behind, no waiting for queued files."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        try:
            process.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass
    for process in processes:
        process.join(timeout=2)
        if process.is_alive():
            process.kill()
            process.join(timeout=2)


def _run_pool(tasks: List[Tuple[_Job, FrozenSet[str], bool]], workers: int,
              report: Callable[[int, _Raw], None]) -> None:
    """Analyse ``tasks`` in worker processes; ``report(position, raw)`` once per task."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    remaining = list(range(len(tasks)))
    while remaining:
        got: set = set()
        broken = False
        chunk = max(1, min(16, len(remaining) // (workers * 4)))
        chunks = [[(p, tasks[p]) for p in remaining[i:i + chunk]] for i in range(0, len(remaining), chunk)]
        with tempfile.TemporaryDirectory(prefix="lraudit-pool-") as mark_dir:
            pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_mp_context(),
                                       initializer=_pool_init, initargs=(mark_dir,))
            try:
                futures = []
                try:
                    for c in chunks:
                        futures.append(pool.submit(_worker_chunk, c))
                except BrokenProcessPool:  # broke while the work was still being handed out
                    broken = True
                for future in as_completed(futures):
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    for position, raw in results:
                        got.add(position)
                        report(position, raw)
            except BaseException:
                _terminate_pool(pool)
                raise
            pool.shutdown(wait=True)
            started = bool(os.listdir(mark_dir))  # at least one worker came up
            suspects = [p for p in _in_flight(mark_dir) if p not in got] if broken else []
        remaining = [p for p in remaining if p not in got]
        if not broken:
            break
        if not started and not got:
            # No worker ever came up (the platform cannot start them): analyse here, one by one.
            for position in remaining:
                report(position, _analyse(*tasks[position]))
            return
        if not suspects and remaining:
            suspects = remaining[:1]  # no marker written: isolate one file at a time, still progressing
        for position in suspects:
            report(position, _run_isolated(tasks[position]))
        remaining = [p for p in remaining if p not in set(suspects)]


# --------------------------------------------------------------------------------------------------
# The pipeline


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _mp_context():
    """fork when this process has a single thread (cheapest start); otherwise forkserver, since forking
    a multi-threaded process (a progress bar's refresh thread) can deadlock."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1 and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context()


def _finding_to_cache(f: Finding) -> list:
    return [f.line, f.column, f.end_line, f.end_column, f.rule, f.message, f.fixable, f.level]


def _finding_from_cache(path: str, v: list) -> Finding:
    return Finding(path, v[0], v[1], v[2], v[3], v[4], v[5], bool(v[6]), v[7] if len(v) > 7 else None)


def check_text(
    source: str, path: str, settings: Settings, *, notebook: Optional[bool] = None
) -> CheckResult:
    """Check one in-memory text (``notebook``: JSON of an .ipynb; default: from the suffix)."""
    is_nb = path.endswith(".ipynb") if notebook is None else notebook
    result = CheckResult(rules=settings.rules, severity=dict(settings.severity))
    job = _Job(0, path, source, is_nb)
    _finish(result, job, _analyse(job, settings.rules, False), settings, report_unused=False)
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
    job = _Job(0, path, text, notebook)
    if (fix or diff) and result.fix_available:
        job.fix_select = settings.rules - settings.ignored_for(path)
        try:
            job.fix_select = _fix_select_without_suppressed(job, _checked_source(job)[0], settings.rules)
        except _nb.NotebookError:
            pass
    raw = _analyse(job, settings.rules, unsafe_fixes)
    if raw.new_text is not None:
        _apply_fix(result, job, raw, None, write=False)
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

    pending: List[Tuple[_Job, str, str, Optional[str]]] = []  # job, cache key, digest, encoding
    finished: List[Tuple[_Job, _Raw, str, str, Optional[str]]] = []
    for index, sf in enumerate(files):
        job_or_error = _read(index, sf, settings.max_file_size)
        if isinstance(job_or_error, str):
            if isinstance(job_or_error, _Unread):
                result.notes.append({"path": sf.path, "message": str(job_or_error)})
            else:
                result.errors.append({"path": sf.path, "message": job_or_error})
            done += 1
            if progress:
                progress(done, total)
            continue
        job, digest, encoding, data = job_or_error
        job.digest = digest
        key = os.path.abspath(sf.path)
        if fix_mode and result.fix_available:
            job.fix_select = settings.rules - settings.ignored_for(sf.path)
        cached = cache.get(key, digest) if cache is not None else None
        if cached is not None and cached.get("r") and not _project_unchanged(cached["r"]):
            cached = None  # a module of the project it read has changed since
        if cached is not None and not _may_fix(job, cached, unsafe_fixes):
            raw = _Raw(error=cached["e"]) if "e" in cached else _Raw(
                findings=[_finding_from_cache(sf.path, v) for v in cached["f"]], note=cached.get("n"),
                reads=cached.get("r") or {},
            )
            finished.append((job, raw, key, digest, encoding))
            done += 1
            if progress:
                progress(done, total)
            continue
        try:
            checked_text = _checked_source(job)[0]
        except _nb.NotebookError as exc:
            finished.append((job, _Raw(error=str(exc)), key, digest, encoding))
            done += 1
            if progress:
                progress(done, total)
            continue
        if job.notebook and settings.max_file_size and len(checked_text) > settings.max_file_size:
            result.notes.append({"path": sf.path, "message": (
                f"not analysed: its code cells hold {_describe_size(len(checked_text))}, over the size bound "
                f"of {_describe_size(settings.max_file_size)} (`max-file-size` in [tool.lraudit])")})
            done += 1
            if progress:
                progress(done, total)
            continue
        if not _prefilter(checked_text if job.notebook else data):
            finished.append((job, _Raw(findings=[]), key, digest, encoding))
            done += 1
            if progress:
                progress(done, total)
            continue
        if job.fix_select is not None:
            # never fix a rule that is suppressed somewhere in this file: the fixer cannot see comments
            job.fix_select = _fix_select_without_suppressed(job, checked_text, settings.rules)
        pending.append((job, key, digest, encoding))

    workers = default_jobs() if jobs is None else max(1, jobs)
    size = sum(len(j.text) for j, *_ in pending)
    parallel = workers > 1 and len(pending) >= max(PARALLEL_MIN_FILES, 2) and (
        size >= PARALLEL_MIN_BYTES or len(pending) >= 4 * PARALLEL_MIN_FILES
    )
    if parallel:
        tasks = [(j, settings.rules, unsafe_fixes) for j, *_ in pending]

        def report(position: int, raw: _Raw) -> None:
            nonlocal done
            job, key, digest, encoding = pending[position]
            finished.append((job, raw, key, digest, encoding))
            done += 1
            if progress:
                progress(done, total)

        _run_pool(tasks, workers, report)
    else:
        for job, key, digest, encoding in pending:
            finished.append((job, _analyse(job, settings.rules, unsafe_fixes), key, digest, encoding))
            done += 1
            if progress:
                progress(done, total)

    for job, raw, key, digest, encoding in sorted(finished, key=lambda item: item[0].index):
        if raw.new_text is not None:
            _apply_fix(result, job, raw, encoding, write=fix and not diff)
        elif cache is not None and raw.fix_error is None and not raw.error_is_internal():
            if raw.error is not None:
                cache.put(key, digest, {"e": raw.error})
            elif raw.findings is not None:
                entry: Dict[str, object] = {"f": [_finding_to_cache(f) for f in raw.findings]}
                if raw.note:
                    entry["n"] = raw.note
                if raw.reads:
                    entry["r"] = raw.reads
                cache.put(key, digest, entry)
        _finish(result, job, raw, settings, report_unused=report_unused_ignores)
    if cache is not None:
        cache.save()

    result.findings.sort(key=_sort_key)
    result.errors.sort(key=lambda e: e["path"])
    result.notes.sort(key=lambda e: e["path"])
    result.unused_ignores.sort(key=lambda u: (u.path, u.cell or 0, u.line, u.column))
    return result


def _may_fix(job: _Job, cached: dict, unsafe: bool) -> bool:
    """Whether --fix/--diff may change this file, given its cached findings: then it is analysed
    again (the cache holds findings, not fixes). Unsafe fixes count only with --unsafe-fixes, and
    findings whose safe fix was not offered still may have an unsafe one."""
    if not job.fix_select:
        return False
    for v in cached.get("f", ()):
        if v[4] in job.fix_select and (v[6] or (unsafe and _has_unsafe_fix(v[4]))):
            return True
    return False


def _sort_key(f: Finding):
    return (f.path, getattr(f, "cell", 0), f.line, f.column, f.rule, f.message)


class _Unread(str):
    """A file not read because of a bound (its size): a note, not an error."""


#: Notebooks carry their outputs (plots, tables) in the same JSON: their bound is this many times
#: ``max-file-size``, and their code cells joined are held to ``max-file-size`` itself.
NOTEBOOK_SIZE_FACTOR = 32


def _describe_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} KB"


def read_source_bytes(path: str, max_size: int = 0):
    """The bytes of a regular file, or an error message (str) or a size note (:class:`_Unread`).

    Only regular files are read: a named pipe, a device (``/dev/zero``) or a socket would block or
    never end. The file is opened without blocking and checked with ``fstat`` on the open
    descriptor (no race with a swap between the check and the read), and never read past the bound.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        return "is a directory"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return "is a directory"
        if not stat.S_ISREG(st.st_mode):
            kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "special")
            return f"not a regular file ({kind}), not read"
        if max_size and st.st_size > max_size:
            return _Unread(f"not analysed: {_describe_size(st.st_size)} is over the size bound of "
                           f"{_describe_size(max_size)} (`max-file-size` in [tool.lraudit])")
        chunks = []
        remaining = (max_size + 1) if max_size else -1
        while remaining:
            chunk = os.read(fd, 1 << 20 if remaining < 0 else min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            if remaining > 0:
                remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if max_size and len(data) > max_size:  # grew while we read it
        return _Unread(f"not analysed: over the size bound of {_describe_size(max_size)} "
                       "(`max-file-size` in [tool.lraudit])")
    return data


def _read(index: int, sf: SourceFile, max_size: int = 0):
    """(job, digest, encoding, bytes), or an error message, or an :class:`_Unread` note."""
    bound = max_size * NOTEBOOK_SIZE_FACTOR if (sf.is_notebook and max_size) else max_size
    data = read_source_bytes(sf.path, bound)
    if isinstance(data, str):
        return data
    digest = content_hash(data)
    if sf.is_notebook:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return "cannot decode notebook as UTF-8"
        return _Job(index, sf.path, text, True), digest, None, data
    try:
        decoded = decode_source(data)
    except DecodeError as exc:
        return str(exc)
    return _Job(index, sf.path, decoded.text, False), digest, decoded.encoding, data


def _fix_select_without_suppressed(job: _Job, source: str, rules: FrozenSet[str]) -> FrozenSet[str]:
    if not might_have_directives(source):
        return job.fix_select or frozenset()
    sup = Suppressions(source)
    blocked: set = set()
    for directives in sup.directives.values():
        for d in directives:
            if d.codes is None:
                return frozenset()  # a bare suppression: leave this file's code as written
            blocked |= {r for r in rules for c in d.codes if r.startswith(c)}
    return frozenset((job.fix_select or frozenset()) - blocked)


def _apply_fix(result: CheckResult, job: _Job, raw: _Raw, encoding: Optional[str], write: bool) -> None:
    """Record the fix's diff and, with ``write``, write it; a fix is reported only once written.

    When it cannot be written (the file changed since it was read, is read-only, or the write
    fails), the file keeps its content, an error line says why, and its findings stand unfixed."""
    old, new = job.text, raw.new_text or job.text
    diffs: List[str] = []
    if job.notebook:
        old_nb, new_nb = _nb.load(old), _nb.load(new)
        new_cells = {c.index: c.text for c in new_nb.cells}
        for cell in old_nb.cells:
            after = new_cells.get(cell.index, cell.text)
            if after != cell.text:
                diffs.append(_unified(cell.text, after, f"{job.path}:cell {cell.index}"))
    else:
        diffs.append(_unified(old, new, job.path))
    if write:
        problem = write_fixed(job.path, new, encoding, job.digest, notebook=job.notebook)
        if problem is not None:
            result.errors.append({"path": job.path, "message": problem})
            raw.findings = raw.unfixed if raw.unfixed is not None else raw.findings
            raw.fixed = []
            return
    result.fixed.extend(raw.fixed)
    result.diffs.extend(diffs)
    job.text = new


def write_fixed(path: str, text: str, encoding: Optional[str], expected_digest: str, notebook: bool = False
                ) -> Optional[str]:
    """Write a fixed text over ``path`` only if the file still holds the bytes that were analysed
    (``expected_digest``); None when written, else why not (the file is then untouched).

    The text keeps its own line endings (files are decoded without newline translation); a
    notebook keeps its UTF-8 BOM. A file with several hard links is rewritten in place, so that
    every link sees the fix; any other file is replaced atomically (a crash never leaves half a file)."""
    current = read_source_bytes(path)
    if isinstance(current, str):
        return f"fix not written: {current}"
    if content_hash(current) != expected_digest:
        return "fix not written: the file changed since it was read (edited meanwhile?); run lraudit again"
    if notebook:
        data = (b"\xef\xbb\xbf" if current.startswith(b"\xef\xbb\xbf") else b"") + text.encode("utf-8")
    else:
        try:
            data = text.encode(encoding or "utf-8")
        except UnicodeEncodeError as exc:
            return f"fix not written: the fixed text cannot be encoded as {encoding}: {exc.reason}"
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
        if not st.st_mode & 0o222:
            return "fix not written: the file is read-only"
        if st.st_nlink > 1:
            with open(target, "r+b") as fh:
                fh.write(data)
                fh.truncate()
        else:
            write_atomic(target, data)
    except OSError as exc:
        return f"fix not written: {exc.strerror or exc}"
    return None


def _unified(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
    )


def _finish(result: CheckResult, job: _Job, raw: _Raw, settings: Settings, report_unused: bool) -> None:
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
