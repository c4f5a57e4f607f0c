"""The steady lane: the usual optimizer and scheduler steps recorded without the checker's bookkeeping.

Most steps of a run are alike: one scheduler step writes the LRs (or leaves them as they are), the
optimizer steps with them, and nothing else touches a param group. The :class:`~lraudit.runtime.checker.
Checker` handles every observation the general way (writes, intervals, first steps, rule state), which
costs several microseconds per step in Python. On such a stretch the tracker runs a :class:`Lane`
instead: it reads the LRs where the checker would (before and after the scheduler step, before the
update), checks by identity that nobody else wrote them, keeps counts and the new rows, and hands them
to the checker in one go ("settles") when anything else happens: a write, a second scheduler step in an
interval, a step with arguments, a closure that changed an LR, a skipped update, a construction or a
load, an LR or momentum out of range, a schedule past its end, or a reader (``Tracker.checker`` and ``Tracker.params`` settle first),
and every :data:`SETTLE_EVERY` steps. The checker then holds exactly what it would have recorded step by
step (``tests/runtime/test_lane.py`` runs the same training with and without the lane and compares).

A lane follows one optimizer and at most one scheduler (the one that stepped it last); no finding can
arise on a step the lane accepts, so no live finding waits for a settle.
"""
from __future__ import annotations

import operator
from typing import Any, List, Optional

from lraudit.runtime.schedulers import past_end

IDLE, SCHED, SCHED_DONE, OPT = range(4)  # after an update; inside a scheduler step; after it; inside an update
SETTLE_EVERY = 1024  # lane steps between two settles (bounds what a reader may find unsettled)
RETRY_AFTER = 16  # general-path updates before the lane is tried again once it was left

_LR = operator.itemgetter("lr")
_INF = float("inf")


class Lane:
    __slots__ = ("info", "sid", "may_end", "momentum", "one_momentum", "phase", "last", "n", "rows", "counts",
                 "steps", "sched_steps", "sb_steps", "mom_steps", "mom_rows", "mom_last")

    def __init__(self, info: Any, momentum: bool, last: list, mom_last: Optional[list],
                 one_momentum: bool = False) -> None:
        self.info = info  # the SchedInfo of the scheduler the lane follows, or None (no scheduler step)
        self.sid = info.sid if info is not None else -1
        self.may_end = info is not None and info.may_end
        self.momentum = momentum  # its steps may write momentum / betas (OneCycleLR, CyclicLR)
        # the record's one column is the one group's momentum (SGD under OneCycleLR): read inline
        self.one_momentum = momentum and one_momentum
        self.phase = IDLE
        self.last = last  # the LRs in the groups now (the very float objects)
        self.n = len(last)  # groups: a lane ends when their number changes
        # the rows the updates used, and how many updates used each (two lists: no container per row)
        self.rows: List[list] = []
        self.counts: List[int] = []
        # counts, not observations: the checker's idx (one per observation) and the observation of the
        # last scheduler step's start follow from them and the phase (see settle_into)
        self.steps = 0  # updates
        self.sched_steps = 0
        self.sb_steps = -1  # updates before the last scheduler step
        self.mom_steps: List[int] = []  # updates before each new momentum reading
        self.mom_rows: List[list] = []  # the readings
        self.mom_last = mom_last

    # -- observations: True when the lane took it, False when the general path must ---------------
    def sched_begin(self, tr: Any, info: Any) -> bool:
        """A step without arguments (the caller checked) of the scheduler ``info`` begins."""
        if self.phase != IDLE or info is not self.info:
            return False
        groups = tr.opt.param_groups
        last = self.last
        # the groups hold the very LR objects the lane saw last: nobody wrote one since (inlined: a
        # call costs as much as the test, and this runs four times per step)
        if len(groups) != self.n or not (groups[0]["lr"] is last[0] if self.n == 1
                                         else all(map(operator.is_, map(_LR, groups), last))):
            return False
        self.sb_steps = self.steps
        self.sched_steps += 1
        self.phase = SCHED
        return True

    def sched_end(self, tr: Any, sched: Any) -> bool:
        if self.phase != SCHED:
            return False
        groups = tr.opt.param_groups
        vals = last = self.last
        if len(groups) != self.n:  # a group added or removed: the general path says what it means
            return False
        # a float in range: anything else (a tensor, an invalid LR: LR014) takes the general path
        if self.n == 1:  # the usual case, without a map
            v = groups[0]["lr"]
            if v is not last[0]:
                if type(v) is not float or not 0.0 <= v < _INF:
                    return False
                vals = [v]
        elif not all(map(operator.is_, map(_LR, groups), last)):
            vals = list(map(_LR, groups))
            for v in vals:
                if type(v) is not float or not 0.0 <= v < _INF:
                    return False
        if self.may_end and past_end(sched) is not None:
            return False
        if self.one_momentum:
            m = groups[0].get("momentum")
            before = self.mom_last[0]  # type: ignore[index]
            if m is not before:  # the scheduler wrote it (a new float object)
                if type(m) is not float or not 0.0 <= m < 1.0:  # LR022, NaN, a tensor: the general path
                    return False
                if m != before:
                    row = [m]
                    self.mom_steps.append(self.steps)
                    self.mom_rows.append(row)
                    self.mom_last = row
        elif self.momentum:
            row = tr._params.read(groups)
            if row is None:
                return False
            if row != self.mom_last:
                for v in row:
                    if not 0.0 <= v < 1.0:  # LR022 (or NaN): the general path reports it
                        return False
                self.mom_steps.append(self.steps)
                self.mom_rows.append(row)
                self.mom_last = row
        self.last = vals
        self.phase = SCHED_DONE
        return True

    def pre(self, tr: Any, opt: Any) -> bool:
        phase = self.phase
        if (phase != IDLE and phase != SCHED_DONE) or tr.loaded:
            return False
        groups = opt.param_groups
        last = self.last
        if len(groups) != self.n or not (groups[0]["lr"] is last[0] if self.n == 1
                                         else all(map(operator.is_, map(_LR, groups), last))):
            return False
        tr.pre_count += 1
        rows = self.rows
        if rows and (rows[-1] is last or rows[-1] == last):  # floats only: == never reaches a tensor
            self.counts[-1] += 1
        else:
            rows.append(last)
            self.counts.append(1)
        self.phase = OPT
        return True

    def post(self, tr: Any, opt: Any, args: tuple, kwargs: dict) -> bool:
        # found_inf: a fused optimizer under GradScaler, whose update may have been skipped
        if self.phase != OPT or getattr(opt, "found_inf", None) is not None:
            return False
        if len(args) > 1 or kwargs:  # args is (optimizer,) without a closure
            # a closure ran inside the step (Lightning's training_step): it may have written an LR
            groups = opt.param_groups
            last = self.last
            if len(groups) != self.n or not (groups[0]["lr"] is last[0] if self.n == 1
                                             else all(map(operator.is_, map(_LR, groups), last))):
                return False
        sample = tr.sample
        if sample is not None:
            tr.sample_version = sample._version
        self.steps += 1
        self.phase = IDLE
        if self.steps >= SETTLE_EVERY:
            tr.settle(again=True)
        return True

    # -- handing over ----------------------------------------------------------------------------
    def settle_into(self, checker: Any, params: Any) -> None:
        """Record in ``checker`` (and ``params``) what the general path would have recorded."""
        c = checker
        base = c.idx
        phase, steps, sched_steps = self.phase, self.steps, self.sched_steps
        # one observation per scheduler step's start and end, update's start and end: every one taken
        # is complete but in the current phase (IDLE when between updates)
        c.idx = base + 2 * sched_steps - (phase == SCHED) + 2 * steps + (phase == OPT)
        if sched_steps:
            st = c.stats[self.sid]
            st.n_top += sched_steps
            # the last scheduler step began between updates (IDLE): every earlier one, update and
            # scheduler step had both its observations
            st.last_idx = base + 2 * (sched_steps - 1) + 2 * self.sb_steps + 1
            st.last_step = c.steps + self.sb_steps
        c.traj.append_rows(self.rows, self.counts)
        if self.mom_rows:
            done = c.steps
            params.record([done + before for before in self.mom_steps], self.mom_rows)
        c.steps += steps
        c.last = self.last
        # the interval of the update under way has its scheduler step: the last one began since the
        # last update ended (a lane opens on an interval without one)
        if phase == SCHED or phase == SCHED_DONE or (phase == OPT and sched_steps and self.sb_steps == steps):
            c.icount[self.sid] = 1
        if phase == OPT:
            c.pending = True


def open_lane(tr: Any, sched_info: Any) -> Optional[Lane]:
    """A lane for ``tr`` if its recent steps were plain and nothing is pending, else None."""
    c = tr._checker
    # lr002_wait: a manual warm-up not (yet) on its scheduler's value; the next plain step decides LR002
    if (tr.queue is not None or c.reads_lr_first or c.record_positions or tr.loaded
            or c.pending or c.past_end is not None or c.iskips or c.icount or not c.steps
            or ("LR001" in c.hits and "LR001" not in c.emitted) or c.lr002_wait or c.layer_write is not None):
        return None
    last = c.last
    groups = tr.opt.param_groups
    if not last or len(last) != len(groups) or len(groups) != len(tr.group_names):
        return None
    for g, v in zip(groups, last):
        if type(v) is not float or g["lr"] is not v:
            return None
    info = None
    stepped = [(st.last_idx, sid) for sid, st in c.stats.items() if st.n_top > 0]
    if stepped:
        _, sid = max(stepped)
        st = c.stats[sid]
        # LR011 compares when schedulers step: with every other one started before this one, the
        # comparison can no longer change while only this one steps
        settled_order = c.lr011 is not None or all(
            c.stats[o].first_idx < st.first_idx for _, o in stepped if o != sid)
        cand = sched_info(sid)
        # a resume mark (LR019) is looked at by the scheduler's next step on the general path
        # (a write waiting on whether an ended schedule steps again: only the general path sees its step)
        if (settled_order and st.first_idx is not None and cand.parent is None and cand.lane_ok
                and cand.lr017 is None and cand.n_groups == len(groups) and sid not in tr.resume
                and (c.ended_write is None or sid not in c.ended_write.ended)):
            info = cand
    momentum = info is not None and tr._may_write_params(info.sid)
    params = tr._params
    one = (len(groups) == 1 and params.columns == [(0, "momentum")] and params.current is not None
           and len(params.current) == 1 and type(groups[0].get("momentum")) is float)
    return Lane(info, momentum, last, params.current, one)
