"""``--format json``: the contract of DESIGN.md section 3, extended only by optional keys.

``{"version": 1, "files_checked": N, "findings": [{"path", "line", "column", "end_line", "end_column",
"rule", "name", "severity", "message", "fixable"}], "errors": [{"path", "message"}]}``; a finding in a
notebook adds ``"cell"`` (its ``line``/``end_line`` then count within that cell). ``"unused_ignores"``
appears with ``--report-unused-ignores``, ``"fixed"`` when ``--fix``/``--diff`` fixed something.
"""
from __future__ import annotations

import json
import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """JSON text whose lone surrogates (undecodable bytes of a file name, kept by the filesystem
    encoding's surrogateescape) are written as ``\\udcXX`` escapes: valid JSON, valid UTF-8, and a
    reader gets the same string back."""
    return _SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


def to_data(result) -> dict:
    data = {
        "version": 1,
        "files_checked": result.files_checked,
        "findings": [result.finding_json(f) for f in result.findings],
        "errors": [{"path": e["path"], "message": e["message"]} for e in result.errors],
    }
    if result.report_unused_ignores:
        data["unused_ignores"] = [u.to_json() for u in result.unused_ignores]
    if result.fixed:
        data["fixed"] = [f.to_json() for f in result.fixed]
    if getattr(result, "notes", None):
        data["notes"] = [{"path": n["path"], "message": n["message"]} for n in result.notes]
    return data


def render_json(result) -> str:
    return escape_surrogates(json.dumps(to_data(result), indent=2, ensure_ascii=False)) + "\n"
