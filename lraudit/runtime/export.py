"""``lraudit export``: a trajectory (version 1 or 2) as CSV, TensorBoard scalars or a W&B offline run.

Torch-free. Every target gets the same series under the same names, the names Lightning's
LearningRateMonitor logs (``lr-SGD`` for a single group, ``lr-SGD/pg2``, ``lr-SGD/head``), and the
momentum/betas a scheduler changed as ``lr-SGD-momentum``, ``lr-Adam/pg1-beta1``; x is the optimizer
step (0-based: step k is the k-th update of that optimizer, as in ``run.lrs()``).

- CSV: one ``step`` column and one column per series; a cell is empty where a series has no value
  (a group added late, an optimizer that stepped fewer times). Written atomically.
- TensorBoard: one event file in the output folder, scalars under the series names (``simple_value``,
  float32 as TensorBoard stores every scalar), one event per step. Needs the ``tensorboard`` package
  only (extra ``tensorboard``), not torch nor TensorFlow.
- W&B: an offline run (``wandb sync`` uploads it later), only when ``wandb`` is installed.
"""
from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from typing import Any, List, Optional

from lraudit.runtime.trajectory_file import atomic_write, read
from lraudit.runtime.trajectory_report import iter_series

TARGETS = ("csv", "tensorboard", "wandb")


@dataclass
class Column:
    name: str
    start: int
    values: List[float]

    def at(self, step: int) -> Optional[float]:
        k = step - self.start
        return self.values[k] if 0 <= k < len(self.values) else None


def columns(data: Any) -> List[Column]:
    """Every series of the trajectory, LRs and recorded momentum/betas, under unique names."""
    out: List[Column] = []
    seen: dict = {}
    for s in iter_series(read(data), params=True):
        name = s.label
        n = seen.get(name, 0)
        seen[name] = n + 1
        if n:  # two groups with the same name (LearningRateMonitor refuses them): keep both, apart
            name = f"{name}-{n}"
        out.append(Column(name, s.start, s.lrs))
    return out


def _steps(cols: List[Column]) -> int:
    return max((c.start + len(c.values) for c in cols), default=0)


def _cell(v: Optional[float]) -> str:
    if v is None:
        return ""
    if math.isfinite(v):
        return repr(v)
    return "nan" if v != v else ("inf" if v > 0 else "-inf")


def to_csv(data: Any, path) -> str:
    cols = columns(data)

    def write(fh) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["step"] + [c.name for c in cols])
        for step in range(_steps(cols)):
            w.writerow([step] + [_cell(c.at(step)) for c in cols])

    return atomic_write(path, write, newline="")


def to_tensorboard(data: Any, logdir) -> str:
    """Scalars under the series names in a new event file in ``logdir``; returns the file's path."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise ImportError("exporting to TensorBoard needs tensorboard: pip install 'torch-lraudit[tensorboard]'") from exc
    cols = columns(data)
    logdir = os.fspath(logdir)
    os.makedirs(logdir, exist_ok=True)
    writer = EventFileWriter(logdir, filename_suffix=".lraudit")
    wall = time.time()
    try:
        for step in range(_steps(cols)):
            values = [summary_pb2.Summary.Value(tag=c.name, simple_value=v)
                      for c in cols for v in (c.at(step),) if v is not None]
            writer.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=values)))
    finally:
        writer.close()
    return logdir


def to_wandb(data: Any, folder, project: str = "lraudit", name: Optional[str] = None) -> str:
    """An offline W&B run in ``folder`` (``wandb sync`` uploads it); needs ``wandb`` installed."""
    try:
        import wandb
    except ImportError as exc:
        raise ImportError("exporting to W&B needs wandb: pip install wandb") from exc
    cols = columns(data)
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    run = wandb.init(mode="offline", dir=folder, project=project, name=name, reinit=True)
    try:
        for step in range(_steps(cols)):
            row = {c.name: v for c in cols for v in (c.at(step),) if v is not None}
            run.log(row, step=step)
    finally:
        run.finish()
    return folder


def default_output(trajectory: str, target: str) -> str:
    root, _ = os.path.splitext(trajectory)
    return {"csv": root + ".csv", "tensorboard": root + "-tensorboard", "wandb": root + "-wandb"}[target]


def export(data: Any, target: str, out) -> str:
    if target == "csv":
        return to_csv(data, out)
    if target == "tensorboard":
        return to_tensorboard(data, out)
    if target == "wandb":
        return to_wandb(data, out)
    raise ValueError(f"unknown export target {target!r}: one of {', '.join(TARGETS)}")
