"""``--format sarif``: a SARIF 2.1.0 log for GitHub code scanning and other SARIF consumers.

One run; ``tool.driver.rules`` holds every static rule of the catalogue (id, name, descriptions,
``helpUri`` to its page, ``help`` with the page's Markdown, default level); each result points at its
rule by ``ruleId`` and ``ruleIndex``. Artifact URIs are relative to ``%SRCROOT%`` (the current
directory) when the path is, so code scanning maps them onto the repository. Columns count Unicode code
points (``columnKind``). Notebook findings give the region in the ``.ipynb`` file itself (the line of
the JSON text where the reported cell line is, so code scanning marks the call), and the cell in
``properties.cell`` and in the message (``cell 5:line 3: ...``). A place the message names
(``(line 15)``) is a ``relatedLocations`` entry.
Files that could not be checked become error notifications of the invocation, which then did not
execute successfully; unused suppressions (``--report-unused-ignores``) are results of the
``unused-suppression`` pseudo-rule.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import lraudit
from lraudit import catalog
from lraudit.report.locations import RawLines, related_places

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/lraudit/lraudit"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
UNUSED_ID = "unused-suppression"


def _uri(path: str) -> dict:
    if os.path.isabs(path):
        return {"uri": Path(path).as_uri()}
    rel = path.replace(os.sep, "/")
    if rel.startswith("./"):
        rel = rel[2:]
    # percent-encode the file name's own bytes (a non-UTF-8 name arrives with surrogate escapes)
    return {"uri": quote(rel.encode("utf-8", "surrogateescape")), "uriBaseId": "%SRCROOT%"}


def _region(line: int, column: int, end_line: int, end_column: int) -> dict:
    line = max(1, int(line))
    column = max(1, int(column))
    end_line = max(line, int(end_line or line))
    end_column = max(1, int(end_column or column))
    if end_line == line and end_column < column:
        end_column = column
    return {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column}


def _rules() -> list:
    out = []
    for rule in catalog.RULES.values():
        if not rule.static:
            continue
        out.append(
            {
                "id": rule.code,
                "name": rule.name,
                "shortDescription": {"text": rule.summary.replace("`", "")},
                "fullDescription": {"text": rule.what},
                "helpUri": rule.help_uri,
                "help": {"text": rule.why, "markdown": catalog.render_page(rule)},
                "defaultConfiguration": {"level": _LEVEL.get(rule.severity, "warning")},
                "properties": {"tags": ["pytorch", "learning-rate"], "fix": rule.fix},
            }
        )
    return out


def _finding_region(raw: RawLines, f) -> dict:
    cell = getattr(f, "cell", None)
    if cell:
        located = raw.region(f.path, cell, f.line, f.column, f.end_line, f.end_column)
        if located is not None:
            return _region(*located)
    return _region(f.line, f.column, f.end_line, f.end_column)


def _related(raw: RawLines, f) -> list:
    cell = getattr(f, "cell", None)
    out = []
    for number, (place_cell, line) in enumerate(related_places(f.message, cell), 1):
        region = None
        if place_cell:
            position = raw.position(f.path, place_cell, line, 1)
            region = {"startLine": position[0]} if position else None
            text = f"cell {place_cell}, line {line}"
        else:
            region = {"startLine": line}
            text = f"line {line}"
        if region is None:
            continue
        out.append({"id": number, "message": {"text": text},
                    "physicalLocation": {"artifactLocation": _uri(f.path), "region": region}})
    return out


def to_log(result) -> dict:
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    raw = RawLines(getattr(result, "sources", {}))
    results = []
    for f in result.findings:
        cell = getattr(f, "cell", None)
        message = f.message if not cell else f"cell {cell}:line {f.line}: {f.message}"
        entry = {
            "ruleId": f.rule,
            "level": _LEVEL.get(result.severity_of(f), "warning"),
            "message": {"text": message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _uri(f.path),
                        "region": _finding_region(raw, f),
                    }
                }
            ],
        }
        related = _related(raw, f)
        if related:
            entry["relatedLocations"] = related
        if f.rule in index:
            entry["ruleIndex"] = index[f.rule]
        if cell:
            entry["properties"] = {"cell": cell}
        results.append(entry)
    if result.report_unused_ignores and result.unused_ignores:
        rules.append(
            {
                "id": UNUSED_ID,
                "name": UNUSED_ID,
                "shortDescription": {"text": "a suppression comment that suppresses nothing"},
                "defaultConfiguration": {"level": "warning"},
            }
        )
        for u in result.unused_ignores:
            message = u.message if u.cell is None else f"cell {u.cell}:line {u.line}: {u.message}"
            entry = {
                "ruleId": UNUSED_ID,
                "ruleIndex": len(rules) - 1,
                "level": "warning",
                "message": {"text": message},
                "locations": [
                    {"physicalLocation": {"artifactLocation": _uri(u.path), "region": _unused_region(raw, u)}}
                ],
            }
            if u.cell is not None:
                entry["properties"] = {"cell": u.cell}
            results.append(entry)
    notifications = [
        {
            "level": "error",
            "message": {"text": e["message"]},
            "locations": [{"physicalLocation": {"artifactLocation": _uri(e["path"])}}],
        }
        for e in result.errors
    ] + [
        {
            "level": "note",
            "message": {"text": n["message"]},
            "locations": [{"physicalLocation": {"artifactLocation": _uri(n["path"])}}],
        }
        for n in getattr(result, "notes", ())
    ]
    cwd = Path.cwd().as_uri()
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "lraudit",
                        "version": lraudit.__version__,
                        "semanticVersion": lraudit.__version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": cwd if cwd.endswith("/") else cwd + "/"}},
                "columnKind": "unicodeCodePoints",
                "invocations": [
                    {"executionSuccessful": not result.errors, "toolExecutionNotifications": notifications}
                ],
                "results": results,
            }
        ],
    }


def _unused_region(raw: RawLines, u) -> dict:
    if u.cell is not None:
        position = raw.position(u.path, u.cell, u.line, u.column)
        if position is not None:
            return _region(position[0], position[1], position[0], position[1])
    return _region(u.line, u.column, u.line, u.column)


def render_sarif(result) -> str:
    from lraudit.report.json_report import escape_surrogates

    return escape_surrogates(json.dumps(to_log(result), indent=2, ensure_ascii=False)) + "\n"
