"""A PNG of every recorded LR series, findings marked at their steps (``run.plot``, ``lraudit report --png``).

matplotlib is an optional extra (``lraudit[plot]``) and is imported only here, when a plot is asked
for, with the Agg backend so that it works on headless training machines. Torch-free: it plots the
trajectory dict (``run.to_dict()`` or a file saved with ``run.save``).
"""
from __future__ import annotations

import math
from typing import Any, Dict

from lraudit.runtime.trajectory_report import check_trajectory, finding_matches, iter_series

MAX_LABELLED_FINDINGS = 12  # per figure; further findings are still marked, without a text label
LINESTYLES = ("-", "--", "-.", ":")


def _figure(**kwargs):
    # matplotlib's object API, not pyplot: no global backend switch, no window, works headless and
    # leaves a notebook's own backend alone.
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting the LR trajectory needs matplotlib: pip install 'torch-lraudit[plot]'") from exc
    return Figure(**kwargs)


def plot_run(run, path, log: bool = False) -> str:
    """Plot a live run (what ``Run.plot`` delegates to)."""
    return plot_trajectory(run.to_dict(), path, log=log)


def plot_trajectory(data: Dict[str, Any], path, log: bool = False, title: str = "Learning rate per optimizer step") -> str:
    """Write a PNG of all series in ``data`` to ``path`` and return the path.

    x is the optimizer step (0-based, as in ``run.lrs()`` and the findings), y the LR that update used,
    drawn as a step function (step k's LR spans k to k+1). Each finding that names a step is marked
    on its series (on every series when it names no group) with a red cross and its rule code.
    """
    check_trajectory(data)
    series = [s for s in iter_series(data) if s.lrs]
    findings = list(data.get("findings", []))

    fig = _figure(figsize=(9, 4.8), dpi=110)
    ax = fig.subplots()
    hidden = 0
    for i, s in enumerate(series):
        # Step k's LR holds from k to k+1: one more point closes the last step's segment.
        xs = list(range(len(s.lrs) + 1))
        ys = [v if math.isfinite(v) and (v > 0 or not log) else math.nan for v in s.lrs]  # log axes: no 0
        hidden += sum(1 for v in s.lrs if log and math.isfinite(v) and v <= 0)
        # Series often coincide (decay / no-decay groups): a dashed style over a wider solid keeps both visible.
        style = LINESTYLES[i % len(LINESTYLES)]
        ax.plot(xs, ys + ys[-1:], label=s.label, linestyle=style, linewidth=2.4 if style == "-" else 1.6,
                drawstyle="steps-post")

    labelled = 0
    marked = False
    for f in findings:
        step = f.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue  # a finding about the whole run (LR005 ...) has no point to mark
        targets = [s for s in series if finding_matches(f, s)] or series
        for s in targets:
            x = min(max(step, 0), len(s.lrs) - 1)
            y = s.lrs[x]
            if math.isfinite(y) and (y > 0 or not log):
                ax.plot([x], [y], "x", color="red", markersize=9, markeredgewidth=2,
                        label=None if marked else "finding")
                xy, coords = (x, y), "data"
            else:  # NaN, inf, or <= 0 on a log axis: a vertical line at the step instead
                ax.axvline(x, color="red", linestyle=":", linewidth=1.2, label=None if marked else "finding")
                xy, coords = (x, 0.92), ("data", "axes fraction")
            marked = True
            if labelled < MAX_LABELLED_FINDINGS:
                ax.annotate(str(f.get("rule")), xy, xycoords=coords, textcoords="offset points",
                            xytext=(4, 6), color="red", fontsize=8)
                labelled += 1

    ax.margins(x=0.02, y=0.08)  # room for the finding labels above the highest LR
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate" + (" (log scale)" if log else ""))
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both" if log else "major")
    if hidden:
        ax.text(0.01, 0.01, f"{hidden} point(s) with LR <= 0 not drawn on the log scale", transform=ax.transAxes,
                fontsize=8, color="dimgray", va="bottom")
    if series:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no optimizer step recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(str(path), format="png")
    return str(path)
