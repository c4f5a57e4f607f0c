"""Code frames under text findings, as ruff prints them: the reported source line with a caret under
the reported range, and the line the message refers to (``(line 15)``) with a dashed underline::

       |
    15 |         optimizer.step()
       |         ---------------- line 15
       :
    29 |         scheduler.step()
       |         ^^^^^^^^^^^^^^^^ LR001
       |

Lines come from the text the engine checked (``CheckResult.sources``); notebooks show cell lines and
number them ``cell:line``. A finding whose file text is not at hand gets no frame.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from lraudit.report.locations import related_places

Key = Tuple[int, int]  # (cell, line); cell 0 outside notebooks


class SourceLines:
    """The lines of one checked file (notebooks: of each code cell)."""

    def __init__(self, text: str, notebook: bool):
        self.notebook = notebook
        self.lines: Dict[Key, str] = {}
        if notebook:
            from lraudit.notebook import NotebookError, load

            try:
                nb = load(text)
            except NotebookError:
                return
            for cell in nb.cells:
                for number, line in enumerate(cell.text.splitlines(), 1):
                    self.lines[(cell.index, number)] = line
        else:
            for number, line in enumerate(text.splitlines(), 1):
                self.lines[(0, number)] = line

    def get(self, key: Key) -> Optional[str]:
        return self.lines.get(key)


def _gutter(key: Key) -> str:
    return f"{key[0]}:{key[1]}" if key[0] else str(key[1])


def _underline(text: str, start: int, end: int, char: str) -> Tuple[int, int]:
    """0-based [start, end) of the marked range, clamped into the line, never empty."""
    start = max(0, min(start, len(text)))
    end = max(start + 1, min(end, len(text.rstrip()) or start + 1))
    return start, end


def code_frame(finding, source: SourceLines) -> List[Tuple[str, str, Optional[str]]]:
    """Rows of the frame: (gutter, text, style) with style None for source lines, or "caret"/"related"
    for underline rows. Empty when the reported line is not in ``source``."""
    cell = getattr(finding, "cell", None) or 0
    main_key = (cell, finding.line)
    main_line = source.get(main_key)
    if main_line is None:
        return []
    marks: Dict[Key, Tuple[str, int, int, str]] = {}
    end_column = finding.end_column if finding.end_line == finding.line else len(main_line.rstrip()) + 1
    start, end = _underline(main_line, finding.column - 1, end_column - 1, "^")
    marks[main_key] = ("^", start, end, finding.rule)
    for place_cell, place_line in related_places(finding.message, cell or None):
        key = (place_cell or 0, place_line)
        text = source.get(key)
        if text is None or key in marks:
            continue
        indent = len(text) - len(text.lstrip())
        code_end = text.find("  #", indent)  # a trailing comment is not the place (a heuristic: display only)
        start, end = _underline(text, indent, code_end if code_end > indent else len(text.rstrip()), "-")
        label = f"cell {key[0]}, line {key[1]}" if key[0] else f"line {key[1]}"
        marks[key] = ("-", start, end, label)
    rows: List[Tuple[str, str, Optional[str]]] = [("", "", None)]
    previous: Optional[Key] = None
    for key in sorted(marks):
        if previous is not None and not (key[0] == previous[0] and key[1] == previous[1] + 1):
            rows.append((":", "", None))
        char, start, end, label = marks[key]
        text = source.get(key) or ""
        rows.append((_gutter(key), text, None))
        pad = "".join(c if c == "\t" else " " for c in text[:start])  # tabs stay tabs: columns line up
        rows.append(("", pad + char * (end - start) + " " + label, "caret" if char == "^" else "related"))
        previous = key
    rows.append(("", "", None))
    return rows
