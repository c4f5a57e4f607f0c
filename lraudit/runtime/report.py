"""Rich rendering of a :class:`~lraudit.runtime.run.Run` (the only module of runtime/ that uses rich)."""
from __future__ import annotations

import math
from typing import Any


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _changes(vals) -> int:
    return sum(1 for a, b in zip(vals, vals[1:]) if not (a == b or (a != a and b != b)))


def render(run: Any, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    table = Table(title="Learning rates recorded by lraudit", title_justify="left")
    for col, kw in (("series", {}), ("steps", {"justify": "right"}), ("first", {"justify": "right"}),
                    ("last", {"justify": "right"}), ("min", {"justify": "right"}), ("max", {"justify": "right"}),
                    ("changes", {"justify": "right"})):
        table.add_column(col, **kw)
    for s in run._series():
        for j in range(s.n_groups()):
            vals = s.lrs(j)
            finite = [v for v in vals if math.isfinite(v)]
            name = f"{s.name}/{s.group_name(j)}"
            if not vals:
                table.add_row(name, "0", "-", "-", "-", "-", "-")
                continue
            table.add_row(
                name, str(len(vals)), _fmt(vals[0]), _fmt(vals[-1]),
                _fmt(min(finite)) if finite else "-", _fmt(max(finite)) if finite else "-",
                str(_changes(vals)),
            )
    console.print(table)
    findings = run.findings
    if not findings:
        console.print(Text("No learning-rate problem found.", style="green"))
        return
    console.print(Text(f"{len(findings)} learning-rate problem(s):", style="bold red"))
    for f in findings:
        where = ", ".join(x for x in (
            f.optimizer, None if f.step is None else f"step {f.step}",
            None if f.group is None else f"group {f.group}") if x)
        head = Text()
        head.append(f.rule, style="bold red")
        head.append(f" {f.name}", style="bold")
        if where:
            head.append(f" [{where}]", style="dim")
        console.print(head)
        console.print(Text("  " + f.message.replace("\n", "\n  ")))
