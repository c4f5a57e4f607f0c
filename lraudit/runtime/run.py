"""The result of an audit: recorded LR series, findings, the trajectory file (DESIGN.md section 4)."""
from __future__ import annotations

import os
import weakref
from typing import Any, Iterable, List, Optional, Union

from lraudit.runtime import trajectory_file
from lraudit.runtime.findings import RuntimeFinding
from lraudit.runtime.series import ParamRecord, Trajectory, series_name

TRAJECTORY_VERSION = trajectory_file.VERSION


class OptimizerSeries:
    """What was recorded for one optimizer."""

    __slots__ = ("name", "cls", "group_names", "traj", "steps", "params", "_ref", "__weakref__")

    def __init__(self, name: str, cls: str, group_names: List[str], traj: Trajectory, steps: int,
                 opt: Any = None, params: Optional[ParamRecord] = None) -> None:
        self.name = name
        self.cls = cls
        self.group_names = group_names
        self.traj = traj
        self.steps = steps
        self.params = params  # momentum / betas, kept in the file only when a scheduler changed them
        try:
            self._ref = weakref.ref(opt) if opt is not None else None
        except TypeError:
            self._ref = None

    @property
    def optimizer(self) -> Any:
        return self._ref() if self._ref is not None else None

    def n_groups(self) -> int:
        return max(self.traj.n_groups(), len(self.group_names))

    def group_name(self, j: int) -> str:
        return self.group_names[j] if j < len(self.group_names) else f"pg{j + 1}"

    def lrs(self, group: int) -> List[float]:
        return self.traj.values(group)

    def series_name(self, j: int) -> str:
        return series_name(self.name, self.group_name(j), j, self.n_groups())

    def start(self, j: int) -> int:
        """The update from which group ``j`` has values (later than 0 for a group added by add_param_group)."""
        return self.traj.group_start(j) if j < self.traj.n_groups() else self.steps

    def param_columns(self, j: int) -> List[tuple]:
        """``(key, column)`` of the momentum/betas recorded for group ``j``, when a scheduler changed them."""
        p = self.params
        if p is None or not p.changed:
            return []
        return [(key, c) for c, (g, key) in enumerate(p.columns) if g == j]

    def params_of(self, j: int) -> dict:
        """``{"momentum": [...]}`` or ``{"beta1": [...], "beta2": [...]}`` for group ``j`` (empty when not recorded)."""
        out = {}
        for key, c in self.param_columns(j):
            vals = self.params.values(c, self.steps)  # type: ignore[union-attr]
            # A group added after the reading that introduced its column: align it with the LR series.
            out[key] = vals[max(self.start(j) - self.params.start(c), 0):]  # type: ignore[union-attr]
        return out

    def entry(self) -> dict:
        """This optimizer in the trajectory file (version 2: runs of equal values)."""
        groups = []
        for j in range(self.n_groups()):
            g = {"name": self.group_name(j), "start": self.start(j),
                 "lr": trajectory_file.encode_runs(self.traj.runs(j))}
            for key, c in self.param_columns(j):
                p = self.params
                if p.start(c) == g["start"]:  # type: ignore[union-attr]
                    g[key] = trajectory_file.encode_runs(p.runs(c, self.steps))  # type: ignore[union-attr]
                else:
                    g[key] = trajectory_file.encode_runs((v, 1) for v in self.params_of(j)[key])
            groups.append(g)
        return trajectory_file.optimizer_entry(self.name, self.cls, self.steps, groups)


class SeriesEntry(tuple):
    """One recorded param group: ``(optimizer, class, group, lrs)``, plus ``.name``, the series name
    Lightning's LearningRateMonitor uses (``lr-SGD`` for a single group, ``lr-SGD/pg2``, ``lr-SGD/head``),
    ``.start`` (the update the group appeared at) and ``.params`` (momentum/betas when recorded)."""

    def __new__(cls, optimizer: str, cls_name: str, group: str, lrs: List[float], name: str, start: int = 0,
                params: Optional[dict] = None) -> "SeriesEntry":
        self = super().__new__(cls, (optimizer, cls_name, group, lrs))
        self.name = name
        self.start = start
        self.params = params or {}
        return self

    def __reduce__(self):
        return (SeriesEntry, (*self, self.name, self.start, self.params))

    optimizer = property(lambda self: self[0])
    cls = property(lambda self: self[1])
    group = property(lambda self: self[2])
    lrs = property(lambda self: self[3])


class Run:
    """Returned by ``audit(...).__enter__()`` / ``Audit.start()``; complete once the audit stopped."""

    def __init__(self, audit: Any = None) -> None:
        self._audit = audit
        self._frozen: Optional[List[OptimizerSeries]] = None
        self._findings: List[RuntimeFinding] = []
        self._live_ids: set = set()  # findings emitted during the run, replaced by their final form

    # -- data ------------------------------------------------------------------------------------
    def _series(self) -> List[OptimizerSeries]:
        if self._frozen is not None:
            return self._frozen
        if self._audit is None:
            return []
        return self._audit._live_series()

    def _live(self, finding: RuntimeFinding) -> None:
        """A finding the audit is certain of, during the run (``findings`` grows as training goes)."""
        self._findings.append(finding)
        self._live_ids.add(id(finding))

    def _freeze(self, series: List[OptimizerSeries], findings: List[RuntimeFinding]) -> None:
        self._frozen = series
        others = [f for f in self._findings if id(f) not in self._live_ids]  # added from outside
        self._findings = list(findings) + others
        self._live_ids = set()
        self._audit = None

    def _select(self, optimizer: Any) -> OptimizerSeries:
        series = self._series()
        if not series:
            raise LookupError("no optimizer step was recorded")
        if optimizer is None:
            return series[0]
        if isinstance(optimizer, bool):
            raise TypeError("optimizer= takes an index, an optimizer or a series name")
        if isinstance(optimizer, int):
            try:
                return series[optimizer]
            except IndexError:
                raise IndexError(
                    f"optimizer index {optimizer} out of range: recorded {[s.name for s in series]}"
                ) from None
        if isinstance(optimizer, str):
            for s in series:
                if s.name == optimizer:
                    return s
            raise KeyError(f"no series named {optimizer!r}: recorded {[s.name for s in series]}")
        from lraudit.runtime.schedulers import unwrap_optimizer

        target = unwrap_optimizer(optimizer)
        for s in series:
            if s.optimizer is target:
                return s
        raise KeyError(f"{type(optimizer).__name__} was not audited: recorded {[s.name for s in series]}")

    def lrs(self, group: Union[int, str] = 0, optimizer: Any = None) -> List[float]:
        """The LR ``group`` used at each optimizer step, in order (from the step the group appeared)."""
        s = self._select(optimizer)
        if isinstance(group, str):
            if group not in s.group_names:
                raise KeyError(f"{s.name} has no param group named {group!r}: {s.group_names}")
            group = s.group_names.index(group)
        if not 0 <= group < s.n_groups():
            raise IndexError(f"{s.name} has {s.n_groups()} param group(s); group {group} does not exist")
        return s.lrs(group)

    def steps(self, optimizer: Any = None) -> int:
        """Applied optimizer steps recorded (steps whose update GradScaler skipped are not counted)."""
        return self._select(optimizer).steps

    def series(self) -> List[SeriesEntry]:
        """``(optimizer_name, class_name, group_name, lrs)`` for every recorded group; each also has
        ``.name``, the series name (``lr-SGD``, ``lr-SGD/pg2``), ``.start`` and ``.params``."""
        out = []
        for s in self._series():
            for j in range(s.n_groups()):
                out.append(SeriesEntry(s.name, s.cls, s.group_name(j), s.lrs(j), s.series_name(j), s.start(j),
                                       s.params_of(j)))
        return out

    @property
    def findings(self) -> List[RuntimeFinding]:
        return list(self._findings)

    def add_findings(self, findings: Iterable[RuntimeFinding]) -> None:
        for f in findings:
            if not isinstance(f, RuntimeFinding):
                raise TypeError(f"expected RuntimeFinding, got {type(f).__name__}")
            self._findings.append(f)

    # -- output ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The trajectory file's content (version 2, see :mod:`lraudit.runtime.trajectory_file`)."""
        return {
            "version": TRAJECTORY_VERSION,
            "optimizers": [s.entry() for s in self._series()],
            "findings": [f.to_dict() for f in self._findings],
        }

    def save(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Write :meth:`to_dict` as JSON, atomically (a temporary file renamed over ``path``), with the
        permissions a plain file gets."""
        return trajectory_file.write_json(self.to_dict(), path)

    def report(self, console: Any = None) -> None:
        """Print the report ``lraudit report`` prints for the saved file: same table, same findings."""
        from lraudit.runtime.trajectory_report import render_trajectory

        render_trajectory(self.to_dict(), console)

    def plot(self, path: Union[str, "os.PathLike[str]"], log: bool = False) -> Any:
        """Plot the series to an image file (needs the ``plot`` extra)."""
        from lraudit.runtime.plot import plot_run

        return plot_run(self, path, log=log)

    def __repr__(self) -> str:
        names = [f"{s.name}({s.steps} steps)" for s in self._series()]
        return f"<Run {', '.join(names) or 'empty'}; {len(self._findings)} finding(s)>"


def load(path: Union[str, "os.PathLike[str]"]) -> "trajectory_file.TrajectoryRecord":
    """Read a trajectory file (version 1 or 2), every series expanded; ``TrajectoryError`` when it is not one."""
    return trajectory_file.load(path)
