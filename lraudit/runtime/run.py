"""The result of an audit: recorded LR series, findings, the trajectory file (DESIGN.md section 4)."""
from __future__ import annotations

import json
import math
import os
import tempfile
import weakref
from typing import Any, Iterable, List, Optional, Tuple, Union

from lraudit.runtime.findings import RuntimeFinding
from lraudit.runtime.series import Trajectory

TRAJECTORY_VERSION = 1


class OptimizerSeries:
    """What was recorded for one optimizer."""

    __slots__ = ("name", "cls", "group_names", "traj", "steps", "_ref", "__weakref__")

    def __init__(self, name: str, cls: str, group_names: List[str], traj: Trajectory, steps: int,
                 opt: Any = None) -> None:
        self.name = name
        self.cls = cls
        self.group_names = group_names
        self.traj = traj
        self.steps = steps
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


def _finite(v: float) -> Optional[float]:
    return v if math.isfinite(v) else None


class Run:
    """Returned by ``audit(...).__enter__()`` / ``Audit.start()``; complete once the audit stopped."""

    def __init__(self, audit: Any = None) -> None:
        self._audit = audit
        self._frozen: Optional[List[OptimizerSeries]] = None
        self._findings: List[RuntimeFinding] = []

    # -- data ------------------------------------------------------------------------------------
    def _series(self) -> List[OptimizerSeries]:
        if self._frozen is not None:
            return self._frozen
        if self._audit is None:
            return []
        return self._audit._live_series()

    def _freeze(self, series: List[OptimizerSeries], findings: List[RuntimeFinding]) -> None:
        self._frozen = series
        self._findings = list(findings) + self._findings
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

    def series(self) -> List[Tuple[str, str, str, List[float]]]:
        """``(optimizer_name, class_name, group_name, lrs)`` for every recorded group."""
        out = []
        for s in self._series():
            for j in range(s.n_groups()):
                out.append((s.name, s.cls, s.group_name(j), s.lrs(j)))
        return out

    @property
    def findings(self) -> List[RuntimeFinding]:
        return list(self._findings)

    def add_findings(self, findings: Iterable[RuntimeFinding]) -> None:
        for f in findings:
            if not isinstance(f, RuntimeFinding):
                raise TypeError(f"expected RuntimeFinding, got {type(f).__name__}")
            self._findings.append(f)

    # -- output ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The trajectory file's content (non-finite LRs become null: JSON has no NaN)."""
        return {
            "version": TRAJECTORY_VERSION,
            "optimizers": [
                {
                    "name": s.name,
                    "class": s.cls,
                    "groups": [
                        {"name": s.group_name(j), "lr": [_finite(v) for v in s.lrs(j)]}
                        for j in range(s.n_groups())
                    ],
                    "steps": s.steps,
                }
                for s in self._series()
            ],
            "findings": [f.to_dict() for f in self._findings],
        }

    def save(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Write :meth:`to_dict` as JSON, atomically (a temporary file renamed over ``path``)."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lraudit-", suffix=".json.tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, allow_nan=False)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    def report(self, console: Any = None) -> None:
        """Print a rich table of the recorded series and the findings."""
        from lraudit.runtime.report import render

        render(self, console)

    def plot(self, path: Union[str, "os.PathLike[str]"], log: bool = False) -> Any:
        """Plot the series to an image file (needs the ``plot`` extra)."""
        from lraudit.runtime.plot import plot_run

        return plot_run(self, path, log=log)

    def __repr__(self) -> str:
        names = [f"{s.name}({s.steps} steps)" for s in self._series()]
        return f"<Run {', '.join(names) or 'empty'}; {len(self._findings)} finding(s)>"


def load(path: Union[str, "os.PathLike[str]"]) -> dict:
    """Read a trajectory file; checks its version."""
    with open(os.fspath(path), encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("version") != TRAJECTORY_VERSION:
        raise ValueError(f"{os.fspath(path)}: not an lraudit trajectory file (version {TRAJECTORY_VERSION})")
    return data
