"""``lraudit check --add-noqa``: a ``# lraudit: ignore[CODES]`` comment on every reported line.

For adopting lraudit on a codebase with existing findings (the comments are then the list of what to
look at later). Per finding, the comment goes on the reported line when a comment can end that line,
else on the first line of the statement holding it (a suppression there covers the whole statement,
see :mod:`lraudit.suppressions`); lines that end inside a string or after a backslash continuation
never get one. An lraudit ignore comment already on the line gets the new codes merged in
(``# lraudit: ignore[LR002]`` -> ``# lraudit: ignore[LR001, LR002]``); any other comment stays and the
directive is added after it. The new text must parse and re-check without the suppressed findings,
else the file is left unchanged and reported. Running it twice changes nothing the second time.
Notebooks get the comments in their cells (the rest of their JSON text unchanged, byte for byte).
Files are written as fixes are: only over the bytes that were checked, keeping hard links.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from lraudit import notebook as _nb

_DIRECTIVE = re.compile(r"#\s*lraudit\s*:\s*ignore\s*\[(?P<codes>[^\]]*)\]", re.IGNORECASE)


@dataclass
class AddNoqaResult:
    added: int = 0  # findings newly suppressed
    files: List[str] = field(default_factory=list)  # files changed
    errors: List[Dict[str, str]] = field(default_factory=list)  # {"path", "message"}: files not changed
    unplaced: List[Dict[str, str]] = field(default_factory=list)  # findings no comment could be placed for


def _line_structure(source: str) -> Tuple[Set[int], Dict[int, int], Dict[int, Tuple[int, str]]]:
    """(lines a comment may end, first line of each line's statement, existing comment per line as
    (column, text))."""
    safe: Set[int] = set()
    stmt_start: Dict[int, int] = {}
    comments: Dict[int, Tuple[int, str]] = {}
    start: Optional[int] = None
    skip = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            safe.add(tok.start[0])
        if tok.type == tokenize.COMMENT:
            safe.add(tok.start[0])
            comments[tok.start[0]] = (tok.start[1], tok.string)
        if tok.type == tokenize.NEWLINE:
            if start is not None:
                for line in range(start, tok.end[0] + 1):
                    stmt_start[line] = start
            start = None
        elif start is None and tok.type not in skip and tok.type != tokenize.ENDMARKER:
            start = tok.start[0]
    return safe, stmt_start, comments


def _with_directive(line: str, comment: Optional[Tuple[int, str]], codes: Set[str]) -> str:
    body = line.rstrip("\r\n")
    eol = line[len(body):]
    if comment is not None:
        col, text = comment
        match = _DIRECTIVE.search(text)
        if match is not None:
            old = [c.strip().upper() for c in re.split(r"[\s,]+", match.group("codes")) if c.strip()]
            merged = sorted(set(old) | codes)
            new_text = text[: match.start()] + f"# lraudit: ignore[{', '.join(merged)}]" + text[match.end():]
            return body[:col] + new_text + body[col + len(text):] + eol
    return body.rstrip(" \t") + f"  # lraudit: ignore[{', '.join(sorted(codes))}]" + eol


def add_comments(source: str, wanted: Dict[int, Set[str]]) -> Tuple[str, List[int]]:
    """``source`` with a directive for ``wanted`` ({reported line: codes}); and the reported lines no
    comment could be placed for. Raises SyntaxError/tokenize.TokenError when the source does not
    tokenize."""
    safe, stmt_start, comments = _line_structure(source)
    lines = source.splitlines(keepends=True)
    per_line: Dict[int, Set[str]] = {}
    failed: List[int] = []
    for line, codes in sorted(wanted.items()):
        target = next((c for c in (line, stmt_start.get(line, line)) if c in safe and c <= len(lines)), None)
        if target is None:
            failed.append(line)
            continue
        per_line.setdefault(target, set()).update(codes)
    for target, codes in per_line.items():
        lines[target - 1] = _with_directive(lines[target - 1], comments.get(target), codes)
    return "".join(lines), failed


def add_noqa(result, settings) -> AddNoqaResult:
    """Add directives for every finding of ``result`` (a :class:`lraudit.results.CheckResult`)."""
    from lraudit.cache import content_hash
    from lraudit.engine import check_text
    from lraudit.file_reading import DecodeError, decode_source, read_source_bytes
    from lraudit.fix_apply import write_fixed

    out = AddNoqaResult()
    by_path: Dict[str, list] = {}
    for f in result.findings:
        by_path.setdefault(f.path, []).append(f)
    for path, findings in sorted(by_path.items()):
        data = read_source_bytes(path)
        if isinstance(data, str):
            out.errors.append({"path": path, "message": f"--add-noqa: {data}"})
            continue
        notebook = path.endswith(".ipynb")
        try:
            if notebook:
                text, encoding = data.decode("utf-8-sig"), "utf-8"
            else:
                decoded = decode_source(data)
                text, encoding = decoded.text, decoded.encoding
        except (UnicodeDecodeError, DecodeError) as exc:
            out.errors.append({"path": path, "message": f"--add-noqa: cannot decode: {exc}"})
            continue
        checked = getattr(result, "sources", {}).get(path)
        if checked is not None and checked != text:
            out.errors.append({"path": path, "message": "--add-noqa: comments not written: the file changed since "
                                                        "it was checked (edited meanwhile?); run lraudit again"})
            continue
        try:
            if notebook:
                new_text, failed = _add_to_notebook(text, findings)
            else:
                new_text, failed_lines = add_comments(text, _wanted(findings))
                failed = {(0, line) for line in failed_lines}
        except (SyntaxError, tokenize.TokenError, _nb.NotebookError) as exc:
            out.errors.append({"path": path, "message": f"--add-noqa: file left unchanged: {exc}"})
            continue
        if new_text == text:
            _report_failed(out, path, failed)
            continue
        verdict = _verify(text, new_text, path, notebook, findings, failed, settings, check_text)
        if verdict is not None:
            out.errors.append({"path": path, "message": f"--add-noqa: file left unchanged: {verdict}"})
            continue
        # only over the bytes that were checked (an editor may have saved meanwhile); hard links kept
        problem = write_fixed(path, new_text, encoding, content_hash(data), notebook=notebook)
        if problem is not None:
            out.errors.append({"path": path, "message": "--add-noqa: " + problem.replace("fix not written",
                                                                                     "comments not written")})
            continue
        out.files.append(path)
        out.added += sum(1 for f in findings if _key(f)[:2] not in failed)
        _report_failed(out, path, failed)
    return out


def _report_failed(out: AddNoqaResult, path: str, failed) -> None:
    for cell, line in sorted(failed):
        where = f"cell {cell}, line {line}" if cell else f"line {line}"
        out.unplaced.append({"path": path, "message": f"no place for a suppression comment on {where} "
                                                      "(inside a string or after a line continuation)"})


def _key(f) -> Tuple[int, int, str]:
    return getattr(f, "cell", 0) or 0, f.line, f.rule


def _wanted(findings) -> Dict[int, Set[str]]:
    wanted: Dict[int, Set[str]] = {}
    for f in findings:
        wanted.setdefault(f.line, set()).add(f.rule)
    return wanted


def _add_to_notebook(raw: str, findings) -> Tuple[str, Set[Tuple[int, int]]]:
    """Directives in the cells of a notebook (placed using the joined module's statement structure)."""
    nb = _nb.load(raw)
    cells = {c.index: c for c in nb.cells}
    wanted: Dict[int, Set[str]] = {}
    for f in findings:
        cell = cells.get(getattr(f, "cell", 0))
        if cell is not None:
            wanted.setdefault(cell.start + f.line, set()).add(f.rule)
    joined, failed_lines = add_comments(nb.source, wanted)
    failed = {nb.locate(line) for line in failed_lines}
    if not (set(wanted) - set(failed_lines)):
        return raw, failed
    new_lines = joined.splitlines(keepends=True)
    old_lines = nb.source.splitlines(keepends=True)
    changes: Dict[int, str] = {}
    for cell in nb.cells:
        text_lines = cell.text.splitlines(keepends=True)
        changed = False
        for i in range(cell.lines):
            j = cell.start + i
            if j < len(new_lines) and new_lines[j] != old_lines[j]:
                if i >= len(text_lines) or text_lines[i].rstrip("\r\n") != old_lines[j].rstrip("\r\n"):
                    raise _nb.NotebookError(f"cell {cell.index}, line {i + 1} holds IPython syntax")
                eol = text_lines[i][len(text_lines[i].rstrip("\r\n")):]
                text_lines[i] = new_lines[j].rstrip("\r\n") + eol
                changed = True
        if changed:
            changes[cell.index] = "".join(text_lines)
    # only the changed cells' `source` is rewritten; the rest of the JSON text stays byte for byte
    return _nb.splice_sources(raw, changes), failed


def _verify(old: str, new: str, path: str, notebook: bool, findings, failed, settings, check_text) -> Optional[str]:
    """None when ``new`` parses wherever ``old`` did and no finding that got a comment remains."""
    old_source = _nb.load(old).source if notebook else old
    new_source = _nb.load(new).source if notebook else new
    try:
        ast.parse(old_source)
    except SyntaxError:
        pass
    else:
        try:
            ast.parse(new_source)
        except SyntaxError as exc:
            return f"the comments would break the code ({exc.msg}, line {exc.lineno})"
    after = check_text(new, path, settings, notebook=notebook)
    if after.errors:
        return after.errors[0]["message"]
    expected = {_key(f) for f in findings if _key(f)[:2] in failed}
    if not {_key(f) for f in after.findings} <= expected:
        return "the comments did not suppress the findings"
    return None
