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

from typing import Any, Callable, Dict, List, Optional, Tuple

from lraudit.runtime import expect as expect_mod
from lraudit.runtime.findings import RuntimeFinding
from lraudit.runtime.run import OptimizerSeries
from lraudit.runtime.scheduler_tracking import remember_idle
from lraudit.runtime.schedulers import underlying_scheduler
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
        for i in self._sched_list:  # idle in this audit: the next one may see it moved (LR005 above)
            st = i.tracker.checker.stats.get(i.sid)
            if i.parent is None and not i.stepped and (st is None or not st.n_top):
                remember_idle(i.sched)
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
                used, f = self._replayed(tr, spec)
                used_scheduler = used_scheduler or used
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

    def _replayed(self, tr: Tracker, spec: str) -> Tuple[bool, Optional[RuntimeFinding]]:
        """``expect='scheduler'`` (or per step) for ``tr``: whether it has a scheduler to replay, and the
        LR015 where the run differs from the replay of its phases (see :meth:`_phases`)."""
        c = tr.checker
        steps = c.steps
        chain = self._phases(tr)
        if not chain:
            return False, None
        per_step = spec == expect_mod.SCHEDULER_PER_STEP
        phases: List[expect_mod.Phase] = []
        cut = ""  # why the replay stops before the last phase
        for info, start, handoff in chain:
            name = type(info.sched).__name__
            st = c.stats.get(info.sid)
            why = ""
            if not info.anchors:
                why = ("it needs the metric, which only the training loop has" if info.plateau
                       else f"it could not be copied: {info.uncopied or 'no copy was taken'}")
            elif not per_step and st is not None and st.with_args:
                why = "it was stepped with an explicit epoch"
            if why:
                cut = f"{name} cannot be replayed: {why}"
                break
            positions = st.positions if st is not None and st.positions is not None else ()
            phases.append(expect_mod.Phase(info.anchors, positions, start, handoff,
                                           st.last_step if st is not None else None))
        if not phases:
            expect_mod.warn(f"lraudit: expect={spec!r} cannot simulate {name} of {tr.name} ({why}); "
                            "no LR015 check for it")
            return True, None
        if cut:  # the phases before it are still checked, up to where it took over
            took_over = chain[len(phases)][1]
            phases.append(expect_mod.Phase([], (), took_over))
            expect_mod.warn(f"lraudit: expect={spec!r} checks {tr.name} only before its step "
                            f"{took_over}: {cut}")
        rows, stopped = expect_mod.simulate_phases(phases, steps, per_step)
        replayed = chain[:len(phases) - bool(cut)]
        names = " then ".join(type(i.sched).__name__ for i, _, _ in replayed)
        if len(replayed) == 1:
            origin = f"what {names} alone gives" + (" with one step per optimizer step" if per_step
                                                      else ", stepped where it was stepped")
        else:
            origin = f"what {names} alone give, each from where it took over and " + (
                "stepped once per optimizer step" if per_step else "stepped where it was stepped")
        if stopped and not cut:  # said with the finding, if there is one; said anyway
            expect_mod.warn(f"lraudit: expect={spec!r} has no expectation for part of {tr.name}: {stopped}; "
                            "no LR015 check from there in that phase")
        stopped = stopped or cut
        f = expect_mod.compare(tr.name, c.traj, steps, rows, self.rtol, self.atol, first=0,
                               origin=origin,
                               extra=(f"(no expectation after: {stopped})" if stopped else ""))
        return True, f

    def _phases(self, tr: Tracker) -> List[tuple]:
        """What ``expect='scheduler'`` replays for ``tr``: ``(SchedInfo, start, handoff)`` per phase.

        Schedulers that stepped one after the other (each one's last step before the next one's first:
        a warm-up then a schedule stepped by hand, cosine then SWALR, a new scheduler for an unfreezing
        stage) are phases: each drives the LR from where it took over, which is its construction when
        it was built after the one before stopped (it was built for that stage, start=the step count
        then), else its first step, from the LRs the one before left (handoff). Schedulers whose steps
        interleave are not phases: the first one that stepped is replayed alone, so the other one's
        effect shows as LR015. With no step at all, the first attached one."""
        cands = [i for i in self._sched_list if i.tracker is tr and i.parent is None]
        if not cands:
            return []
        stats = tr.checker.stats
        stepped = sorted((i for i in cands if i.sid in stats and stats[i.sid].n_top > 0),
                         key=lambda i: stats[i.sid].first_idx)
        if not stepped:
            return [(cands[0], None, False)]
        chain = [(stepped[0], None, False)]
        for before, info in zip(stepped, stepped[1:]):
            ended, st = stats[before.sid].last_idx, stats[info.sid]
            if ended is None or st.first_idx is None or ended >= st.first_idx:
                return chain[:1]  # interleaved: not phases
            built_after = [a for a in info.anchors if a[4] > ended and a[0] <= st.first_step]
            if built_after:
                chain.append((info, built_after[0][0], False))
            elif any(a[0] <= st.first_step for a in info.anchors) or not info.anchors:
                chain.append((info, st.first_step, True))
            else:
                return chain[:1]  # no copy of it from before it took over
        return chain
