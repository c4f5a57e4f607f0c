"""Render a trajectory (``run.report()``, ``lraudit report lr.json``, ``lraudit run``) as text.

Torch-free: this reads the file of DESIGN.md section 4 (version 1 or 2) and nothing else, so a
trajectory saved on a training machine can be inspected anywhere. There is one renderer: ``run.report()``
renders ``run.to_dict()``, ``lraudit report`` the saved file, so both print the same table.
Every name (optimizer, group, message) is printed as text, never as rich markup: a group called
``emb[/]`` or ``[no_decay]`` shows as it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from lraudit.runtime.trajectory_file import TrajectoryError, TrajectoryRecord, load, read

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_BAD = "!"  # a bucket holding a NaN or an infinite LR

__all__ = ["TrajectoryError", "load_trajectory", "check_trajectory", "iter_series", "render_trajectory",
           "render_text", "sparkline", "stats", "count_changes"]


def load_trajectory(path) -> TrajectoryRecord:
    """Read and check a trajectory file (version 1 or 2); raise :class:`TrajectoryError` with a reason."""
    return load(path)


def check_trajectory(data: Any, where: str = "trajectory") -> TrajectoryRecord:
    """A trajectory dict (``run.to_dict()``, a parsed file) checked and expanded into records."""
    return read(data, where)


# --------------------------------------------------------------------------------------------------
# Series and their numbers


PARAM_RULES = ("LR022",)  # findings about momentum / betas: shown on those series


@dataclass(frozen=True)
class Series:
    optimizer: str  # "lr-SGD", "lr-Adam-1"
    cls: str  # "SGD"
    group: str  # "pg1" or the group's own name
    index: int  # position of the group in the optimizer's param_groups
    lrs: List[float]  # the values (LRs, or momentum / beta values when kind says so)
    name: str = ""  # the series name: "lr-SGD", "lr-SGD/pg2", "lr-SGD/head", "lr-SGD-momentum"
    start: int = 0  # the update of the first value
    kind: str = "lr"  # "lr", "momentum", "beta1" or "beta2"
    out_of_range: bool = False  # a momentum / beta series with a value outside [0, 1) (LR022)

    @property
    def label(self) -> str:
        return self.name or f"{self.optimizer}/{self.group}"


def iter_series(data: Any, params: bool = False) -> List[Series]:
    """Every LR series of a trajectory (dict or records); with ``params``, the momentum/beta series
    too, each right after its group's LR series."""
    record = read(data)
    out = []
    for opt in record.optimizers:
        for g in opt.groups:
            name = opt.series_name(g)
            out.append(Series(opt.name, opt.cls, g.name, g.index, g.lr, name, g.start))
            if params:
                for key, vals in g.params.items():
                    bad = any(not 0.0 <= v < 1.0 for v in vals)
                    out.append(Series(opt.name, opt.cls, g.name, g.index, vals, f"{name}-{key}", g.start, key, bad))
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def count_changes(lrs: Sequence[float]) -> int:
    """How many optimizer steps used a different LR than the step before."""
    return sum(1 for a, b in zip(lrs, lrs[1:]) if not _same(a, b))


def stats(lrs: Sequence[float]) -> Optional[Dict[str, float]]:
    if not lrs:
        return None
    finite = [v for v in lrs if not math.isnan(v)]
    return {
        "start": lrs[0],
        "min": min(finite) if finite else math.nan,
        "max": max(finite) if finite else math.nan,
        "end": lrs[-1],
        "changes": count_changes(lrs),
    }


def sparkline(values: Sequence[float], width: int = 32) -> str:
    """A one-line picture of a series: ``width`` buckets, each the mean of its steps, scaled min..max.

    Buckets holding a NaN or an infinite value show ``!``; a constant series is a flat middle line.
    """
    n = len(values)
    if n == 0 or width <= 0:
        return ""
    width = min(width, n)
    buckets = []
    for b in range(width):
        chunk = values[b * n // width : (b + 1) * n // width]
        if any(not math.isfinite(v) for v in chunk):
            buckets.append(None)
        else:
            buckets.append(sum(chunk) / len(chunk))
    finite = [v for v in buckets if v is not None]
    if not finite:
        return SPARK_BAD * width
    lo, hi = min(finite), max(finite)
    top = len(SPARK_BLOCKS) - 1
    chars = []
    for v in buckets:
        if v is None:
            chars.append(SPARK_BAD)
        elif hi == lo:
            chars.append(SPARK_BLOCKS[top // 2])
        else:
            chars.append(SPARK_BLOCKS[round((v - lo) / (hi - lo) * top)])
    return "".join(chars)


def fmt_lr(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


# --------------------------------------------------------------------------------------------------
# Findings


def finding_matches(finding: Dict[str, Any], series: Series) -> bool:
    """Whether a finding belongs to ``series`` (group given by index or by name); momentum findings
    (LR022) belong to the momentum/beta series, the others to the LR series."""
    opt = finding.get("optimizer")
    if opt is not None and opt != series.optimizer:
        return False
    if (finding.get("rule") in PARAM_RULES) != (series.kind != "lr"):
        return False
    if series.kind != "lr":  # LR022: every momentum / beta series of the optimizer that left [0, 1)
        return opt is not None and series.out_of_range
    group = finding.get("group")
    if group is None:
        return opt is not None  # a finding about the whole optimizer
    if isinstance(group, bool):
        return False
    if isinstance(group, int):
        return group == series.index
    return str(group) == series.group


def _rule_name(code: str) -> str:
    from lraudit import catalog

    rule = catalog.RULES.get(code)
    return rule.name if rule else ""


def _findings_cell(findings: List[Dict[str, Any]]) -> str:
    if not findings:
        return "-"
    counts: Dict[str, int] = {}
    for f in findings:
        counts[str(f.get("rule"))] = counts.get(str(f.get("rule")), 0) + 1
    return " ".join(code if n == 1 else f"{code}x{n}" for code, n in counts.items())


def _where(finding: Dict[str, Any], series: List[Series]) -> str:
    parts = []
    if finding.get("optimizer") is not None:
        label = str(finding["optimizer"])
        if finding.get("group") is not None:
            match = [x for x in series if finding_matches(finding, x)]
            label = match[0].label if match else f"{label}/{finding['group']}"
        parts.append(label)
    elif finding.get("group") is not None:
        parts.append(f"group {finding['group']}")
    if finding.get("step") is not None:
        parts.append(f"step {finding['step']}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# Rendering

HEADERS = ("series", "start", "min", "max", "end", "changes", "findings")


def _rows(series: List[Series], findings: List[Dict[str, Any]]) -> List[tuple]:
    rows = []
    for s in series:
        st = stats(s.lrs)
        found = [f for f in findings if finding_matches(f, s)]
        cells = [s.label]
        if st is None:
            cells += ["-", "-", "-", "-", "0"]
        else:
            cells += [fmt_lr(st[k]) for k in ("start", "min", "max", "end")] + [str(st["changes"])]
        cells.append(_findings_cell(found))
        rows.append((s, cells, bool(found)))
    return rows


def render_trajectory(data: Any, console=None, *, title: Optional[str] = None,
                      spark_width: Optional[int] = None) -> None:
    """Print the report of a trajectory (file dict, ``run.to_dict()`` or records) on a rich console
    (stdout when none is given).

    One table per optimizer, one row per param group (and per recorded momentum / beta): start, min,
    max and end value, how many steps changed it, the codes of its findings, and a sparkline (a column
    when the console is wide enough, else one line per series under the table); then every finding
    with its message. Every name and message is a ``Text``, never markup.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    record = read(data)
    series = iter_series(record, params=True)
    findings = record.findings
    if title:
        console.print(Text(title, style="bold"), soft_wrap=True)
    if not record.optimizers:
        console.print(Text("lraudit: no optimizer was stepped, so no learning rate was recorded."))

    for opt in record.optimizers:
        mine = [s for s in series if s.optimizer == opt.name]
        rows = _rows(mine, findings)
        # What the sparkline column can have once the other columns show in full (3 = padding + rule).
        others = sum(3 + max([len(h)] + [len(r[1][i]) for r in rows]) for i, h in enumerate(HEADERS))
        width = spark_width if spark_width is not None else min(48, console.width - others - 4)
        spark_in_table = width >= 16
        table = Table(title=Text(f"{opt.name} ({opt.cls}, {opt.steps} optimizer steps)", style="bold"),
                      title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        # Series names stay whole (they are what users grep for); the findings column folds instead.
        table.add_column("series", no_wrap=True, min_width=max((len(r[1][0]) for r in rows), default=6))
        for col in ("start", "min", "max", "end"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("changes", justify="right", no_wrap=True)
        table.add_column("findings", overflow="fold", min_width=len("findings"))
        if spark_in_table:
            table.add_column("trajectory", no_wrap=True)
        for s, cells, found in rows:
            texts = [Text(c) for c in cells]
            texts[-1].stylize("bold red" if found else "dim")
            if spark_in_table:
                spark = sparkline(s.lrs, width)
                texts.append(Text(spark) if spark else Text("(no steps)", style="dim"))
            table.add_row(*texts)
        console.print(table)
        if not spark_in_table:
            pad = max((len(s.label) for s in mine), default=0)
            width = max(8, min(64, console.width - pad - 6))
            for s in mine:
                line = Text("  ")
                line.append(s.label.ljust(pad), style="bold")
                line.append("  " + (sparkline(s.lrs, width) or "(no steps)"))
                console.print(line)
            console.print()

    if findings:
        console.print(Text(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}:", style="bold red"))
        for f in findings:
            line = Text()
            code = str(f.get("rule"))
            line.append(code, style="bold red")
            rule_name = _rule_name(code)
            if rule_name:
                line.append(f" {rule_name}", style="red")
            where = _where(f, series)
            if where:
                line.append(f" ({where})", style="cyan")
            message = str(f.get("message", "")).replace("\n", "\n    ")  # LR015 carries a table
            line.append(f": {message}")
            console.print(line, soft_wrap=True)  # one line per finding: the terminal wraps, logs stay greppable
    elif record.optimizers:
        console.print(Text("No findings.", style="green"))


def render_text(data: Any, width: int = 100, **kwargs) -> str:
    """The report as plain text (no colour): for test failure sections and logs."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False,
                      soft_wrap=False)
    render_trajectory(data, console, **kwargs)
    return buf.getvalue()
