"""Places a report points at, beyond a finding's own range.

- :func:`related_places`: the other places a message names (``(line 15)`` in a module, ``(cell 3,
  line 4)`` in a notebook, see :data:`lraudit.notebook.LINE_REFERENCE`), for code frames and SARIF
  ``relatedLocations``.
- :class:`RawLines`: for notebook findings, the line and column of the ``.ipynb`` file itself where
  the reported cell line is, so that code scanning and GitHub annotations mark the line that holds
  the call (computed once per notebook, only for notebooks with something to report).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

_PLACE = re.compile(r"\b(?:cell (?P<cell>\d+), )?line (?P<line>\d+)\b")

Place = Tuple[Optional[int], int]  # (cell or None, line)


def related_places(message: str, cell: Optional[int] = None) -> List[Place]:
    """Places named by ``message``, in order, each once. In a notebook finding's message (``cell``
    given) only ``cell N, line M`` counts: bare ``line N`` there would be another coordinate system."""
    from lraudit.notebook import names_other_file

    out: List[Place] = []
    for m in _PLACE.finditer(message):
        if names_other_file(message, m.start(), m.end()):
            continue
        if cell is not None and m.group("cell") is None:
            continue
        if cell is None and m.group("cell") is not None:
            continue
        place = (int(m.group("cell")) if m.group("cell") else None, int(m.group("line")))
        if place not in out:
            out.append(place)
    return out


class RawLines:
    """Positions in the raw ``.ipynb`` text of cell coordinates, per notebook of a result."""

    def __init__(self, sources: Dict[str, str]):
        self._sources = sources
        self._cache: Dict[str, dict] = {}

    def position(self, path: str, cell: int, line: int, column: int) -> Optional[Tuple[int, int]]:
        """(line, column) in the file, 1-based; None when the notebook's text is not at hand."""
        if path not in self._cache:
            raw = self._sources.get(path)
            if raw is None:
                self._cache[path] = {}
            else:
                from lraudit.notebook import raw_positions

                self._cache[path] = raw_positions(raw)
        cell_positions = self._cache[path].get(cell)
        if cell_positions is None or not cell_positions.segments:
            return None
        return cell_positions.raw(line, column)

    def region(self, path: str, cell: int, line: int, column: int, end_line: int, end_column: int):
        """(start line, start column, end line, end column) in the file, or None."""
        start = self.position(path, cell, line, column)
        if start is None:
            return None
        end = self.position(path, cell, max(line, end_line or line), end_column or column) or start
        if end < start:
            end = start
        return start[0], start[1], end[0], end[1]
