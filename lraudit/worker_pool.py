"""The guarded process pool that analyses many files at once (``--jobs``).

:func:`run_pool` runs :func:`lraudit.file_analysis.analyse` on every task in worker processes and
reports each result once. A worker that dies (a parser's segmentation fault, the OOM killer) costs
one error line for the file it was analysing, never the run: each worker writes the position of the
file it is on into its own marker file; when the pool breaks, the markers name the files in flight.
Those are re-run one by one in a child process of their own (the one that crashes again is the
culprit), and every other unfinished file goes to a fresh pool. A pool whose workers cannot start
at all falls back to this process. Ctrl-C and SIGTERM end every worker at once.

:func:`worth_a_pool` says when the work is big enough for a pool to pay off.
"""
from __future__ import annotations

import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, FrozenSet, List, Optional, Tuple

from lraudit import file_analysis
from lraudit.file_analysis import Job, Raw

#: Below this much work (files needing a parse, or their total size), a pool costs more than it saves.
PARALLEL_MIN_FILES = 8
PARALLEL_MIN_BYTES = 256 * 1024

Task = Tuple[Job, FrozenSet[str], bool]  # a file, the rules selected, unsafe fixes allowed


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def worth_a_pool(workers: int, files: int, size: int) -> bool:
    """Whether ``files`` files of ``size`` characters in all are worth a pool of ``workers``."""
    return workers > 1 and files >= max(PARALLEL_MIN_FILES, 2) and (
        size >= PARALLEL_MIN_BYTES or files >= 4 * PARALLEL_MIN_FILES
    )


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


def _worker(args: Task) -> Raw:
    job, rules, unsafe = args
    return file_analysis.analyse(job, rules, unsafe)


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


def _worker_chunk(chunk: List[Tuple[int, Task]]) -> List[Tuple[int, Raw]]:
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


def _run_isolated(task: Task) -> Raw:
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
    if isinstance(raw, Raw):
        return raw
    code = process.exitcode
    how = f"exit status {code}"
    if code is not None and code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
    return Raw(error=f"internal error in lraudit: the analysis of this file crashed its process ({how}); "
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


def run_pool(tasks: List[Task], workers: int, report: Callable[[int, Raw], None]) -> None:
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
                report(position, file_analysis.analyse(*tasks[position]))
            return
        if not suspects and remaining:
            suspects = remaining[:1]  # no marker written: isolate one file at a time, still progressing
        for position in suspects:
            report(position, _run_isolated(tasks[position]))
        remaining = [p for p in remaining if p not in set(suspects)]
