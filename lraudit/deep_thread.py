"""Run the analysis of one file in a thread with a deep stack (the one place lraudit does this).

Valid code nested however deep CPython accepts it (hundreds of ``elif`` branches or concatenated
string lines, nested calls) must be analysed by libcst's recursive parser and visitors instead of
refused. :func:`in_deep_thread` gives :func:`lraudit.file_analysis.analyse` a thread with
:data:`ANALYSIS_STACK_BYTES` of stack and the recursion limit raised to
:data:`ANALYSIS_RECURSION_LIMIT`, in the parent process or in a pool worker alike.
"""
from __future__ import annotations

import sys
import threading
from typing import Dict

#: The analysis runs in a thread with this much stack and this recursion limit, so that valid code
#: however deep CPython accepts it (hundreds of ``elif`` branches or concatenated string lines, nested
#: calls) is analysed by libcst's recursive parser and visitors instead of refused. The stack is
#: virtual memory: only what a deep file touches is ever committed.
ANALYSIS_STACK_BYTES = 512 * 1024 * 1024
ANALYSIS_RECURSION_LIMIT = 60_000
_deep_lock = threading.Lock()


def in_deep_thread(fn, *args):
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
