"""What an audit gives, a part of :class:`~lraudit.runtime.auditor.Audit` (mixed into it in auditor.py).

The series of the audited optimizers, read during the run (``Run`` asks ``_live_series``) and frozen
into the :class:`~lraudit.runtime.run.Run` at ``stop()`` (``_finish``) with the findings: each
checker's, then LR015 where ``expect=`` was given (see expect.py; ``expect='scheduler'`` replays the
scheduler that drove the optimizer from its anchors). ``_finish`` then lets go of the user's objects.

A scheduler a framework's loop steps when it decides a step is due (Lightning's ``interval`` and
``frequency``) is registered with :meth:`ConclusionsMixin.driven_by_loop`; one the loop never asked to
step had no step due yet (a ``max_steps`` smoke test shorter than the epoch of an ``interval="epoch"``
scheduler) and is not LR005. One the loop asked, and that still never stepped, is.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from lraudit.runtime import expect as expect_mod
from lraudit.runtime.findings import RuntimeFinding
from lraudit.runtime.run import OptimizerSeries
from lraudit.runtime.schedulers import underlying_scheduler
from lraudit.runtime.scheduler_tracking import SchedInfo
from lraudit.runtime.tracker import Tracker


class ConclusionsMixin:
    """Audit's series and findings; see the module docstring."""

    def _live_series(self) -> List[OptimizerSeries]:
        return [OptimizerSeries(tr.name, tr.cls, list(tr.group_names), tr.checker.traj, tr.checker.steps,
                                tr.opt, tr.params) for tr in self._order]

    def driven_by_loop(self, scheduler: Any, asked: Callable[[], bool], undo: Any = None) -> None:
        """``scheduler`` is stepped by a framework's loop when that loop says a step is due; ``asked()``,
        called at ``stop()``, says whether the loop asked for one during the audit (None: the loop does
        not step it after all). ``undo``: what
        watching the loop installed, removed (``undo.remove()``) with the audit's hooks."""
        self._loop_driven[id(underlying_scheduler(scheduler))] = asked
        if undo is not None:
            self._handles.append(undo)

    def _loop_asked(self) -> Dict[int, bool]:
        """For each loop-driven scheduler (by sid), whether the loop asked it to step."""
        out: Dict[int, bool] = {}
        for info in self._sched_list:
            asked = self._loop_driven.get(id(info.sched))
            if asked is None:
                continue
            try:
                answer = asked()
            except Exception as e:  # cannot tell: LR005 decides as for any scheduler
                self._errors.append(e)
                continue
            if answer is not None:
                out[info.sid] = bool(answer)
        return out

    def _finish(self) -> None:
        for tr in self._order:
            tr.flush(wait=True)
        asked = self._loop_asked() if self._loop_driven else {}
        info: Optional[Callable[[int], dict]] = None
        if asked:
            # not_due: never asked (no LR005); loop_asked: asked, so an LR005 names the step that never ran
            def with_loop_answer(sid: int, _base=self._info_dict) -> dict:
                return dict(_base(sid), not_due=asked.get(sid) is False, loop_asked=asked.get(sid) is True)

            info = with_loop_answer
        findings: List[RuntimeFinding] = []
        for tr in self._order:
            findings.extend(tr.checker.finish(info))
        if self.expect is not None:
            for f in self._expectations():
                findings.append(f)
                self._announce(f)
        order = {tr.name: k for k, tr in enumerate(self._order)}
        findings.sort(key=lambda f: (order.get(f.optimizer, len(order)), f.step if f.step is not None else -1,
                                     f.rule))
        self.run._freeze(self._live_series(), findings)
        # drop strong references to the user's objects
        self._sched.clear()
        self._sched_list = []
        self._loop_driven = {}
        self._trackers.clear()
        for tr in self._order:
            tr.opt = None
            tr.sample = None
        self._order = []

    def _expectations(self) -> List[RuntimeFinding]:
        out: List[RuntimeFinding] = []
        used_scheduler = False
        wanted_scheduler = False
        for k, tr in enumerate(self._order):
            spec = expect_mod.spec_for(self.expect, k, tr.opt, tr.name)
            if spec is None:
                continue
            c = tr.checker
            steps, n_groups = c.steps, c.traj.n_groups()
            if isinstance(spec, str):  # "scheduler" / "scheduler-per-step"
                wanted_scheduler = True
                info = self._attached(tr)
                if info is None:
                    continue
                used_scheduler = True
                name = type(info.sched).__name__
                st = c.stats.get(info.sid)
                if not info.anchors:
                    why = ("it needs the metric, which only the training loop has" if info.plateau
                           else "it could not be copied")
                    expect_mod.warn(f"lraudit: expect={spec!r} cannot simulate {name} of {tr.name} ({why}); "
                                    "no LR015 check for it")
                    continue
                per_step = spec == expect_mod.SCHEDULER_PER_STEP
                if not per_step and st is not None and st.with_args:
                    expect_mod.warn(f"lraudit: expect='scheduler' cannot replay {name} of {tr.name}: it was "
                                    "stepped with an explicit epoch; no LR015 check for it")
                    continue
                positions = st.positions if st is not None and st.positions is not None else ()
                rows, stopped = expect_mod.simulate_anchored(info.anchors, positions, steps, per_step)
                origin = (f"what {name} alone gives with one step per optimizer step" if per_step
                          else f"what {name} alone gives, stepped where it was stepped")
                f = expect_mod.compare(tr.name, c.traj, steps, rows, self.rtol, self.atol, first=0,
                                       origin=origin,
                                       extra=(f"(no expectation after: {stopped})" if stopped else ""))
            else:
                try:
                    rows, length = expect_mod.expected_rows(spec, steps, n_groups)
                except Exception as e:  # the user's expectation, not lraudit, failed
                    expect_mod.warn(f"lraudit: expect= could not be evaluated for {tr.name}: {e!r}; "
                                    "no LR015 check for it")
                    continue
                f = expect_mod.compare(tr.name, c.traj, steps, rows, self.rtol, self.atol, length=length)
            if f is not None:
                out.append(f)
        if wanted_scheduler and not used_scheduler:
            expect_mod.warn("lraudit: expect='scheduler' but no audited optimizer has a scheduler attached; "
                            "nothing to compare")
        return out

    def _attached(self, tr: Tracker) -> Optional[SchedInfo]:
        """The scheduler ``expect='scheduler'`` simulates: the first independent one that stepped, else
        the first attached."""
        cands = [i for i in self._sched_list if i.tracker is tr and i.parent is None]
        if not cands:
            return None
        stats = tr.checker.stats
        stepped = [i for i in cands if i.sid in stats and stats[i.sid].n_top > 0]
        return (stepped or cands)[0]
