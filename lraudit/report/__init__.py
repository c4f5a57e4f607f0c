"""Pure renderers of a :class:`lraudit.results.CheckResult`: text (rich, with code frames), concise (text
without them: one line per finding, for editors and grep), json, sarif, github.

Each takes the result and returns the whole report as a string; the CLI decides where it goes.
"""
from __future__ import annotations

FORMATS = ("text", "concise", "json", "sarif", "github")


def render(result, fmt: str, *, color: bool = False, quiet: bool = False) -> str:
    if fmt == "text":
        from lraudit.report.text import render_text

        return render_text(result, color=color, quiet=quiet)
    if fmt == "concise":
        from lraudit.report.text import render_text

        return render_text(result, color=color, quiet=quiet, frames=False)
    if fmt == "json":
        from lraudit.report.json_report import render_json

        return render_json(result)
    if fmt == "sarif":
        from lraudit.report.sarif import render_sarif

        return render_sarif(result)
    if fmt == "github":
        from lraudit.report.github import render_github

        return render_github(result)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
