"""A PNG of every recorded series, findings marked at their steps (``run.plot``, ``lraudit report --png``).

One panel per optimizer, so that an optimizer at 1e-5 is not flattened to zero under one at 0.1; a
panel whose series differ by 100x or more in scale gets a log axis by itself. Momentum and betas,
when a scheduler changed them, get their own panel under their optimizer's. Finding labels are
placed where they overlap no other label (a label that fits nowhere is left out and counted).

matplotlib is an optional extra (``torch-lraudit[plot]``) and is imported only here, when a plot is
asked for, through its object API (no pyplot, no global backend switch: works headless and leaves a
notebook's own backend alone). Torch-free: it plots a trajectory (``run.to_dict()`` or a saved file).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from lraudit.runtime.trajectory_file import read
from lraudit.runtime.trajectory_report import Series, finding_matches, iter_series

MAX_LABELLED_FINDINGS = 24  # per figure; further findings are still marked, without a text label
LOG_RATIO = 100.0  # series of one panel whose scales differ this much or more: log axis (at 100x the
# smaller one spans 1% of a linear axis: a flat line)
LINESTYLES = ("-", "--", "-.", ":")
PANEL_HEIGHT = 2.9  # inches
# Where a finding label may go, in points from its mark: above first, then further up, then below.
LABEL_OFFSETS = ((4, 6), (4, 18), (4, 30), (4, -16), (4, -28), (-40, 6), (-40, -16), (4, 42), (4, -40))


def _figure(**kwargs):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting the LR trajectory needs matplotlib: pip install 'torch-lraudit[plot]'") from exc
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # a renderer to measure label extents with, without pyplot
    return fig


def plot_run(run, path, log: bool = False) -> str:
    """Plot a live run (what ``Run.plot`` delegates to)."""
    return plot_trajectory(run.to_dict(), path, log=log)


def wants_log(series: List[Series]) -> bool:
    """Whether the series of one panel differ in scale by ``LOG_RATIO`` or more (their largest values)."""
    peaks = [max((v for v in s.lrs if math.isfinite(v) and v > 0), default=0.0) for s in series]
    peaks = [p for p in peaks if p > 0]
    return len(peaks) > 1 and max(peaks) / min(peaks) >= LOG_RATIO * (1 - 1e-9)


def _panels(series: List[Series]) -> List[Dict[str, Any]]:
    """Per optimizer, in order: a panel of its LRs, then one of its momentum / betas when recorded."""
    panels: Dict[tuple, Dict[str, Any]] = {}
    for s in series:
        kind = "lr" if s.kind == "lr" else "params"
        key = (s.optimizer, kind)
        if key not in panels:
            panels[key] = {"optimizer": s.optimizer, "cls": s.cls, "kind": kind, "series": []}
        panels[key]["series"].append(s)
    order = list(dict.fromkeys(s.optimizer for s in series))
    return [panels[(o, k)] for o in order for k in ("lr", "params") if (o, k) in panels]


def plot_trajectory(data: Any, path, log: Optional[bool] = False,
                    title: str = "Learning rate per optimizer step") -> str:
    """Write a PNG of all series in ``data`` to ``path`` (see :func:`figure`) and return the path."""
    fig = figure(data, log=log, title=title)
    fig.savefig(str(path), format="png")
    return str(path)


def figure(data: Any, log: Optional[bool] = False, title: str = "Learning rate per optimizer step"):
    """The matplotlib ``Figure`` of all series in ``data``.

    x is the optimizer step (0-based, as in ``run.lrs()`` and the findings), y the value that update
    used, drawn as a step function (step k's value spans k to k+1). ``log=True`` puts every LR panel on
    a log axis; ``False`` lets each panel choose (log when its series differ by 100x or more);
    ``None`` never uses one. Each finding that names a step is marked on its series (on every series of
    its optimizer when it names no group) with a red cross and its rule code.
    """
    record = read(data)
    series = [s for s in iter_series(record, params=True) if s.lrs]
    findings = record.findings
    panels = _panels(series)

    n = max(len(panels), 1)
    fig = _figure(figsize=(10, max(4.8, 0.9 + PANEL_HEIGHT * n)), dpi=100)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(title)
    marks = []  # (ax, x, y or None, code)
    hidden_nonpositive = 0
    for ax, panel in zip(axes, panels):
        is_lr = panel["kind"] == "lr"
        use_log = is_lr and (log is True or (log is False and wants_log(panel["series"])))
        for i, s in enumerate(panel["series"]):
            xs = list(range(s.start, s.start + len(s.lrs) + 1))  # one more point closes the last step
            ys = [v if math.isfinite(v) and (v > 0 or not use_log) else math.nan for v in s.lrs]
            hidden_nonpositive += sum(1 for v in s.lrs if use_log and math.isfinite(v) and v <= 0)
            # Series often coincide (decay / no-decay groups): a dashed style over a wider solid keeps both visible.
            style = LINESTYLES[i % len(LINESTYLES)]
            ax.plot(xs, ys + ys[-1:], label=s.label, linestyle=style, linewidth=2.4 if style == "-" else 1.6,
                    drawstyle="steps-post")
            for f in findings:
                step = f.get("step")
                if not isinstance(step, int) or isinstance(step, bool) or not finding_matches(f, s):
                    continue
                k = min(max(step - s.start, 0), len(s.lrs) - 1)
                y = s.lrs[k]
                ok = math.isfinite(y) and (y > 0 or not use_log)
                marks.append((ax, s.start + k, y if ok else None, str(f.get("rule"))))
        if use_log:
            ax.set_yscale("log")
        ax.set_ylabel(("learning rate" if is_lr else "momentum / beta") + (" (log)" if use_log else ""))
        ax.set_title(f"{panel['optimizer']} ({panel['cls']})" + ("" if is_lr else ": momentum and betas"),
                     fontsize=10, loc="left")
        ax.grid(True, alpha=0.3, which="both" if use_log else "major")
        ax.margins(x=0.02, y=0.12)  # room for the finding labels above the highest value
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if not panels:
        axes[0].text(0.5, 0.5, "no optimizer step recorded", ha="center", va="center",
                     transform=axes[0].transAxes)
    axes[-1].set_xlabel("optimizer step")

    drawn = set()
    for ax, x, y, _code in marks:
        key = (id(ax), x, y)
        if key in drawn:
            continue
        drawn.add(key)
        if y is not None:
            ax.plot([x], [y], "x", color="red", markersize=9, markeredgewidth=2)
        else:  # NaN, inf, or <= 0 on a log axis: a vertical line at the step instead
            ax.axvline(x, color="red", linestyle=":", linewidth=1.2)

    notes = []
    if hidden_nonpositive:
        notes.append(f"{hidden_nonpositive} point(s) with LR <= 0 not drawn on a log axis")
    fig.tight_layout(rect=(0, 0.03 if notes else 0, 1, 1))
    unlabelled = _place_labels(fig, marks)
    if unlabelled:
        notes.append(f"{unlabelled} finding label(s) left out where they would overlap")
    if notes:
        fig.text(0.01, 0.005, "; ".join(notes), fontsize=8, color="dimgray", va="bottom")
    return fig


def _text_extent(ann, renderer):
    """The extent of an annotation's text (and its box) alone, without its leader line."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    patch = ann.get_bbox_patch()
    if patch is not None:
        ann.update_bbox_position_size(renderer)
        return patch.get_window_extent(renderer)
    return Text.get_window_extent(ann, renderer)


def _place_labels(fig, marks) -> int:
    """Label each marked step with its rule codes where the label overlaps no other label and stays in
    its panel; returns how many labels found no place."""
    groups: Dict[tuple, List[str]] = {}
    order = []
    for ax, x, y, code in marks:
        key = (id(ax), x, y)
        if key not in groups:
            groups[key] = []
            order.append((ax, x, y, key))
        if code not in groups[key]:
            groups[key].append(code)
    renderer = fig.canvas.get_renderer()
    placed = []
    left_out = 0
    for n, (ax, x, y, key) in enumerate(order):
        if n >= MAX_LABELLED_FINDINGS:
            left_out += 1
            continue
        text = " ".join(groups[key])
        xy, coords = ((x, y), "data") if y is not None else ((x, 0.9), ("data", "axes fraction"))
        box = ax.get_window_extent(renderer)
        for n_try, (dx, dy) in enumerate(LABEL_OFFSETS):
            ann = ax.annotate(text, xy, xycoords=coords, textcoords="offset points", xytext=(dx, dy),
                              color="red", fontsize=8,  # a light box keeps it readable over a curve
                              bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85),
                              # a label moved away from its mark keeps a thin line to it
                              arrowprops=dict(arrowstyle="-", color="red", linewidth=0.6, alpha=0.6) if n_try else None)
            bb = _text_extent(ann, renderer)
            inside = bb.x0 >= box.x0 and bb.x1 <= box.x1 and bb.y0 >= box.y0 and bb.y1 <= box.y1
            if inside and not any(bb.overlaps(other) for other in placed):
                placed.append(bb)
                break
            ann.remove()
        else:
            left_out += 1
    return left_out
