"""Render a trajectory file (``run.save`` / ``lraudit run --out``) as text: ``lraudit report lr.json``.

Torch-free: this reads the JSON of DESIGN.md section 4 and nothing else, so a trajectory saved on a
training machine can be inspected anywhere. The renderer takes the file's dict (``run.to_dict()``
gives the same shape), never a live run, so ``lraudit run`` and ``lraudit report`` print the same thing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_BAD = "!"  # a bucket holding a NaN or an infinite LR


class TrajectoryError(ValueError):
    """The file is not a trajectory lraudit can read (missing, not JSON, wrong shape or version)."""


def load_trajectory(path) -> Dict[str, Any]:
    """Read and check a trajectory file; raise :class:`TrajectoryError` with a readable reason."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise TrajectoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise TrajectoryError(f"{path} is not JSON: {exc}") from exc
    return check_trajectory(data, str(path))


def check_trajectory(data: Any, where: str = "trajectory") -> Dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("optimizers"), list):
        raise TrajectoryError(f"{where} is not an lraudit trajectory (no 'optimizers' list)")
    version = data.get("version")
    if version != 1:
        raise TrajectoryError(f"{where} has trajectory version {version!r}; this lraudit reads version 1")
    for opt in data["optimizers"]:
        if not isinstance(opt, dict) or not isinstance(opt.get("groups"), list):
            raise TrajectoryError(f"{where}: an optimizer entry has no 'groups' list")
        for group in opt["groups"]:
            if not isinstance(group, dict) or not isinstance(group.get("lr"), list):
                raise TrajectoryError(f"{where}: a group of {opt.get('name')!r} has no 'lr' list")
    if not isinstance(data.get("findings", []), list):
        raise TrajectoryError(f"{where}: 'findings' is not a list")
    return data


# --------------------------------------------------------------------------------------------------
# Series and their numbers


@dataclass(frozen=True)
class Series:
    optimizer: str  # "lr-SGD", "lr-Adam-1"
    cls: str  # "SGD"
    group: str  # "pg1" or the group's own name
    index: int  # position of the group in the optimizer's param_groups
    lrs: List[float]

    @property
    def label(self) -> str:
        return f"{self.optimizer}/{self.group}"


def iter_series(data: Dict[str, Any]) -> List[Series]:
    out = []
    for opt in data.get("optimizers", []):
        name = str(opt.get("name", "lr-?"))
        cls = str(opt.get("class", "?"))
        for i, group in enumerate(opt.get("groups", [])):
            # run.to_dict() writes a non-finite LR as null (JSON has no NaN): it reads back as NaN
            lrs = [math.nan if v is None else float(v) for v in group.get("lr", [])]
            out.append(Series(name, cls, str(group.get("name", f"pg{i + 1}")), i, lrs))
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
    """Whether a finding of the file belongs to ``series`` (group given by index or by name)."""
    opt = finding.get("optimizer")
    if opt is not None and opt != series.optimizer:
        return False
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
            match = [s for s in series if finding_matches(finding, s)]
            label += "/" + (match[0].group if match else str(finding["group"]))
        parts.append(label)
    elif finding.get("group") is not None:
        parts.append(f"group {finding['group']}")
    if finding.get("step") is not None:
        parts.append(f"step {finding['step']}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# Rendering


def render_trajectory(data: Dict[str, Any], console=None, *, title: Optional[str] = None,
                      spark_width: Optional[int] = None) -> None:
    """Print the report of a trajectory dict on a rich console (stdout when none is given).

    One table per optimizer, one row per param group: start, min, max and end LR, how many steps
    changed it, the codes of its findings, and a sparkline (a column when the console is wide enough,
    else one line per series under the table); then every finding with its message.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    series = iter_series(data)
    findings = list(data.get("findings", []))
    if title:
        console.print(Text(title, style="bold"), soft_wrap=True)
    if not data.get("optimizers"):
        console.print("lraudit: no optimizer was stepped, so no learning rate was recorded.")

    for opt in data.get("optimizers", []):
        name = str(opt.get("name"))
        mine = [s for s in series if s.optimizer == name]
        steps = opt.get("steps", max((len(s.lrs) for s in mine), default=0))
        rows = []
        for s in mine:
            st = stats(s.lrs)
            found = [f for f in findings if finding_matches(f, s)]
            cells = [s.group]
            if st is None:
                cells += ["-", "-", "-", "-", "0"]
            else:
                cells += [fmt_lr(st[k]) for k in ("start", "min", "max", "end")] + [str(st["changes"])]
            cells.append(_findings_cell(found))
            rows.append((s, cells, bool(found)))
        headers = ("group", "start", "min", "max", "end", "changes", "findings")
        # What the sparkline column can have once the other columns show in full (3 = padding + rule).
        others = sum(3 + max([len(h)] + [len(r[1][i]) for r in rows]) for i, h in enumerate(headers))
        width = spark_width if spark_width is not None else min(48, console.width - others - 4)
        spark_in_table = width >= 16
        table = Table(title=f"{name} ({opt.get('class', '?')}, {steps} optimizer steps)",
                      title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
        table.add_column("group", overflow="fold")
        for col in ("start", "min", "max", "end"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("changes", justify="right", no_wrap=True)
        table.add_column("findings", overflow="fold")
        if spark_in_table:
            table.add_column("trajectory", no_wrap=True)
        for s, cells, found in rows:
            cells[-1] = Text(cells[-1], style="bold red" if found else "dim")
            if spark_in_table:
                cells.append(sparkline(s.lrs, width) or Text("(no steps)", style="dim"))
            table.add_row(*cells)
        console.print(table)
        if not spark_in_table:
            width = max(8, min(64, console.width - max((len(s.group) for s in mine), default=0) - 6))
            for s in mine:
                line = Text("  ")
                line.append(s.group.ljust(max(len(x.group) for x in mine)), style="bold")
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
    elif data.get("optimizers"):
        console.print(Text("No findings.", style="green"))


def render_text(data: Dict[str, Any], width: int = 100, **kwargs) -> str:
    """The report as plain text (no colour): for test failure sections and logs."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False,
                      soft_wrap=False)
    render_trajectory(data, console, **kwargs)
    return buf.getvalue()
