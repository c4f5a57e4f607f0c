"""``--format text``: ruff-like lines and a rich summary; the only module that styles output.

One line per finding, ``path:line:col: LR001 message`` (notebooks: ``nb.ipynb:cell 3:line 4:col 5:
LR001 message``), each followed by a code frame (:mod:`lraudit.report.frame`) unless ``frames`` is
off (``--format concise``), then files that could not be checked (``error: path: message``), then a summary
(counts per rule, fixable count). ``quiet`` prints the finding and error lines only. Colours are
applied only when ``color`` is true (the CLI passes it for a terminal, never for a pipe or a file).
"""
from __future__ import annotations

import io
from collections import Counter
from typing import Callable, ContextManager, Iterator, Optional

from rich.console import Console
from rich.text import Text

_SEVERITY_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "bold blue"}


def _location(f) -> str:
    cell = getattr(f, "cell", None)
    if cell:
        return f"{f.path}:cell {cell}:line {f.line}:col {f.column}"
    return f"{f.path}:{f.line}:{f.column}"


def finding_line(f, severity: str = "error") -> Text:
    text = Text()
    text.append(_location(f), style="bold")
    text.append(": ")
    text.append(f.rule, style=_SEVERITY_STYLE.get(severity, "bold"))
    text.append(" ")
    text.append(f.message)
    return text


def _console(buf: io.StringIO, color: bool) -> Console:
    return Console(
        file=buf,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        soft_wrap=True,
        width=120,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_frame(console: Console, rows, severity: str) -> None:
    width = max(len(g) for g, _, _ in rows)
    for gutter, text, style in rows:
        line = Text()
        line.append(f"{gutter:>{width}} |" if gutter != ":" else f"{':':>{width}}", style="blue")
        if text:
            line.append(" ")
            if style == "caret":
                line.append(text, style=_SEVERITY_STYLE.get(severity, "bold"))
            elif style == "related":
                line.append(text, style="cyan")
            else:
                line.append(text)
        console.print(line)


def render_text(result, *, color: bool = False, quiet: bool = False, frames: bool = True) -> str:
    from lraudit.report.frame import SourceLines, code_frame

    buf = io.StringIO()
    console = _console(buf, color)
    sources: dict = {}
    framed = False
    for f in result.findings:
        severity = result.severity_of(f)
        console.print(finding_line(f, severity))
        text = getattr(result, "sources", {}).get(f.path) if frames else None
        if text is None:
            continue
        if f.path not in sources:
            sources[f.path] = SourceLines(text, notebook=bool(getattr(f, "cell", None)) or f.path.endswith(".ipynb"))
        rows = code_frame(f, sources[f.path])
        if rows:
            _print_frame(console, rows, severity)
            console.print()
            framed = True
    if result.report_unused_ignores:
        for u in result.unused_ignores:
            loc = f"{u.path}:cell {u.cell}:line {u.line}:col {u.column}" if u.cell is not None else f"{u.path}:{u.line}:{u.column}"
            line = Text()
            line.append(loc, style="bold")
            line.append(": ")
            line.append(u.message, style="yellow")
            console.print(line)
    for e in result.errors:
        line = Text()
        line.append("error", style="bold red")
        line.append(f": {e['path']}: {e['message']}")
        console.print(line)
    if quiet:
        return buf.getvalue()
    notes = getattr(result, "notes", ())
    for note in notes:
        line = Text()
        line.append("note", style="bold yellow")
        line.append(f": {note['path']}: {note['message']}")
        console.print(line)

    n = len(result.findings)
    if result.fixed:
        console.print(Text(f"Fixed {_plural(len(result.fixed), 'finding')}.", style="green"))
    if n:
        files = len({f.path for f in result.findings})
        fixable = sum(1 for f in result.findings if f.fixable)
        if (result.findings or result.errors) and not (framed and not result.errors):
            console.print()
        summary = Text()
        summary.append(f"Found {_plural(n, 'finding')} in {_plural(files, 'file')}", style="bold")
        summary.append(f" ({result.files_checked} checked)")
        if fixable:
            summary.append(f"; {fixable} fixable with `--fix`")
        summary.append(".")
        console.print(summary)
        counts = Counter(f.rule for f in result.findings)
        width = len(str(max(counts.values())))
        for code, count in sorted(counts.items()):
            sample = next(f for f in result.findings if f.rule == code)
            row = Text(f"{count:>{width}}  ")
            row.append(code, style=_SEVERITY_STYLE.get(result.severity_of(sample), "bold"))
            row.append(f"  {sample.name}")
            console.print(row)
    elif not result.errors and not (result.report_unused_ignores and result.unused_ignores):
        console.print(Text(f"All checks passed! ({_plural(result.files_checked, 'file')} checked)", style="bold green"))
    if result.errors:
        console.print(
            Text(
                f"{_plural(len(result.errors), 'file')} could not be checked"
                f" ({result.files_checked} checked).",
                style="bold red",
            )
        )
    if result.report_unused_ignores and result.unused_ignores:
        console.print(Text(f"{_plural(len(result.unused_ignores), 'unused suppression')}.", style="yellow"))
    if notes:
        console.print(Text(f"{_plural(len(notes), 'file')} not fully analysed (a bound was reached; see the notes "
                           "above).", style="yellow"))
    return buf.getvalue()


def render_diff(result, *, color: bool = False) -> str:
    """``--diff``: the unified diffs of what ``--fix`` would write, and a one-line summary."""
    buf = io.StringIO()
    console = _console(buf, color)
    for diff in result.diffs:
        for line in diff.splitlines():
            style = "green" if line.startswith("+") and not line.startswith("+++") else (
                "red" if line.startswith("-") and not line.startswith("---") else None
            )
            console.print(Text(line, style=style or ""))
    for e in result.errors:
        console.print(Text(f"error: {e['path']}: {e['message']}", style="bold red" if color else ""))
    n = len(result.fixed)
    if result.diffs:
        console.print(Text(f"Would fix {_plural(n, 'finding')} in {_plural(len(result.diffs), 'file')}.", style="bold"))
    elif not result.fix_available:
        console.print(Text("No fixes available: this lraudit has no fixer installed."))
    else:
        console.print(Text("No fixes available."))
    return buf.getvalue()


def progress(enabled: bool, min_files: int = 200) -> ContextManager[Optional[Callable[[int, int], None]]]:
    """A rich progress bar on stderr, shown only when ``enabled`` (a terminal) and the run has at least
    ``min_files`` files; yields the engine's ``progress(done, total)`` callback, or None."""
    from contextlib import contextmanager

    @contextmanager
    def _cm() -> Iterator[Optional[Callable[[int, int], None]]]:
        if not enabled:
            yield None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        state: dict = {}

        def update(done: int, total: int) -> None:
            if "bar" not in state:
                if total < min_files:
                    return
                bar = Progress(
                    TextColumn("lraudit: checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True,
                )
                bar.start()
                state["bar"], state["task"] = bar, bar.add_task("check", total=total)
            state["bar"].update(state["task"], completed=done, total=total)

        try:
            yield update
        finally:
            if "bar" in state:
                state["bar"].stop()

    return _cm()
