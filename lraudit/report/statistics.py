"""``--statistics``: how many findings each rule has, instead of the findings themselves (as ruff's).

Text: one row per rule, ``count  code  [*]  name`` (``[*]`` when some are fixable with ``--fix``),
most frequent first, then the files that could not be checked (``error: path: message``). JSON:
``[{"code", "name", "count", "fixable_count"}]`` in the same order (the exit status tells of errors).
"""
from __future__ import annotations

import json
from collections import Counter
from typing import List


def statistics(result) -> List[dict]:
    counts = Counter(f.rule for f in result.findings)
    fixable = Counter(f.rule for f in result.findings if f.fixable)
    rows = []
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        sample = next(f for f in result.findings if f.rule == code)
        rows.append({"code": code, "name": sample.name, "count": count, "fixable_count": fixable[code]})
    return rows


def render_statistics(result, fmt: str) -> str:
    rows = statistics(result)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    out = []
    width = max((len(str(r["count"])) for r in rows), default=1)
    any_fixable = any(r["fixable_count"] for r in rows)
    for r in rows:
        mark = ("[*]  " if r["fixable_count"] else "     ") if any_fixable else ""
        out.append(f"{r['count']:>{width}}  {r['code']}  {mark}{r['name']}")
    for e in result.errors:
        out.append(f"error: {e['path']}: {e['message']}")
    return "".join(line + "\n" for line in out)
