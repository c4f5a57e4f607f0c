"""Which schedulers drive an audited optimizer, a part of :class:`~lraudit.runtime.auditor.Audit` (mixed
into it in auditor.py).

One :class:`SchedInfo` per scheduler seen (the schedulers a scheduler holds are its children): given
with ``schedulers=``, found where the training code keeps it when its optimizer's tracker is created
(``_discover``, see discovery.py; never a walk over the whole heap), met at its first step
(scheduler_steps.py), or built during the audit (``_on_sched_created``: one of the same kind built while
a previous one still runs is a restart, LR006; one built right after the optimizer's state was restored
is watched for LR018 and LR019). ``load_state_dict()`` on a scheduler is a resume (``_on_sched_loaded``: it answers LR019,
and the next update is compared with it, LR018). For ``expect='scheduler'`` a scheduler is anchored
(``_snapshot``) at its start, construction and loads: a shadow copy of it and of its optimizer's groups.
"""
from __future__ import annotations

import sys
import weakref
from typing import Any, List, Optional

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as L

from lraudit.runtime import discovery
from lraudit.runtime import patches
from lraudit.runtime.checker import fmt
from lraudit.runtime.series import close
from lraudit.runtime.schedulers import (
    built_groups,
    has_end,
    held,
    is_scheduler,
    reached_end,
    scheduler_optimizer,
    shadow_copy,
    step_offset,
    underlying_scheduler,
)
from lraudit.runtime.tracker import _SKIP_DIRS, ATTACH, CTOR, Tracker


MAX_ANCHORS = 64  # re-anchored expectations kept per scheduler (a resume each epoch stays well under)

# Schedulers an audit ended without seeing step, with their position then. One audit per epoch with the
# scheduler stepped after the block (``with audit(opt): train_epoch()`` then ``sched.step()``) shows, at
# the next audit, a scheduler that moved between the two: it is stepped, outside the audited blocks, and
# is not LR005 again. A scheduler resumed and forgotten does not move between audits.
_IDLE_AT_EXIT: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()


def _position(s: Any) -> tuple:
    return (getattr(s, "last_epoch", None), getattr(s, "_step_count", None))


def remember_idle(s: Any) -> None:
    """An audit ends and ``s`` never stepped during it."""
    try:
        _IDLE_AT_EXIT[s] = _position(s)
    except TypeError:  # not weakly referable or not hashable: nothing is remembered
        pass


def stepped_since_idle(s: Any) -> bool:
    """``s`` ended an earlier audit idle and has moved since: it is stepped between audits."""
    try:
        then = _IDLE_AT_EXIT.get(s)
    except TypeError:
        return False
    return then is not None and then != _position(s)


class SchedInfo:
    __slots__ = ("sid", "sched", "tracker", "parent", "stepped", "anchors", "simulable", "may_end", "plateau",
                 "loaded", "after_opt_load", "lr017", "n_groups", "lane_ok", "predates", "outside", "uncopied",
                 "repositioned", "offset")

    def __init__(self, sid: int, sched: Any, tracker: Tracker) -> None:
        self.sid = sid
        self.sched = sched
        self.tracker = tracker
        self.parent: Optional[int] = None
        self.stepped = False
        self.anchors: List[tuple] = []  # (step, scheduler steps before, (shadow sched, shadow opt), lazy,
        #                                 event idx)
        self.plateau = isinstance(sched, L.ReduceLROnPlateau)
        self.simulable = not self.plateau
        self.may_end = has_end(sched)  # LR009 needs a look at its state after each step
        self.loaded = False  # its state was loaded since the optimizer's last step (LR018 looks next)
        self.after_opt_load = False  # built after the optimizer's state was restored, before a step
        self.lr017 = None  # the explanation once it stepped over groups it was not built for
        # the group count it is consistent with: LR017 looks closer only when the optimizer's differs
        built = built_groups(sched)
        groups = getattr(getattr(tracker, "opt", None), "param_groups", None)
        self.n_groups = built if built is not None else (len(groups) if groups is not None else None)
        # the steady lane may follow it: no scheduler of its own to step (their steps nest in its), no
        # metric (a plateau's steps carry one)
        self.lane_ok = not self.plateau and not held(sched)
        self.predates = False  # it existed when the audit began (found, not built or met during it)
        self.outside = False  # an earlier audit ended with it idle and it stepped since (see _IDLE_AT_EXIT)
        self.uncopied = ""  # why expect='scheduler' could not copy it
        self.repositioned = False  # its last_epoch was set by hand before a step preceding any update
        self.offset = step_offset(sched)  # last_epoch - _step_count when met (moves when set by hand)


class SchedulerTrackingMixin:
    """Audit's record of the schedulers it observes; see the module docstring."""

    def _discover(self, tr: Tracker) -> None:
        """Schedulers that already drive ``tr.opt``: given explicitly, or kept where the training code
        keeps them (see :mod:`lraudit.runtime.discovery`). Never a walk over the whole heap."""
        opt = tr.opt
        for s in self._given_schedulers:
            if scheduler_optimizer(s) is opt:
                self._found(s, tr)

        def match(x: Any) -> bool:
            return is_scheduler(x) and scheduler_optimizer(x) is opt

        frames = discovery.user_frames(_SKIP_DIRS, sys._getframe(1))
        try:
            found = discovery.find(discovery.frame_roots(frames), match, _opaque)
        finally:
            del frames
        for s in found:
            self._found(s, tr)

    def _found(self, s: Any, tr: Tracker) -> None:
        """``s`` existed when the audit of ``tr`` began."""
        info = self._info_for(s, tr)
        info.predates = True
        info.outside = stepped_since_idle(s)

    def _info_for(self, s: Any, tr: Tracker, attach: bool = True, lazy: bool = False) -> SchedInfo:
        info = self._sched.get(id(s))
        if info is not None:
            return info
        info = SchedInfo(len(self._sched_list), s, tr)
        self._sched[id(s)] = info
        self._sched_list.append(info)
        if attach:
            tr.event(ATTACH, info.sid)
        for c in held(s):
            self._info_for(c, tr).parent = info.sid
        self._snapshot(info, tr, lazy)
        return info

    def _snapshot(self, info: SchedInfo, tr: Tracker, lazy: bool = False) -> None:
        """Anchor the expectation of ``expect='scheduler'`` here: a copy of the scheduler and the
        optimizer's groups as they are now (at the start, a construction, a load)."""
        if not self._wants_snapshots or not info.simulable or info.parent is not None:
            return
        if len(info.anchors) >= MAX_ANCHORS:
            return
        st = tr.checker.stats.get(info.sid)
        try:
            with patches.suppressed():
                snap = shadow_copy(info.sched, tr.opt)
            c = tr.checker
            info.anchors.append((c.steps, st.n_top if st is not None else 0, snap, lazy, c.idx))
        except Exception as e:  # state it cannot copy (a generator): the expectation says so, no replay
            info.simulable = False
            info.uncopied = f"{type(e).__name__}: {e}"

    def _on_sched_created(self, s: Any, before: Any = None) -> None:
        try:
            if not is_scheduler(s):
                return
            opt = scheduler_optimizer(s)
            if opt is None:
                return
            tr = self._tracker_for(opt, create=self._targets is None)
            if tr is None:
                return
            if id(s) in self._sched:  # seen while being built (a nested construction)
                info = self._sched[id(s)]
            else:
                info = SchedInfo(len(self._sched_list), s, tr)
                self._sched[id(s)] = info
                self._sched_list.append(info)
            kids = held(s)
            kid_ids = {id(c) for c in kids}
            restart = None
            for other in self._sched_list:
                if (other.tracker is tr and other is not info and other.stepped and other.parent is None
                        and type(other.sched) is type(s) and id(other.sched) not in kid_ids
                        and not _new_phase(other.sched, tr)):
                    restart = other.sid
                    break
            lost = _write_lost_to_stale_base(s, before, tr.checker.last, tr.opt)
            tr.observe(CTOR, info.sid, restart)
            if lost is not None:
                j, written, stale, now = lost
                name = type(s).__name__
                tr.checker.add("LR002", (
                    f"param_groups[{j}]['lr'] of {tr.name} was set to {fmt(written)} right before {name} was "
                    f"built, but {name} takes its base LR from the group's 'initial_lr' ({fmt(stale)}, left "
                    f"there by an earlier scheduler), so its construction replaced the value written with "
                    f"{fmt(now)}: the new stage runs {name}'s schedule from {fmt(stale)}, not from "
                    f"{fmt(written)}. Set group['initial_lr'] to the new LR too (or delete it) before building "
                    "the scheduler."), step=tr.checker.steps, group=j)
            for c in kids:
                self._info_for(c, tr).parent = info.sid
            if tr.resumed_at is not None and tr.resumed_at == tr.checker.steps and not info.plateau:
                info.after_opt_load = True
                if getattr(s, "last_epoch", None) == 0 and not _agrees(s, getattr(tr, "restored_lrs", None)):
                    tr.resume[info.sid] = 0  # built fresh (not with last_epoch=N) after a resume, elsewhere
            self._snapshot(info, tr)
            if "lightning.pytorch" in sys.modules or "pytorch_lightning" in sys.modules:
                from lraudit.integrations.lightning import watch_built_scheduler

                watch_built_scheduler(self, s)  # built in configure_optimizers: Lightning may step it
        except Exception as e:
            self._errors.append(e)
        if self._pending is not None:
            self._raise_pending()

    def _on_sched_loaded(self, s: Any, saved: Any = None) -> None:
        """``scheduler.load_state_dict()`` during the audit: a resume. The expectation is re-anchored,
        LR019 is answered for it, and the next update is compared with its ``get_last_lr()`` (LR018)."""
        try:
            s = underlying_scheduler(s)
            if not is_scheduler(s):
                return
            opt = scheduler_optimizer(s)
            tr = self._trackers.get(id(opt)) if opt is not None else None
            if tr is None:
                return
            info = self._info_for(s, tr)
            tr.resume.pop(info.sid, None)
            # LR018 compares the next update with get_last_lr(): only when the load restored it
            # (detectron2's LRMultiplier saves base_lrs and last_epoch only: its get_last_lr() is the
            # fresh construction's until its next step)
            info.loaded = not isinstance(saved, dict) or "_last_lr" in saved
            info.offset = step_offset(s)  # a load moves last_epoch and the step count together
            info.lr017 = None
            built = built_groups(s)
            info.n_groups = built if built is not None else info.n_groups
            tr.loaded = True
            self._snapshot(info, tr)
        except Exception as e:
            self._errors.append(e)


def _write_lost_to_stale_base(s: Any, before: Any, seen: Any, opt: Any) -> Optional[tuple]:
    """``(group, written, stale initial_lr, LR now)`` when the LR of a group was written right before
    ``s`` was built (the audit had seen another value there) and ``s``, taking its base LRs from an
    ``initial_lr`` an earlier scheduler left in the group, replaced it (LambdaLR and
    CosineAnnealingWarmRestarts, whose first LR is the base times a factor): the written LR is lost.
    None otherwise; a scheduler starting from the group's LR (StepLR, LinearLR, CosineAnnealingLR) keeps
    the write, and OneCycleLR and CyclicLR set their own base."""
    base = getattr(s, "base_lrs", None)
    if not before or not seen or not isinstance(base, list):
        return None
    if not isinstance(s, (L.LambdaLR, L.CosineAnnealingWarmRestarts)):  # their first LR is base * f(0)
        return None
    groups = opt.param_groups
    if not (len(before) == len(groups) == len(base) == len(seen)):
        return None
    for j, ((written, stale), g) in enumerate(zip(before, groups)):
        now = g.get("lr")
        if not all(type(v) is float for v in (written, stale, now, base[j], seen[j])):
            continue
        if (not _near(written, stale) and _near(base[j], stale) and not _near(now, written)
                and not _near(seen[j], written)):
            return j, written, stale, now
    return None


def _near(a: float, b: float) -> bool:
    return close(a, b, 1e-9, 0.0)


def _opaque(obj: Any) -> bool:
    """Objects whose attributes discovery does not walk: tensors, modules, optimizers (big, and never
    where a scheduler is kept)."""
    return isinstance(obj, (torch.Tensor, torch.nn.Module, Optimizer))


def _new_phase(previous: Any, tr: Tracker) -> bool:
    """A scheduler of the same kind built after ``previous`` starts a new phase (not LR006) when
    ``previous`` ran its course, the optimizer gained or lost groups since it was built, or the
    optimizer's state was restored since."""
    if reached_end(previous):
        return True
    base = getattr(previous, "base_lrs", None)
    if isinstance(base, list) and len(base) != len(tr.opt.param_groups):
        return True
    return tr.resumed_at is not None


def _agrees(sched: Any, restored: Optional[list]) -> bool:
    """The scheduler already stands where the restored optimizer stands: its ``get_last_lr()`` is the
    restored LR of every group (a roll-back to a state of the same run, not a restart). Unknown (tensor
    LRs, nothing restored): False."""
    if not restored:
        return False
    try:
        reported = sched.get_last_lr()
        if len(reported) != len(restored) or any(isinstance(v, torch.Tensor) for v in reported):
            return False
        return all(close(float(a), float(b), 1e-9, 0.0) for a, b in zip(reported, restored))
    except Exception:
        return False
