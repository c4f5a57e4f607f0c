"""``audit()``: record the LR every param group used at every optimizer step, and check it.

Lifecycle: ``start()`` installs the class wrappers (see :mod:`lraudit.runtime.patches`) and the step
hooks (per optimizer, or the global ones when no optimizer is given); ``stop()`` removes every hook and
wrapper first, whatever happens next, then turns the observations into findings.
"""
from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as L

from lraudit.errors import LRAuditError
from lraudit.runtime import discovery
from lraudit.runtime import expect as expect_mod
from lraudit.runtime import patches
from lraudit.runtime.findings import LRAuditInternalWarning, LRAuditWarning, RuntimeFinding
from lraudit.runtime.checker import fmt
from lraudit.runtime.run import OptimizerSeries, Run
from lraudit.runtime.series import close
from lraudit.runtime.schedulers import (
    _ShadowOptimizer,
    built_groups,
    has_end,
    held,
    hookable,
    is_scheduler,
    mismatched_groups,
    past_end,
    ratio_preserving,
    reached_end,
    scheduler_optimizer,
    shadow_copy,
    underlying_scheduler,
    unwrap_optimizer,
)
from lraudit.runtime.tracker import (
    _SKIP_DIRS, ATTACH, CTOR, LB, LE, NOTE, OPTCTOR, SKIP, START, STOP, Tracker, _location,
)

MAX_ANCHORS = 64  # re-anchored expectations kept per scheduler (a resume each epoch stays well under)


def _graph_break() -> Callable[[], None]:
    try:
        from torch._dynamo import graph_break

        return graph_break
    except Exception:  # pragma: no cover - a torch without dynamo
        return lambda: None


def _compile_safe(fn: Callable) -> Callable:
    """Keep a recorder hook out of torch.compile's graphs (a Python side effect is a recompile guard).

    A forced graph break makes dynamo run the hook eagerly; in eager mode it is a call to an empty
    function. ``torch.compiler.disable`` does the same but costs about 0.35 us per call in eager mode
    (it switches the frame evaluation callback each time): two hooks per step make it felt."""
    try:
        from torch._dynamo import graph_break
    except Exception:  # pragma: no cover - a torch without dynamo
        disable = getattr(getattr(torch, "compiler", None), "disable", None)
        return disable(fn) if disable is not None else fn

    def hook(*args: Any) -> Any:
        graph_break()
        return fn(*args)

    return hook


_LR003 = ("ReduceLROnPlateau.step() was called without the metric it monitors (before optimizer step "
          "{step} of {name}) and raised TypeError: it reduces the LR from that metric. Pass it: "
          "scheduler.step(val_loss).")
_LR009_ONECYCLE = ("OneCycleLR was stepped past its total_steps={total} (before optimizer step {{step}} of "
                   "{{name}}) and raised ValueError: it is stepped more often than it is sized for. Size it "
                   "with total_steps=epochs * len(loader) (or epochs= and steps_per_epoch=) and step it once "
                   "per batch.")


# first item of the token of a wrapper's step (accelerate's AcceleratedScheduler) until its scheduler steps
_DEFERRED = object()


class SchedInfo:
    __slots__ = ("sid", "sched", "tracker", "parent", "stepped", "anchors", "simulable", "may_end", "plateau",
                 "loaded", "after_opt_load", "lr017", "n_groups", "lane_ok")

    def __init__(self, sid: int, sched: Any, tracker: Tracker) -> None:
        self.sid = sid
        self.sched = sched
        self.tracker = tracker
        self.parent: Optional[int] = None
        self.stepped = False
        self.anchors: List[tuple] = []  # (step, scheduler steps before, (shadow sched, shadow opt), lazy)
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


class _Current(threading.local):
    current: Optional[tuple] = None  # the scheduler step running in this thread


class Audit:
    """Context manager (``with audit(opt) as run``) or ``start()``/``stop()`` pair (callbacks)."""

    def __init__(self, optimizers: Any = None, *, strict: Any = False, expect: Any = None,
                 rtol: float = 1e-6, atol: float = 0.0, on_finding: Optional[Callable] = None,
                 schedulers: Any = None) -> None:
        if strict not in (False, True, "immediate", None):
            raise ValueError(f"strict={strict!r}: use False, True or 'immediate'")
        self.strict = bool(strict)
        self.immediate = strict == "immediate"
        self.on_finding = on_finding
        self.expect = expect_mod.validate(expect)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self._targets = self._normalize(optimizers)
        self._given_schedulers = [] if schedulers is None else [
            underlying_scheduler(x) for x in (schedulers if isinstance(schedulers, (list, tuple)) else [schedulers])]
        self.run = Run(self)
        self._state = 0  # 0 new, 1 running, 2 stopped
        self._trackers: Dict[int, Tracker] = {}
        self._order: List[Tracker] = []
        self._sched: Dict[int, SchedInfo] = {}
        self._sched_list: List[SchedInfo] = []
        self._handles: List[Any] = []
        self._class_count: Dict[str, int] = {}
        self._tls = _Current()
        self._errors: List[BaseException] = []
        self._pending: Optional[BaseException] = None  # raised at the next safe point
        self._warned: set = set()
        self._rebuilds: Dict[tuple, int] = {}
        self._record_positions = expect_mod.wants(self.expect, expect_mod.SCHEDULER)
        self._wants_snapshots = expect_mod.wants(self.expect, None)

    @staticmethod
    def _normalize(optimizers: Any) -> Optional[List[Optimizer]]:
        if optimizers is None:
            return None
        if isinstance(optimizers, Iterable) and not isinstance(optimizers, Optimizer):
            items = list(optimizers)
        else:
            items = [optimizers]
        out: List[Optimizer] = []
        for o in items:
            real = unwrap_optimizer(o)
            if not hookable(real):
                # one clear warning; training goes on unaudited for this object
                what = ("a torch optimizer whose Optimizer.__init__ never ran (no step hooks)"
                        if isinstance(real, Optimizer) else "not a torch optimizer, nor a wrapper holding one "
                        "in .optimizer/._optimizer/.base_optimizer")
                warnings.warn(f"lraudit: cannot audit {type(o).__name__}: {what}; its learning rates are not "
                              "recorded (training is not affected). Pass the torch optimizer that really "
                              "updates.", LRAuditWarning, stacklevel=4)
                continue
            if all(real is not x for x in out):
                out.append(real)
        return out

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Run:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop(exc, _stacklevel=4)
        return False

    def start(self) -> Run:
        if self._state != 0:
            raise RuntimeError("an Audit can be started only once; create a new one with audit(...)")
        self._state = 1
        patches.acquire(self)
        try:
            if self._targets is None:
                from torch.optim.optimizer import (
                    register_optimizer_step_post_hook,
                    register_optimizer_step_pre_hook,
                )

                self._handles.append(register_optimizer_step_pre_hook(_compile_safe(self._global_pre)))
                self._handles.append(register_optimizer_step_post_hook(_compile_safe(self._global_post)))
            else:
                for opt in self._targets:
                    self._tracker_for(opt, create=True)
        except Exception as e:  # training goes on, unaudited
            self._teardown()
            self._state = 2
            warnings.warn(f"lraudit: the audit could not start ({e!r}); training goes on unaudited",
                          LRAuditInternalWarning, stacklevel=3)
        return self.run

    def stop(self, exc: Optional[BaseException] = None, *, _stacklevel: int = 3) -> Run:
        """End the audit (idempotent): remove every hook, compute the findings, then warn or raise.

        ``exc``: the exception that ends the audited code, if any; it is never masked.
        """
        if self._state != 1:
            self._state = 2
            return self.run
        self._state = 2
        try:
            for tr in self._order:
                try:
                    tr.observe(STOP)
                except Exception as e:  # pragma: no cover - defensive
                    self._errors.append(e)
        finally:
            self._teardown()
        self._pending = None  # the run is over: whatever comes now is reported, not raised mid-step
        try:
            self._finish()
            if _distributed():
                from lraudit.runtime.distributed import compare_ranks

                for f in compare_ranks(self.run):
                    self.run.add_findings([f])
                    self._announce(f)
        except Exception as e:  # reported as an internal warning, never raised over the user's code
            self._errors.append(e)
        self._conclude(exc, _stacklevel)
        return self.run

    def _teardown(self) -> None:
        for tr in self._order:
            tr.remove_hooks()
        while self._handles:
            h = self._handles.pop()
            try:
                h.remove()
            except Exception:  # pragma: no cover
                pass
        patches.release(self)
        self._tls.current = None

    def _conclude(self, exc: Optional[BaseException], stacklevel: int) -> None:
        for e in self._errors:
            warnings.warn(f"lraudit: internal error while auditing, findings may be incomplete: {e!r}",
                          LRAuditInternalWarning, stacklevel=stacklevel)
        findings = self.run.findings
        if not findings:
            return
        if exc is not None:
            if hasattr(exc, "add_note") and not isinstance(exc, LRAuditError):
                exc.add_note("lraudit found learning-rate problems:\n" + "\n".join(f"  {f}" for f in findings))
            if self.strict:
                return
        if self.strict:
            raise LRAuditError(
                f"lraudit found {len(findings)} learning-rate problem(s):\n"
                + "\n".join(f"  {f}" for f in findings),
                findings,
            )
        seen: Dict[str, int] = {}
        for f in findings:
            seen[f.rule] = seen.get(f.rule, 0) + 1
        for f in findings:
            if f.rule in self._warned:
                continue
            self._warned.add(f.rule)
            more = f" (and {seen[f.rule] - 1} more {f.rule} finding(s))" if seen[f.rule] > 1 else ""
            warnings.warn(f"{f}{more}", LRAuditWarning, stacklevel=stacklevel)

    # -- live findings ---------------------------------------------------------------------------
    def _announce(self, f: RuntimeFinding) -> None:
        """A finding became certain: the callback, a warning now (strict=False), or an error at the
        next point between steps (strict="immediate")."""
        if self.on_finding is not None:
            try:
                self.on_finding(f)
            except BaseException as e:  # the user's callback asked to stop: at a safe point, not mid-step
                if self._pending is None and self._state == 1:
                    self._pending = e
        if self.immediate:
            if self._pending is None and self._state == 1:
                self._pending = LRAuditError(f"lraudit found a learning-rate problem:\n  {f}", [f])
            return
        if not self.strict and f.rule not in self._warned and self._state == 1:
            self._warned.add(f.rule)
            loc = _location()
            filename, lineno = (loc.rsplit(":", 1) if loc else ("lraudit", "0"))
            try:
                warnings.warn_explicit(str(f), LRAuditWarning, filename, int(lineno))
            except Exception:  # an 'error' warnings filter: never raised from inside a hook, but at exit
                self._warned.discard(f.rule)

    def _emit(self, f: RuntimeFinding) -> None:
        self.run._live(f)
        self._announce(f)

    def _raise_pending(self) -> None:
        e = self._pending
        if e is not None:
            self._pending = None
            raise e

    # -- trackers --------------------------------------------------------------------------------
    def _name_for(self, cls: str) -> str:
        n = self._class_count.get(cls, 0)
        self._class_count[cls] = n + 1
        return f"lr-{cls}" if n == 0 else f"lr-{cls}-{n}"

    def _info_dict(self, sid: int) -> dict:
        i = self._sched_list[sid]
        return {
            "name": type(i.sched).__name__,
            "parent": i.parent,
            "stepped": i.stepped,
            "ratio_preserving": ratio_preserving(i.sched),
            "plateau": i.plateau,
        }

    def _tracker_for(self, opt: Any, create: bool) -> Optional[Tracker]:
        tr = self._trackers.get(id(opt))
        if tr is not None:
            return tr
        if not create or self._state != 1 or isinstance(opt, _ShadowOptimizer) or not hookable(opt):
            return None
        prior = bool(getattr(opt, "_opt_called", False)) or bool(getattr(opt, "state", None))
        tr = Tracker(opt, self._name_for(type(opt).__name__), self._info_dict, prior, emit=self._emit,
                     record_positions=self._record_positions, sched_info=self._sched_list.__getitem__)
        self._trackers[id(opt)] = tr
        self._order.append(tr)
        if self._targets is not None:
            tr.handles.append(opt.register_step_pre_hook(self._guarded(tr, tr.on_pre, True)))
            tr.handles.append(opt.register_step_post_hook(self._guarded(tr, tr.on_post, False)))
        if hasattr(opt, "register_load_state_dict_pre_hook"):
            tr.handles.append(opt.register_load_state_dict_pre_hook(
                _compile_safe(lambda o, sd, tr=tr: self._guard(self._opt_load_begin, tr, sd))))
            tr.handles.append(opt.register_load_state_dict_post_hook(
                _compile_safe(lambda o, tr=tr: self._guard(self._opt_load_end, tr))))
        tr.observe(START)
        self._discover(tr)
        return tr

    def _guarded(self, tr: Tracker, hook: Callable, pre: bool) -> Callable:
        """The step hook registered on an audited optimizer: one closure (it runs at every step), kept
        out of torch.compile graphs by a forced graph break (see :func:`_compile_safe`)."""
        errors = self._errors
        audit = self
        gb = _graph_break()

        def guarded(opt: Any, args: Any, kwargs: Any) -> None:
            gb()
            try:
                lane = tr.lane
                # the steady lane first (see lane.py): a plain step costs a few compares
                if lane is None or not (lane.pre(tr, opt) if pre else lane.post(tr, opt, args, kwargs)):
                    if lane is not None:
                        tr.settle()
                    hook(opt, args, kwargs)
                    if pre and tr.loaded:
                        audit._after_load(tr)
            except Exception as e:  # never break training; reported at stop
                errors.append(e)
            if audit._pending is not None:
                audit._raise_pending()

        return guarded

    def _guard(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # never break training; reported at stop
            self._errors.append(e)
        return None

    def _global_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        try:
            tr = self._trackers.get(id(opt)) or self._tracker_for(opt, create=True)
            if tr is not None:
                lane = tr.lane
                if lane is None or not lane.pre(tr, opt):
                    if lane is not None:
                        tr.settle()
                    tr.on_pre(opt, args, kwargs)
                    if tr.loaded:
                        self._after_load(tr)
        except Exception as e:
            self._errors.append(e)
        if self._pending is not None:
            self._raise_pending()

    def _global_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        try:
            tr = self._trackers.get(id(opt))
            if tr is not None:
                lane = tr.lane
                if lane is None or not lane.post(tr, opt, args, kwargs):
                    if lane is not None:
                        tr.settle()
                    tr.on_post(opt, args, kwargs)
        except Exception as e:
            self._errors.append(e)
        if self._pending is not None:
            self._raise_pending()

    def _live_series(self) -> List[OptimizerSeries]:
        return [OptimizerSeries(tr.name, tr.cls, list(tr.group_names), tr.checker.traj, tr.checker.steps,
                                tr.opt, tr.params) for tr in self._order]

    # -- schedulers ------------------------------------------------------------------------------
    def _discover(self, tr: Tracker) -> None:
        """Schedulers that already drive ``tr.opt``: given explicitly, or kept where the training code
        keeps them (see :mod:`lraudit.runtime.discovery`). Never a walk over the whole heap."""
        opt = tr.opt
        for s in self._given_schedulers:
            if scheduler_optimizer(s) is opt:
                self._info_for(s, tr)

        def match(x: Any) -> bool:
            return is_scheduler(x) and scheduler_optimizer(x) is opt

        frames = discovery.user_frames(_SKIP_DIRS, sys._getframe(1))
        try:
            found = discovery.find(discovery.frame_roots(frames), match, _opaque)
        finally:
            del frames
        for s in found:
            self._info_for(s, tr)

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
            info.anchors.append((tr.checker.steps, st.n_top if st is not None else 0, snap, lazy))
        except Exception as e:  # the expectation will say it could not be computed
            info.simulable = False
            self._errors.append(e)

    def _on_sched_begin(self, sched: Any, args: tuple, kwargs: dict) -> Optional[tuple]:
        """A scheduler step begins; returns the token the wrapper hands back to :meth:`_on_sched_end`."""
        token = None
        has_metric = bool(args) or (bool(kwargs) and "metrics" in kwargs)
        info = self._sched.get(id(sched))
        if info is not None and info.sched is sched:  # fast path: a scheduler seen before
            try:
                tr = info.tracker
                lane = tr.lane
                if lane is None or not lane.sched_begin(tr, info, args, kwargs):  # the lane: see lane.py
                    if lane is not None:
                        tr.settle()
                    with_args = bool(args) or (bool(kwargs) and "epoch" in kwargs)
                    if info.parent is None and (tr.resume or len(tr.opt.param_groups) != info.n_groups):
                        self._before_step(info, tr, with_args, args, kwargs)
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
                if lane.sched_begin(tr, info, args, kwargs or {}):
                    return (tr, info, s, has_metric)
                tr.settle()
            with_args = bool(args) or "epoch" in (kwargs or {})
            if info.parent is None:
                self._before_step(info, tr, with_args, args, kwargs or {})
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
               f"this step {outcome}. Build the scheduler again after adding the group (or build it "
               "once every group exists: unfreeze by setting the group's LR, not by adding a group).")
        info.lr017 = msg
        tr.checker.add("LR017", msg, group=new[0] if new else 0)

    def _lr019(self, info: SchedInfo, tr: Tracker, mark: int) -> None:
        name = type(info.sched).__name__
        closed = _closed_form(info.sched)
        effect = ("jumps back to the start of its schedule (it computes the LR from its own count)"
                  if closed else "decays the restored LR on its own restarted count")
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
            tr.sched_end(info.sid, past_end(s) if info.may_end else None)
            if error is not None:
                if isinstance(error, TypeError) and isinstance(s, L.ReduceLROnPlateau) and not has_metric:
                    tr.event(NOTE, "LR003", _LR003)
                elif isinstance(error, ValueError) and isinstance(s, L.OneCycleLR) and "total steps" in str(error):
                    tr.event(NOTE, "LR009", _LR009_ONECYCLE.format(total=s.total_steps))
                if info.lr017 is not None and hasattr(error, "add_note"):
                    error.add_note(f"lraudit LR017 param-groups-after-scheduler: {info.lr017}")
        except Exception as e:
            self._errors.append(e)
        if error is None and self._pending is not None:
            self._raise_pending()

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

    def _on_sched_created(self, s: Any) -> None:
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
            tr.observe(CTOR, info.sid, restart)
            for c in kids:
                self._info_for(c, tr).parent = info.sid
            if tr.resumed_at is not None and tr.resumed_at == tr.checker.steps and not info.plateau:
                info.after_opt_load = True
                if getattr(s, "last_epoch", None) == 0 and not _agrees(s, getattr(tr, "restored_lrs", None)):
                    tr.resume[info.sid] = 0  # built fresh (not with last_epoch=N) after a resume, elsewhere
            self._snapshot(info, tr)
        except Exception as e:
            self._errors.append(e)
        if self._pending is not None:
            self._raise_pending()

    def _on_sched_loaded(self, s: Any) -> None:
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
            info.loaded = True
            info.lr017 = None
            built = built_groups(s)
            info.n_groups = built if built is not None else info.n_groups
            tr.loaded = True
            self._snapshot(info, tr)
        except Exception as e:
            self._errors.append(e)

    def _opt_load_begin(self, tr: Tracker, state_dict: Any) -> None:
        tr.observe(LB)
        try:
            tr.restoring = bool(state_dict.get("state"))
        except Exception:
            tr.restoring = False

    def _opt_load_end(self, tr: Tracker) -> None:
        tr.observe(LE)
        tr.loaded = True
        tr.sample = _first_param_of(tr.opt)
        if getattr(tr, "restoring", False):
            tr.resumed_at = tr.checker.steps
            tr.restored_lrs = list(tr.checker.last) if tr.queue is None and tr.checker.last else None
            for info in self._sched_list:
                if info.tracker is tr and info.parent is None and not info.plateau:
                    last = getattr(info.sched, "last_epoch", None)
                    if isinstance(last, int) and not _agrees(info.sched, tr.restored_lrs):
                        tr.resume[info.sid] = last
        for info in self._sched_list:  # the expectation continues from the restored LRs
            if info.tracker is tr and info.parent is None:
                self._snapshot(info, tr)

    def _after_load(self, tr: Tracker) -> None:
        """The first update after loads: does it use the LR the restored schedulers report? (LR018)"""
        tr.loaded = False
        vals = tr.checker.traj.last_row if tr.queue is None else None
        for info in self._sched_list:
            if info.tracker is not tr or not info.loaded:
                continue
            info.loaded = False
            if vals is None or info.parent is not None:
                continue
            try:
                reported = [float(v) for v in info.sched.get_last_lr()]
            except Exception:
                continue
            if len(reported) != len(vals):
                continue
            bad = [j for j, (a, b) in enumerate(zip(vals, reported)) if not close(a, b, 1e-9, 0.0)]
            if not bad:
                continue
            j = bad[0]
            name = type(info.sched).__name__
            why = (f"{name} was built after optimizer.load_state_dict() and its construction rewrote the "
                   "restored LR; loading its own state does not write the LR back"
                   if info.after_opt_load else
                   "the LR in the optimizer is not the one the restored scheduler is at (built after the "
                   "optimizer's load, or written after the loads)")
            tr.checker.add("LR018", (
                f"after resuming, optimizer step {tr.checker.steps} of {tr.name} uses lr {fmt(vals[j])} in "
                f"group {j} while the restored {name}.get_last_lr() says {fmt(reported[j])}: {why}. The run "
                f"continues from a different LR than the one it stopped at until {name} next writes it. "
                "Build the scheduler before loading, then load the optimizer and the scheduler (torch's "
                "documented order)."), step=tr.checker.steps, group=j)
            break

    def _on_optimizer_created(self, opt: Any) -> None:
        """A new optimizer over parameters an audited one updated: LR006 when it rebuilds it inside the
        loop (same class, same parameters, the weights carried on), a new phase otherwise (a fold after
        a reset or a reload, a stage with other groups or settings)."""
        try:
            if isinstance(opt, _ShadowOptimizer):
                return
            ids = None
            for tr in self._order:
                if tr.opt is opt or tr.pre_count == 0 or type(tr.opt) is not type(opt):
                    continue
                if ids is None:
                    ids = frozenset(id(p) for g in opt.param_groups for p in g["params"])
                if ids != tr.param_ids() or tr.weights_rewritten():
                    continue
                key = (type(opt), ids)
                n = self._rebuilds[key] = self._rebuilds.get(key, 0) + 1
                if n >= 2 or _same_settings(opt, tr.opt):
                    tr.event(OPTCTOR, type(opt).__name__)
        except Exception as e:
            self._errors.append(e)

    def _scaler_mark(self, optimizer: Any) -> Optional[tuple]:
        try:
            tr = self._tracker_for(unwrap_optimizer(optimizer), create=self._targets is None)
            return (tr, tr.pre_count) if tr is not None else None
        except Exception as e:
            self._errors.append(e)
            return None

    def _scaler_done(self, optimizer: Any, mark: Optional[tuple]) -> None:
        if mark is None:
            return
        tr, count = mark
        if tr.pre_count == count:  # GradScaler skipped optimizer.step() (inf/NaN gradients)
            self._guard(tr.event, SKIP)

    # -- conclusions -----------------------------------------------------------------------------
    def _finish(self) -> None:
        for tr in self._order:
            tr.flush(wait=True)
        findings: List[RuntimeFinding] = []
        for tr in self._order:
            findings.extend(tr.checker.finish())
        if self.expect is not None:
            for f in self._expectations():
                findings.append(f)
                self._announce(f)
        order = {tr.name: k for k, tr in enumerate(self._order)}
        findings.sort(key=lambda f: (order.get(f.optimizer, len(order)), f.step if f.step is not None else -1,
                                     f.rule))
        series = [OptimizerSeries(tr.name, tr.cls, list(tr.group_names), tr.checker.traj, tr.checker.steps,
                                  tr.opt, tr.params) for tr in self._order]
        self.run._freeze(series, findings)
        # drop strong references to the user's objects
        self._sched.clear()
        self._sched_list = []
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


def _opaque(obj: Any) -> bool:
    """Objects whose attributes discovery does not walk: tensors, modules, optimizers (big, and never
    where a scheduler is kept)."""
    return isinstance(obj, (torch.Tensor, torch.nn.Module, Optimizer))


def _first_param_of(opt: Any) -> Any:
    from lraudit.runtime.tracker import _first_param

    return _first_param(opt)


def _same_settings(a: Any, b: Any) -> bool:
    try:
        return bool(a.defaults == b.defaults)
    except Exception:  # tensor-valued settings: cannot tell, so not the same
        return False


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


def _closed_form(sched: Any) -> bool:
    """Schedulers whose LR is a function of their step count (they jump back when it restarts)."""
    return isinstance(sched, (L.LambdaLR, L.OneCycleLR, L.CyclicLR, L.CosineAnnealingWarmRestarts,
                              L.LinearLR, L.ConstantLR)) or bool(getattr(sched, "_schedulers", None))


def _what_torch_does(sched: Any, opt: Any, built: int, args: tuple, kwargs: dict) -> str:
    """Run the step on a shadow copy to say what the real one will do."""
    try:
        with patches.suppressed(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shadow, sopt = shadow_copy(sched, opt)
            before = [float(g["lr"]) for g in sopt.param_groups]
            try:
                shadow.step(*args, **kwargs)
            except Exception as e:
                return f"raises {type(e).__name__}: {e}"
            after = [float(g["lr"]) for g in sopt.param_groups]
    except Exception:
        return "cannot be predicted"
    new = list(range(built, len(after)))
    if not new:
        return "runs, but the scheduler's per-group state no longer lines up with the groups"
    moved = [j for j in new if before[j] != after[j]]
    if not moved:
        return f"leaves group(s) {', '.join(map(str, new))} unscheduled (their LR stays as it is)"
    j = moved[0]
    return (f"schedules group(s) {', '.join(map(str, moved))} from their own current LR with factors meant "
            f"for other groups (group {j}: {fmt(before[j])} -> {fmt(after[j])} at this step); the "
            "scheduler has no base LR for them")


def _distributed() -> bool:
    dist = getattr(torch, "distributed", None)
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def audit(optimizer_or_list_or_None: Any = None, *, strict: Any = False, expect: Any = None,
          rtol: float = 1e-6, atol: float = 0.0, on_finding: Optional[Callable] = None,
          schedulers: Any = None) -> Audit:
    """Audit the learning rates of one optimizer, a list of them, or (None) every optimizer stepped.

    ``with audit(opt) as run: train()`` records, for every param group, the LR each optimizer step used,
    observes the schedulers that drive the audited optimizers, and reports learning-rate problems as
    findings (``run.findings``, which grows during the run as findings become certain).

    - ``strict=False`` (default): each rule found is warned once (:class:`LRAuditWarning`), when found;
      ``strict=True`` raises :class:`~lraudit.errors.LRAuditError` at exit when there are findings (never
      masking an exception of the block); ``strict="immediate"`` raises it at the first finding, at the
      next point between two steps (before an optimizer step's update or a scheduler step, never inside
      one).
    - ``on_finding``: called with each :class:`RuntimeFinding` when it is found.
    - ``schedulers``: schedulers to attach from the start (frameworks that know them); others are found
      where the training code keeps them, or at their first step.
    - ``expect``: see :mod:`lraudit.runtime.expect`; ``rtol``/``atol``: its tolerance.
    """
    return Audit(optimizer_or_list_or_None, strict=strict, expect=expect, rtol=rtol, atol=atol,
                 on_finding=on_finding, schedulers=schedulers)
