"""Applying what the fixer produced (``--fix``, ``--diff``, and ``--add-noqa``'s comments).

Before the analysis, :func:`fix_select_without_suppressed` narrows the rules a file may be fixed for
(never one suppressed somewhere in it: the fixer cannot see comments). After it,
:func:`apply_fix` records the unified diff (per cell for notebooks) and, for ``--fix``, writes the
fixed text with :func:`write_fixed`: only over the very bytes that were analysed, keeping the file's
encoding, line endings, mode and hard links, atomically. A fix that cannot be written is an error
line and the file's findings stand unfixed. The fixes themselves are :mod:`lraudit.fix`'s.
"""
from __future__ import annotations

import difflib
import os
from typing import FrozenSet, List, Optional

from lraudit import notebook as _nb
from lraudit.atomic import replace_atomically
from lraudit.cache import content_hash
from lraudit.file_analysis import Job, Raw
from lraudit.file_reading import read_source_bytes
from lraudit.results import CheckResult
from lraudit.suppressions import Suppressions, might_have_directives


def fix_select_without_suppressed(job: Job, source: str, rules: FrozenSet[str]) -> FrozenSet[str]:
    """``job.fix_select`` less every rule a directive in ``source`` suppresses (all, for a bare one)."""
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


def apply_fix(result: CheckResult, job: Job, raw: Raw, encoding: Optional[str], write: bool) -> None:
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


def _unified(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
    )
