"""Jupyter notebooks (``.ipynb``): checked as one module, reported per cell.

The code cells are joined in order into one Python source. IPython syntax is neutralised without
changing the number of lines: ``%magic`` and ``!shell`` lines become ``pass`` (same indentation),
``x = !ls`` becomes ``x = None``, ``obj?`` becomes ``pass``, and a cell whose cell magic runs another
language (``%%bash``, ``%%html``, ...) becomes blank lines. Findings are mapped back to
``cell N, line M``; N counts every cell of the notebook from 1 (markdown cells included), as editors
number them. A message that names another place (``(line 9)`` of the joined module) names it in the
same coordinates, ``(cell 3, line 4)``. For SARIF and GitHub annotations, :func:`raw_positions` finds
where a cell's line and column are in the ``.ipynb`` file itself, so code scanning marks the line that
holds the call. Fixes rewrite only the cells they change, and keep the IPython lines of those cells.
"""
from __future__ import annotations

import bisect
import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from lraudit.findings import Finding

#: Cell magics whose body is still Python (the magic line alone is neutralised).
PYTHON_CELL_MAGICS = frozenset(
    {"time", "timeit", "capture", "prun", "debug", "pypy", "python", "python3", "markdown_python", "autoreload"}
)

_LINE_MAGIC = re.compile(r"^(\s*)[%!]")
_ASSIGN_MAGIC = re.compile(r"^(\s*)([A-Za-z_][\w.,\s\[\]]*?)\s*=\s*[%!]")
_HELP = re.compile(r"^(\s*)(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")
_BOUNDARY = "# lraudit: notebook cell boundary"
#: How rule messages name another place of the checked module: ``(line 15)``, ``line 27``.
LINE_REFERENCE = re.compile(r"\bline (\d+)\b")
_OTHER_FILE_BEFORE = re.compile(r"\.(?:py|pyi|ipynb)\W{0,3}$")
_OTHER_FILE_AFTER = re.compile(r"\s+(?:of|in)\s+\W?[\w./-]+\.(?:py|pyi|ipynb)\b")


def names_other_file(message: str, start: int, end: Optional[int] = None) -> bool:
    """Whether the ``line N`` at ``start`` (ending at ``end``) belongs to a file named beside it
    (``engine.py, line 40``, ``line 40 of engine.py``): a place in another module, which keeps its
    own coordinates."""
    if _OTHER_FILE_BEFORE.search(message[max(0, start - 12): start]):
        return True
    return end is not None and bool(_OTHER_FILE_AFTER.match(message, end))


class NotebookError(Exception):
    """The file is not a notebook lraudit can read."""


@dataclass(frozen=True, order=False)
class NotebookFinding(Finding):
    """A finding in a notebook: ``line``/``end_line`` count within ``cell`` (1-based)."""

    cell: int = 0

    def to_json(self) -> dict:
        data = super().to_json()
        data["cell"] = self.cell
        return data


@dataclass
class Cell:
    index: int  # 1-based position among all the notebook's cells
    text: str  # original source
    neutral: str  # IPython syntax neutralised, same number of lines
    start: int = 0  # 0-based line offset of its first line in the joined source
    lines: int = 0


@dataclass
class Notebook:
    data: Dict[str, Any]
    raw: str
    cells: List[Cell] = field(default_factory=list)
    python: bool = True  # False for notebooks of another kernel language (skipped)

    @property
    def source(self) -> str:
        """The code cells joined into one module (what the rules see)."""
        return "".join(_terminated(c.neutral) for c in self.cells)

    # -- locations ----------------------------------------------------------------------------------
    def locate(self, line: int) -> Tuple[int, int]:
        """(cell index, line within cell) of 1-based ``line`` of :attr:`source`."""
        for cell in self.cells:
            if cell.start < line <= cell.start + cell.lines:
                return cell.index, line - cell.start
        if self.cells:
            last = self.cells[-1]
            return last.index, max(1, line - last.start)
        return 1, line

    def map_finding(self, f: Finding) -> NotebookFinding:
        cell, line = self.locate(f.line)
        end_cell, end_line = self.locate(max(f.end_line, f.line))
        end_column = f.end_column
        if end_cell != cell:  # a range never leaves its cell in the report
            end_line, end_column = line, f.column
        return NotebookFinding(
            f.path, line, f.column, end_line, end_column, f.rule, self.map_message(f.message), f.fixable, f.level,
            cell=cell
        )

    def _locate_fixed(self, line: int) -> Tuple[int, int]:
        """(cell index, line within cell) of 1-based ``line`` of :meth:`fix_source`."""
        offset = 0
        for cell in self.cells:
            if offset < line <= offset + cell.lines:
                return cell.index, line - offset
            offset += cell.lines + 1  # the boundary comment after each cell
        return (self.cells[-1].index, max(1, line - offset)) if self.cells else (1, line)

    def map_fixed(self, f: Finding) -> "NotebookFinding":
        """A finding the fixer reports in :meth:`fix_source` coordinates (a boundary line after each
        cell), in cell coordinates like every other notebook finding (its message too)."""
        cell, line = self._locate_fixed(f.line)
        end_cell, end_line = self._locate_fixed(max(f.end_line, f.line))
        end_column = f.end_column
        if end_cell != cell:
            end_line, end_column = line, f.column
        return NotebookFinding(f.path, line, f.column, end_line, end_column, f.rule,
                               self.map_message(f.message, self._locate_fixed), f.fixable, cell=cell)

    def map_message(self, message: str, locate=None) -> str:
        """``line 9`` of the joined module (or of what ``locate`` maps), in a message, becomes
        ``cell 3, line 4``."""
        locate = locate or self.locate

        def repl(match: "re.Match[str]") -> str:
            if names_other_file(message, match.start(), match.end()):
                return match.group(0)
            cell, cline = locate(int(match.group(1)))
            return f"cell {cell}, line {cline}"

        return LINE_REFERENCE.sub(repl, message)

    def describe(self, line: int, column: int = 0) -> str:
        cell, cline = self.locate(line)
        return f"cell {cell}:line {cline}" + (f":col {column}" if column else "")

    # -- fixes --------------------------------------------------------------------------------------
    def fix_source(self) -> str:
        """The joined source with a boundary comment between cells, for :func:`lraudit.fix` to edit."""
        return "".join(_terminated(c.neutral) + _BOUNDARY + "\n" for c in self.cells)

    def apply_fixed(self, fixed: str) -> Optional[str]:
        """The notebook's new JSON text after a fix of :meth:`fix_source`; None when nothing changed.

        Raises NotebookError when the fix broke the cell structure (the notebook is then left alone).
        """
        parts = fixed.split(_BOUNDARY + "\n")
        if len(parts) != len(self.cells) + 1 or parts[-1].strip():
            raise NotebookError("a fix crossed a cell boundary; notebook left unchanged")
        changes: Dict[int, str] = {}
        raw_cells = self.data["cells"]
        for cell, new_neutral in zip(self.cells, parts):
            if new_neutral == _terminated(cell.neutral):
                continue
            new_text = _restore(cell.text, cell.neutral, new_neutral)
            if not cell.text.endswith("\n") and new_text.endswith("\n"):
                new_text = new_text[:-1]
            if new_text == cell.text:
                continue
            changes[cell.index] = new_text
            raw = raw_cells[cell.index - 1]
            if isinstance(raw.get("source"), list):
                raw["source"] = new_text.splitlines(keepends=True)
            else:
                raw["source"] = new_text
            cell.text = new_text
        if not changes:
            return None
        try:
            return splice_sources(self.raw, changes)
        except NotebookError:
            return dumps(self.data, self.raw)  # a layout we cannot edit in place: serialise like Jupyter


def _terminated(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _line_count(text: str) -> int:
    return len(_terminated(text).splitlines()) if text else 0


def _restore(original: str, neutral: str, fixed: str) -> str:
    """Apply the change neutral -> fixed to ``original``, keeping its IPython lines where untouched."""
    orig_lines = _terminated(original).splitlines(keepends=True)
    neutral_lines = _terminated(neutral).splitlines(keepends=True)
    fixed_lines = fixed.splitlines(keepends=True)
    out: List[str] = []
    matcher = difflib.SequenceMatcher(a=neutral_lines, b=fixed_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.extend(orig_lines[i1:i2])
        else:
            out.extend(fixed_lines[j1:j2])
    return "".join(out)


def neutralise(text: str) -> str:
    """IPython-only syntax of one cell replaced by Python of the same line count."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("%%"):
        name = first.lstrip()[2:].split(None, 1)[0] if first.lstrip()[2:].strip() else ""
        if name not in PYTHON_CELL_MAGICS:
            return "".join("\n" if ln.endswith("\n") else "" for ln in lines)
    out: List[str] = []
    continuation = False
    for ln in lines:
        eol = "\n" if ln.endswith("\n") else ""
        body = ln[: -1] if eol else ln
        if body.endswith("\r"):
            body, eol = body[:-1], "\r" + eol
        if continuation:
            out.append(eol)
            continuation = body.rstrip().endswith("\\")
            continue
        m = _LINE_MAGIC.match(body)
        if m:
            out.append(f"{m.group(1)}pass{eol}")
            continuation = body.rstrip().endswith("\\")
            continue
        m = _ASSIGN_MAGIC.match(body)
        if m and not body.lstrip().startswith("#"):
            out.append(f"{m.group(1)}{m.group(2)} = None{eol}")
            continuation = body.rstrip().endswith("\\")
            continue
        m = _HELP.match(body)
        if m:
            out.append(f"{m.group(1)}pass{eol}")
            continue
        out.append(ln)
    return "".join(out)


def load(raw: str) -> Notebook:
    """Parse a notebook's JSON text; NotebookError when it is not a notebook."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"invalid notebook JSON: {exc}") from None
    except RecursionError:
        raise NotebookError("invalid notebook JSON: nested too deeply to read") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError("not a Jupyter notebook (no `cells` list)")
    nb = Notebook(data=data, raw=raw)
    meta = _table(data, "metadata", "the notebook")
    language = _table(meta, "language_info", "metadata").get("name") or \
        _table(meta, "kernelspec", "metadata").get("language")
    if isinstance(language, str) and language.lower() not in ("python", "python3", "ipython", "ipython3"):
        nb.python = False
        return nb
    offset = 0
    for index, raw_cell in enumerate(data["cells"], 1):
        if not isinstance(raw_cell, dict) or raw_cell.get("cell_type") != "code":
            continue
        src = raw_cell.get("source", "")
        if src is None:
            src = ""
        if isinstance(src, list):
            if not all(isinstance(part, str) for part in src):
                raise NotebookError(f"malformed notebook: cell {index}'s `source` list holds a non-string")
            text = "".join(src)
        elif isinstance(src, str):
            text = src
        else:
            raise NotebookError(f"malformed notebook: cell {index}'s `source` is neither a string nor a list")
        neutral = neutralise(text)
        n = _line_count(neutral)
        nb.cells.append(Cell(index=index, text=text, neutral=neutral, start=offset, lines=n))
        offset += n
    return nb


# -- editing the JSON text in place ----------------------------------------------------------------
# A fix rewrites only the `source` values of the cells it changed, inside the notebook's own text:
# everything else (line endings, `\u00e9` escapes, key order, spacing, outputs) stays byte for byte.

_JSON_SPACE = " \t\r\n"
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: linear, no per-char alternation


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_SPACE:
        i += 1
    return i


def _string_end(text: str, i: int) -> int:
    """Index just past the JSON string starting at ``text[i] == '"'`` (one regex match: outputs hold
    megabytes of base64 that a character loop would crawl through)."""
    m = _JSON_STRING.match(text, i)
    if m is None:
        raise NotebookError("unterminated string in notebook JSON")
    return m.end()


def _value_end(text: str, i: int) -> int:
    """Index just past the JSON value starting at ``i`` (iterative: no recursion on deep values)."""
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] not in "[{":
        while i < len(text) and text[i] not in ",]}" + _JSON_SPACE:
            i += 1
        return i
    depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise NotebookError("unbalanced brackets in notebook JSON")


def _members(text: str, i: int):
    """(key, value start, value end) of the object starting at ``text[i] == '{'``."""
    i = _skip_ws(text, i + 1)
    while i < len(text) and text[i] != "}":
        end = _string_end(text, i)
        key = json.loads(text[i:end])
        i = _skip_ws(text, end)
        if text[i] != ":":
            raise NotebookError("malformed notebook JSON")
        start = _skip_ws(text, i + 1)
        stop = _value_end(text, start)
        yield key, start, stop
        i = _skip_ws(text, stop)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)


def _elements(text: str, i: int):
    """(start, end) of each element of the array starting at ``text[i] == '['``."""
    i = _skip_ws(text, i + 1)
    while i < len(text) and text[i] != "]":
        stop = _value_end(text, i)
        yield i, stop
        i = _skip_ws(text, stop)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)


def _encode_like(value: str, original: str) -> str:
    """A JSON string for ``value`` escaped as the original text was (``\u00e9`` or literal é)."""
    ascii_only = "\\u" in original and not any(ord(c) > 127 for c in original)
    return json.dumps(value, ensure_ascii=ascii_only)


def _source_value(new_text: str, original: str) -> str:
    """The new ``source`` value laid out like the original one (a list of lines or one string)."""
    if not original.startswith("["):
        return _encode_like(new_text, original)
    lines = new_text.splitlines(keepends=True)
    if not lines:
        return "[]"
    first = original.find('"')
    head = original[1:first] if first > 0 else ""
    if "\n" not in head:  # one line: ["a", "b"]
        sep = original[original.find(",", first) + 1:] if "," in original else " "
        gap = " " if sep.startswith(" ") else ""
        return "[" + ("," + gap).join(_encode_like(x, original) for x in lines) + "]"
    eol = "\r\n" if "\r\n" in head else "\n"
    indent = head.split("\n")[-1]
    closing = original[original.rfind("\n", 0, len(original) - 1) + 1:-1] if "\n" in original else ""
    closing = closing if not closing.strip() else ""
    body = ("," + eol).join(indent + _encode_like(x, original) for x in lines)
    return "[" + eol + body + eol + closing + "]"


def splice_sources(raw: str, changes: Dict[int, str]) -> str:
    """``raw`` (a notebook's JSON text) with the ``source`` of the cells in ``changes`` (1-based
    index -> new text) replaced, and nothing else touched. NotebookError when the text's layout is
    not one this scanner follows."""
    start = _skip_ws(raw, 0)
    if start >= len(raw) or raw[start] != "{":
        raise NotebookError("notebook JSON is not an object")
    cells_span = next(((a, b) for key, a, b in _members(raw, start) if key == "cells"), None)
    if cells_span is None or raw[cells_span[0]] != "[":
        raise NotebookError("no `cells` list")
    edits = []
    for index, (a, b) in enumerate(_elements(raw, cells_span[0]), 1):
        if index not in changes or raw[a] != "{":
            continue
        span = next(((x, y) for key, x, y in _members(raw, a) if key == "source"), None)
        if span is None:
            raise NotebookError("a changed cell has no `source`")
        edits.append((span[0], span[1], _source_value(changes[index], raw[span[0]:span[1]])))
    if len(edits) != len(changes):
        raise NotebookError("changed cells not found in the notebook text")
    out = raw
    for a, b, value in sorted(edits, reverse=True):
        out = out[:a] + value + out[b:]
    if json.loads(out)["cells"] is None:  # pragma: no cover - defensive: the result must be JSON
        raise NotebookError("splice failed")
    return out


def _table(data: Dict[str, Any], key: str, where: str) -> Dict[str, Any]:
    """An optional JSON object member (absent or null: empty); NotebookError for another type."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotebookError(f"malformed notebook: `{key}` of {where} is a {type(value).__name__}, not an object")
    return value


def dumps(data: Dict[str, Any], original_raw: str) -> str:
    """Serialise like Jupyter did for the original file (its indent, non-ASCII kept, final newline)."""
    m = re.search(r"^\{\s*\n([ \t]+)\"", original_raw)
    indent: Any = len(m.group(1)) if m else (None if "\n" not in original_raw.strip() else 1)
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    if original_raw.endswith("\n"):
        text += "\n"
    return text


# --------------------------------------------------------------------------------------------------
# Positions in the .ipynb file itself (SARIF and GitHub annotate the raw file)



@dataclass
class _Segment:
    decoded_start: int  # offset of its first character in the cell's source text
    literal_start: int  # offset of the opening quote in the raw file
    literal: str  # the JSON string literal, quotes included


@dataclass
class CellPositions:
    """Where each character of one code cell's source is in the raw ``.ipynb`` text."""

    text: str
    segments: List[_Segment]
    newlines: List[int]  # offsets of the raw file's line feeds

    def raw(self, line: int, column: int) -> Tuple[int, int]:
        """(line, column) in the raw file, both 1-based, of 1-based ``line``/``column`` of the cell."""
        lines = self.text.splitlines(keepends=True) or [""]
        line = min(max(1, line), len(lines))
        offset = sum(len(ln) for ln in lines[: line - 1]) + max(0, min(column - 1, len(lines[line - 1])))
        raw_offset = self._raw_offset(offset)
        raw_line = bisect.bisect_left(self.newlines, raw_offset) + 1
        line_start = self.newlines[raw_line - 2] + 1 if raw_line > 1 else 0
        return raw_line, raw_offset - line_start + 1

    def _raw_offset(self, offset: int) -> int:
        if not self.segments:
            return 0
        index = max(0, bisect.bisect_right([s.decoded_start for s in self.segments], offset) - 1)
        seg = self.segments[index]
        want = offset - seg.decoded_start
        i, decoded, body = 1, 0, seg.literal
        while decoded < want and i < len(body) - 1:
            if body[i] == "\\":
                if body[i + 1] == "u":
                    high = int(body[i + 2: i + 6], 16)
                    i += 12 if 0xD800 <= high < 0xDC00 and body[i + 6: i + 8] == "\\u" else 6
                else:
                    i += 2
            else:
                i += 1
            decoded += 1
        return seg.literal_start + min(i, len(body) - 1)


def raw_positions(raw: str) -> Dict[int, CellPositions]:
    """Per code cell (numbered as :class:`Cell` does), where its source lies in the raw JSON text
    (the scanner :func:`splice_sources` uses). Empty when the text cannot be read this way (the caller
    then falls back to the cell's location)."""
    out: Dict[int, CellPositions] = {}
    try:
        start = _skip_ws(raw, 0)
        if raw[start:start + 1] != "{":
            return {}
        cells = next(((a, b) for key, a, b in _members(raw, start) if key == "cells"), None)
        if cells is None or raw[cells[0]] != "[":
            return {}
        newlines = [m.start() for m in re.finditer("\n", raw)]
        for index, (a, _) in enumerate(_elements(raw, cells[0]), 1):
            if raw[a] != "{":
                continue
            source = next(((x, y) for key, x, y in _members(raw, a) if key == "source"), None)
            if source is None:
                continue
            literals = [source] if raw[source[0]] == '"' else (
                list(_elements(raw, source[0])) if raw[source[0]] == "[" else [])
            segments: List[_Segment] = []
            parts: List[str] = []
            decoded = 0
            for x, y in literals:
                if raw[x] != '"':
                    continue
                part = json.loads(raw[x:y])
                segments.append(_Segment(decoded, x, raw[x:y]))
                parts.append(part)
                decoded += len(part)
            out[index] = CellPositions("".join(parts), segments, newlines)
    except (NotebookError, ValueError, IndexError, RecursionError):
        return {}
    return out
