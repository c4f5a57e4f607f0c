"""A scheduler step begins and ends, a part of :class:`~lraudit.runtime.auditor.Audit` (mixed into it in
auditor.py).

The patched ``step()`` of every scheduler class (patches.py) offers a top-level step to ``_lane_step`` when
one audit runs (the usual case): a step the tracker's steady lane takes (see lane.py) is run and observed
there in full; for any other, and every step when several audits run, the wrapper calls
``_on_sched_begin`` before the step and ``_on_sched_end`` after it, with the token the first returned. A wrapper that is no
torch scheduler (accelerate's AcceleratedScheduler) counts as a step only if it steps its scheduler
(``_on_sched_nested``). Just before a top-level scheduler steps, two checks: LR019 (a resume that neither
loaded nor repositioned it) and LR017 (param groups added or removed since it was built: what torch does
then is found by stepping a shadow copy). A step that raises is explained: LR003 (ReduceLROnPlateau
without its metric), LR009 (OneCycleLR past its total_steps).
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch.optim import lr_scheduler as L

from lraudit.runtime import patches
from lraudit.runtime.checker import fmt
from lraudit.runtime.scheduler_tracking import SchedInfo
from lraudit.runtime.schedulers import (
    is_scheduler,
    mismatched_groups,
    past_end,
    scheduler_optimizer,
    shadow_copy,
    step_offset,
)
from lraudit.runtime.tracker import NOTE, Tracker


_LR003 = ("ReduceLROnPlateau.step() was called without the metric it monitors (before optimizer step "
          "{step} of {name}) and raised TypeError: it reduces the LR from that metric. Pass it: "
          "scheduler.step(val_loss).")


_LR009_ONECYCLE = ("OneCycleLR was stepped past its total_steps={total} (before optimizer step {{step}} of "
                   "{{name}}) and raised ValueError: it is stepped more often than it is sized for. Size it "
                   "with total_steps=epochs * len(loader) (or epochs= and steps_per_epoch=) and step it once "
                   "per batch.")


# first item of the token of a wrapper's step (accelerate's AcceleratedScheduler) until its scheduler steps
_DEFERRED = object()


class SchedulerStepsMixin:
    """Audit's observation of scheduler steps; see the module docstring."""

    def _lane_step(self, sched: Any, original: Any, args: tuple, kwargs: dict) -> Any:
        """A top-level step of ``sched`` while this is the only running audit (the usual case): when the
        steady lane takes it, runs it and observes it in full, without the general path's token and two
        calls (this runs at every scheduler step); else returns ``patches.DECLINED`` without running it,
        and the wrapper goes the general way (``_on_sched_begin``, the step, ``_on_sched_end``)."""
        if not args and not kwargs:
            info = self._sched.get(id(sched))
            if info is not None and info.sched is sched:
                tr = info.tracker
                lane = tr.lane
                try:
                    taken = lane is not None and lane.sched_begin(tr, info)
                except Exception as e:  # never break training; reported at stop (the general path follows)
                    self._errors.append(e)
                    taken = False
                if taken:
                    st = patches.state
                    st.busy = 1
                    try:
                        out = original(sched)
                    except BaseException as exc:
                        st.busy = 0
                        self._on_sched_end(sched, exc, (tr, info, sched, False))
                        raise
                    st.busy = 0
                    info.stepped = True
                    try:
                        # the general path says what the step did when the lane declines it, or when the
                        # lane was handed over during the step (a reader inside the schedule function)
                        if tr.lane is not lane or not lane.sched_end(tr, sched):
                            tr.settle()
                            self._sched_end_general(tr, info, sched, False, None)
                    except Exception as e:  # never break training; reported at stop
                        self._errors.append(e)
                    if self._pending is not None:
                        self._raise_pending()
                    return out
        return patches.DECLINED

    def _on_sched_begin(self, sched: Any, args: tuple, kwargs: dict) -> Optional[tuple]:
        """A scheduler step begins; returns the token the wrapper hands back to :meth:`_on_sched_end`."""
        token = None
        has_metric = bool(args) or (bool(kwargs) and "metrics" in kwargs)
        info = self._sched.get(id(sched))
        if info is not None and info.sched is sched:  # fast path: a scheduler seen before
            try:
                tr = info.tracker
                lane = tr.lane
                # the lane (see lane.py); a step with arguments is the general path's
                if lane is None or args or kwargs or not lane.sched_begin(tr, info):
                    if lane is not None:
                        tr.settle()
                    with_args = bool(args) or (bool(kwargs) and "epoch" in kwargs)
                    if info.parent is None and (tr.resume or len(tr.opt.param_groups) != info.n_groups):
                        self._before_step(info, tr, with_args, args, kwargs)
                    if not tr.checker.steps and _placed_by_hand(sched, info):
                        info.repositioned = True
                    tr.sched_begin(info.sid, with_args)
                token = (tr, info, sched, has_metric)
            except Exception as e:
                self._errors.append(e)
        elif not is_scheduler(sched):
            # a wrapper (accelerate's AcceleratedScheduler): it counts as one scheduler step only if it
            # steps its scheduler (it does not on accumulation micro-batches nor after a skipped update)
            token = (_DEFERRED, has_metric)
            self._tls.current = token
        else:
            token = self._begin(sched, has_metric, args, kwargs)
        if self._pending is not None:
            self._tls.current = None
            self._raise_pending()
        return token

    def _begin(self, s: Any, has_metric: bool, args: tuple = (), kwargs: Optional[dict] = None) -> Optional[tuple]:
        try:
            opt = scheduler_optimizer(s)
            if opt is None:
                return None
            tr = self._tracker_for(opt, create=self._targets is None)
            if tr is None:
                return None
            info = self._info_for(s, tr, lazy=True)
            lane = tr.lane  # a wrapper's scheduler (accelerate) steps here at every step
            if lane is not None:
                if not args and not kwargs and lane.sched_begin(tr, info):
                    return (tr, info, s, has_metric)
                tr.settle()
            with_args = bool(args) or "epoch" in (kwargs or {})
            if info.parent is None:
                self._before_step(info, tr, with_args, args, kwargs or {})
            if not tr.checker.steps and _placed_by_hand(s, info):
                info.repositioned = True
            tr.sched_begin(info.sid, with_args)
            return (tr, info, s, has_metric)
        except Exception as e:
            self._errors.append(e)
            return None

    def _before_step(self, info: SchedInfo, tr: Tracker, with_args: bool, args: tuple, kwargs: dict) -> None:
        """Checks made just before a top-level scheduler step runs: LR019 (a resume that forgot this
        scheduler), LR017 (groups added since it was built)."""
        if tr.resume:
            mark = tr.resume.pop(info.sid, None)
            if mark is not None and not with_args and getattr(info.sched, "last_epoch", None) == mark:
                self._lr019(info, tr, mark)
        n = len(tr.opt.param_groups)
        if n != info.n_groups and info.lr017 is None and info.n_groups is not None:
            built = mismatched_groups(info.sched, n)
            if built is not None:
                self._lr017(info, tr, built, n, args, kwargs)

    def _lr017(self, info: SchedInfo, tr: Tracker, built: int, n: int, args: tuple, kwargs: dict) -> None:
        name = type(info.sched).__name__
        new = list(range(built, n)) if n > built else []
        outcome = _what_torch_does(info.sched, tr.opt, built, args, kwargs)
        added = (f"param group(s) {', '.join(map(str, new))} added after it was built" if new
                 else f"{built - n} param group(s) fewer than it was built with")
        msg = (f"{name} steps {tr.name} over {n} param groups but was built for {built} ({added}, "
               f"with optimizer.add_param_group or a reload). In torch {torch.__version__.split('+')[0]} "
               f"it {outcome}. Build the scheduler again after adding the group (or build it "
               "once every group exists: unfreeze by setting the group's LR, not by adding a group).")
        info.lr017 = msg
        tr.checker.add("LR017", msg, group=new[0] if new else 0)

    def _lr019(self, info: SchedInfo, tr: Tracker, mark: int) -> None:
        name = type(info.sched).__name__
        closed = _closed_form(info.sched)
        effect = ("jumps back to the start of its schedule (it computes the LR from its own count)"
                  if closed else "takes the restored LR through its schedule again, from that step: each step "
                  "multiplies it by the factor of its restarted count (a warm-up ramps it up by its whole "
                  "range, a decay decays it again)")
        when = ("was built after the optimizer's state was restored and" if info.after_opt_load
                else "drove it then, and")
        msg = (f"the state of {tr.name} was restored with optimizer.load_state_dict() (before optimizer "
               f"step {tr.resumed_at}), but {name}, which {when} its state was neither loaded "
               f"(scheduler.load_state_dict) nor repositioned (last_epoch=, step(epoch)) before its next "
               f"step: it continues from its step {mark}, so the LR {effect}. Save scheduler.state_dict() "
               "with the checkpoint and load it on resume.")
        tr.checker.add("LR019", msg)

    def _on_sched_end(self, sched: Any, error: Optional[BaseException], cur: Optional[tuple] = None) -> None:
        if cur is None:
            return
        if cur[0] is _DEFERRED:  # the wrapper's scheduler step, if it made one
            tls = self._tls
            cur, tls.current = tls.current, None
            if cur is None or cur[0] is _DEFERRED:
                return
        try:
            tr, info, s, has_metric = cur
            info.stepped = True
            lane = tr.lane
            if lane is not None:
                if error is None and lane.sched_end(tr, s):
                    if self._pending is not None:
                        self._raise_pending()
                    return
                tr.settle()
            self._sched_end_general(tr, info, s, has_metric, error)
        except Exception as e:
            self._errors.append(e)
        if error is None and self._pending is not None:
            self._raise_pending()

    def _sched_end_general(self, tr: Tracker, info: SchedInfo, s: Any, has_metric: bool,
                           error: Optional[BaseException]) -> None:
        """The end of a scheduler step on the general path; a step that raised is explained."""
        tr.sched_end(info.sid, past_end(s) if info.may_end else None)
        if error is not None:
            if isinstance(error, TypeError) and isinstance(s, L.ReduceLROnPlateau) and not has_metric:
                tr.event(NOTE, "LR003", _LR003)
            elif isinstance(error, ValueError) and isinstance(s, L.OneCycleLR) and "total steps" in str(error):
                tr.event(NOTE, "LR009", _LR009_ONECYCLE.format(total=s.total_steps))
            if info.lr017 is not None and hasattr(error, "add_note"):
                error.add_note(f"lraudit LR017 param-groups-after-scheduler: {info.lr017}")

    def _on_sched_nested(self, sched: Any) -> None:
        tls = self._tls
        cur = getattr(tls, "current", None)
        if cur is not None and cur[0] is _DEFERRED:  # the wrapper steps its scheduler: one step
            tls.current = self._begin(sched, cur[1])
            return
        try:
            info = self._sched.get(id(sched))
            if info is None:
                opt = scheduler_optimizer(sched)
                tr = self._trackers.get(id(opt)) if opt is not None else None
                if tr is None:
                    return
                info = self._info_for(sched, tr)
            info.stepped = True
        except Exception as e:
            self._errors.append(e)


def _closed_form(sched: Any) -> bool:
    """Schedulers whose LR is a function of their step count (they jump back when it restarts)."""
    return isinstance(sched, (L.LambdaLR, L.OneCycleLR, L.CyclicLR, L.CosineAnnealingWarmRestarts,
                              L.LinearLR, L.ConstantLR)) or bool(getattr(sched, "_schedulers", None))


# shadow steps LR017 takes to see what the scheduler does to the added groups: a StepLR leaves every group
# alone until its next decay, so one step says nothing (bounded: a schedule quiet for longer is not judged)
LOOKAHEAD = 1000


def _what_torch_does(sched: Any, opt: Any, built: int, args: tuple, kwargs: dict) -> str:
    """Step a shadow copy (this step, then on until some group's LR changes) to say what the real one
    will do to the groups it was not built for."""
    try:
        with patches.suppressed(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shadow, sopt = shadow_copy(sched, opt)
            before = [float(g["lr"]) for g in sopt.param_groups]
            after = before
            for k in range(LOOKAHEAD):
                try:
                    shadow.step(*args, **kwargs) if k == 0 else shadow.step()
                except Exception as e:
                    when = "at this step" if k == 0 else f"at its step {k + 1} from here"
                    return f"raises {type(e).__name__} {when}: {e}"
                after = [float(g["lr"]) for g in sopt.param_groups]
                if after != before:
                    break
    except Exception:
        return "cannot be predicted"
    new = list(range(built, len(after)))
    if not new:
        return "runs, but the scheduler's per-group state no longer lines up with the groups"
    moved = [j for j in new if before[j] != after[j]]
    when = "at this step" if k == 0 else f"at its step {k + 1} from here"
    if not moved:
        if after == before:
            return (f"changes no group's LR within {LOOKAHEAD} steps, so what it does to group(s) "
                    f"{', '.join(map(str, new))} cannot be seen yet")
        return (f"leaves group(s) {', '.join(map(str, new))} unscheduled (their LR stays as it is while the "
                f"others change {when})")
    j = moved[0]
    return (f"schedules group(s) {', '.join(map(str, moved))} from their own current LR with factors meant "
            f"for other groups (group {j}: {fmt(before[j])} -> {fmt(after[j])} {when}); the "
            "scheduler has no base LR for them")


def _placed_by_hand(sched: Any, info: SchedInfo) -> bool:
    """``last_epoch`` was set by hand (ultralytics: ``scheduler.last_epoch = start_epoch - 1``, then a
    step at each epoch's start): a step from there goes where the code put the schedule, and before the
    first update it shifts nothing (not LR001). Seen as ``last_epoch`` moving against the steps counted
    (``_step_count``) since the audit met the scheduler, or left at -1, where no constructor leaves it.
    A constructor given ``last_epoch=k`` (the documented resume) and a load move both together."""
    offset = step_offset(sched)
    if offset is None:
        return False
    return sched.last_epoch == -1 or (info.offset is not None and offset != info.offset)
