"""What the callbacks log with ``log=True``: the values recorded since the last call, per step.

Shared by the Lightning callback (``trainer.loggers``) and the transformers callback (the Trainer's
``report_to`` integrations). Series carry LearningRateMonitor's names (``lr-SGD`` for a single group,
``lr-SGD/pg1``, ``lr-SGD/pg2`` for several, ``lr-SGD/<name>`` for a named group) and, once a scheduler
changed them, ``<series>-momentum`` / ``-beta1`` / ``-beta2``. Only new values are read (the tail of
the compressed series), so a log call costs the same at step 10 and at step 10^6.
"""
from __future__ import annotations

from typing import Dict, List, Tuple


class SeriesLog:
    """Cursor over a run's series: :meth:`new` returns ``[(step, {name: value})]`` not returned before."""

    def __init__(self) -> None:
        self._done: Dict[str, int] = {}  # series name -> updates already returned
        self._params_done: Dict[str, int] = {}

    def new(self, run) -> List[Tuple[int, Dict[str, float]]]:
        if run is None:
            return []
        by_step: Dict[int, Dict[str, float]] = {}
        for s in run._series():
            n = min(s.steps, s.traj.n)  # applied updates with a recorded row
            n_groups = s.n_groups()
            for j in range(n_groups):
                name = s.series_name(j)
                start = s.start(j)
                done = max(self._done.get(name, 0), start)
                if n <= done:
                    continue
                for k, v in enumerate(s.traj.tail(j, n - done)):
                    by_step.setdefault(done + k, {})[name] = v
                self._done[name] = n
                for key, c in s.param_columns(j):
                    pname = f"{name}-{key}"
                    pstart = max(self._params_done.get(pname, 0), start, s.params.start(c))
                    if n <= pstart:
                        continue
                    for k, v in enumerate(s.params.tail(c, n - pstart, n)):
                        by_step.setdefault(pstart + k, {})[pname] = v
                    self._params_done[pname] = n
        return sorted(by_step.items())
