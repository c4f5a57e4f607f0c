"""``--format github``: GitHub Actions workflow commands, one annotation per finding.

``::error file=train.py,line=12,endLine=12,col=5,endColumn=18,title=LR001::message`` (``::warning`` /
``::notice`` by severity; a range over several lines gives ``line``/``endLine`` without columns). Notebook findings carry the line and column of the ``.ipynb`` file itself where the
reported cell line is (what GitHub shows the annotation on), and their message starts with
``cell N:line M``. Files that could not be checked are ``::error`` annotations titled ``lraudit``.
"""
from __future__ import annotations

from typing import List

from lraudit.report.locations import RawLines

_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _span(f) -> str:
    """The finding's range. GitHub takes columns only within one line (its runner drops an annotation
    whose columns span lines), so a range over several lines is given by its lines alone."""
    end_line = getattr(f, "end_line", None) or f.line
    if end_line == f.line:
        end_col = max(getattr(f, "end_column", None) or f.column, f.column)
        return f"line={f.line},endLine={end_line},col={f.column},endColumn={end_col},"
    return f"line={f.line},endLine={max(end_line, f.line)},"


def _raw_location(raw: RawLines, path: str, cell: int, line: int, column: int) -> str:
    position = raw.position(path, cell, line, column)
    return f"line={position[0]},col={position[1]}," if position else ""


def render_github(result) -> str:
    lines: List[str] = []
    raw = RawLines(getattr(result, "sources", {}))
    for f in result.findings:
        level = _LEVEL.get(result.severity_of(f), "error")
        cell = getattr(f, "cell", None)
        if cell:
            lines.append(
                f"::{level} file={_prop(f.path)},{_raw_location(raw, f.path, cell, f.line, f.column)}"
                f"title={_prop(f.rule)}::{_data(f'cell {cell}:line {f.line}:col {f.column}: {f.message}')}"
            )
        else:
            lines.append(f"::{level} file={_prop(f.path)},{_span(f)}title={_prop(f.rule)}::{_data(f.message)}")
    for u in result.unused_ignores if result.report_unused_ignores else ():
        loc = f"line={u.line},col={u.column}," if u.cell is None else _raw_location(raw, u.path, u.cell, u.line, u.column)
        msg = u.message if u.cell is None else f"cell {u.cell}:line {u.line}: {u.message}"
        lines.append(f"::warning file={_prop(u.path)},{loc}title=unused-suppression::{_data(msg)}")
    for e in result.errors:
        lines.append(f"::error file={_prop(e['path'])},title=lraudit::{_data(e['message'])}")
    for n in getattr(result, "notes", ()):
        lines.append(f"::notice file={_prop(n['path'])},title=lraudit::{_data(n['message'])}")
    return "".join(line + "\n" for line in lines)
