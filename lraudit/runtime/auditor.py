"""``audit()``: record the LR every param group used at every optimizer step, and check it.

Lifecycle: ``start()`` installs the class wrappers (see :mod:`lraudit.runtime.patches`) and the step
hooks (per optimizer, or the global ones when no optimizer is given); ``stop()`` removes every hook and
wrapper first, whatever happens next, then turns the observations into findings.
"""
from __future__ import annotations

import gc
import warnings
from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as L

from lraudit.errors import LRAuditError
from lraudit.runtime import expect as expect_mod
from lraudit.runtime import patches
from lraudit.runtime.findings import LRAuditInternalWarning, LRAuditWarning, RuntimeFinding
from lraudit.runtime.run import OptimizerSeries, Run
from lraudit.runtime.schedulers import (
    _ShadowOptimizer,
    children,
    has_end,
    is_scheduler,
    past_end,
    ratio_preserving,
    scheduler_optimizer,
    shadow_copy,
    unwrap_optimizer,
)
from lraudit.runtime.tracker import (
    ATTACH, CTOR, LB, LE, NOTE, OPTCTOR, SB, SKIP, START, STOP, Tracker,
)


def _compile_safe(fn: Callable) -> Callable:
    """Keep a recorder hook out of torch.compile's graphs (a Python side effect is a recompile guard)."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return disable(fn) if disable is not None else fn


_LR003 = ("ReduceLROnPlateau.step() was called without the metric it monitors (before optimizer step "
          "{step} of {name}) and raised TypeError: it reduces the LR from that metric. Pass it: "
          "scheduler.step(val_loss).")
_LR009_ONECYCLE = ("OneCycleLR was stepped past its total_steps={total} (before optimizer step {{step}} of "
                   "{{name}}) and raised ValueError: it is stepped more often than it is sized for. Size it "
                   "with total_steps=epochs * len(loader) (or epochs= and steps_per_epoch=) and step it once "
                   "per batch.")


class SchedInfo:
    __slots__ = ("sid", "sched", "tracker", "parent", "stepped", "snapshot", "simulable", "may_end")

    def __init__(self, sid: int, sched: Any, tracker: Tracker) -> None:
        self.sid = sid
        self.sched = sched
        self.tracker = tracker
        self.parent: Optional[int] = None
        self.stepped = False
        self.snapshot = None
        self.simulable = not isinstance(sched, L.ReduceLROnPlateau)
        self.may_end = has_end(sched)  # LR009 needs a look at its state after each step


class Audit:
    """Context manager (``with audit(opt) as run``) or ``start()``/``stop()`` pair (callbacks)."""

    def __init__(self, optimizers: Any = None, *, strict: bool = False, expect: Any = None,
                 rtol: float = 1e-6, atol: float = 0.0) -> None:
        self.strict = bool(strict)
        self.expect = expect_mod.validate(expect)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self._targets = self._normalize(optimizers)
        self.run = Run(self)
        self._state = 0  # 0 new, 1 running, 2 stopped
        self._trackers: Dict[int, Tracker] = {}
        self._order: List[Tracker] = []
        self._sched: Dict[int, SchedInfo] = {}
        self._sched_list: List[SchedInfo] = []
        self._handles: List[Any] = []
        self._class_count: Dict[str, int] = {}
        self._current: Optional[tuple] = None
        self._errors: List[BaseException] = []

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
            if not isinstance(real, Optimizer):
                raise TypeError(f"audit() takes torch optimizers (or wrappers of one); got {type(o).__name__}")
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
        except BaseException:
            self._teardown()
            self._state = 2
            raise
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
        try:
            self._finish()
            if _distributed():
                from lraudit.runtime.distributed import compare_ranks

                self.run.add_findings(compare_ranks(self.run))
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
        self._current = None

    def _conclude(self, exc: Optional[BaseException], stacklevel: int) -> None:
        for e in self._errors:
            warnings.warn(f"lraudit: internal error while auditing, findings may be incomplete: {e!r}",
                          LRAuditInternalWarning, stacklevel=stacklevel)
        findings = self.run.findings
        if not findings:
            return
        if exc is not None:
            if hasattr(exc, "add_note"):
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
        done = set()
        for f in findings:
            if f.rule in done:
                continue
            done.add(f.rule)
            more = f" (and {seen[f.rule] - 1} more {f.rule} finding(s))" if seen[f.rule] > 1 else ""
            warnings.warn(f"{f}{more}", LRAuditWarning, stacklevel=stacklevel)

    # -- trackers --------------------------------------------------------------------------------
    def _name_for(self, cls: str) -> str:
        n = self._class_count.get(cls, 0)
        self._class_count[cls] = n + 1
        return f"lr-{cls}" if n == 0 else f"lr-{cls}-{n}"

    def _sched_name(self, sid: int) -> str:
        return type(self._sched_list[sid].sched).__name__

    def _tracker_for(self, opt: Any, create: bool) -> Optional[Tracker]:
        tr = self._trackers.get(id(opt))
        if tr is not None:
            return tr
        if not create or self._state != 1 or isinstance(opt, _ShadowOptimizer):
            return None
        prior = bool(getattr(opt, "_opt_called", False)) or bool(getattr(opt, "state", None))
        tr = Tracker(opt, self._name_for(type(opt).__name__), self._sched_name, prior)
        self._trackers[id(opt)] = tr
        self._order.append(tr)
        if self._targets is not None:
            tr.handles.append(opt.register_step_pre_hook(_compile_safe(self._guarded(tr.on_pre))))
            tr.handles.append(opt.register_step_post_hook(_compile_safe(self._guarded(tr.on_post))))
        if hasattr(opt, "register_load_state_dict_pre_hook"):
            tr.handles.append(opt.register_load_state_dict_pre_hook(
                _compile_safe(lambda o, sd, tr=tr: self._guard(tr.observe, LB))))
            tr.handles.append(opt.register_load_state_dict_post_hook(
                _compile_safe(lambda o, tr=tr: self._guard(tr.observe, LE))))
        tr.observe(START)
        self._discover(tr)
        return tr

    def _guarded(self, hook: Callable) -> Callable:
        errors = self._errors

        def guarded(opt: Any, args: Any, kwargs: Any) -> None:
            try:
                hook(opt, args, kwargs)
            except Exception as e:  # never break training; reported at stop
                errors.append(e)

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
                tr.on_pre(opt, args, kwargs)
        except Exception as e:
            self._errors.append(e)

    def _global_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        try:
            tr = self._trackers.get(id(opt))
            if tr is not None:
                tr.on_post(opt, args, kwargs)
        except Exception as e:
            self._errors.append(e)

    def _live_series(self) -> List[OptimizerSeries]:
        return [OptimizerSeries(tr.name, tr.cls, list(tr.group_names), tr.checker.traj, tr.checker.steps,
                                tr.opt, tr.params) for tr in self._order]

    # -- schedulers ------------------------------------------------------------------------------
    def _discover(self, tr: Tracker) -> None:
        """Schedulers that already drive ``tr.opt`` (built before the audit, or before its first step)."""
        opt = tr.opt
        found: List[Any] = []
        holders: List[Any] = [opt]
        for r in gc.get_referrers(opt):
            if r is opt:
                continue
            if is_scheduler(r):
                if scheduler_optimizer(r) is opt:
                    found.append(r)
            elif isinstance(r, Optimizer) and unwrap_optimizer(r) is opt:
                holders.append(r)
        for w in holders[1:]:
            for r in gc.get_referrers(w):
                if is_scheduler(r) and scheduler_optimizer(r) is opt and all(r is not f for f in found):
                    found.append(r)
        for s in found:
            self._info_for(s, tr)

    def _info_for(self, s: Any, tr: Tracker, attach: bool = True) -> SchedInfo:
        info = self._sched.get(id(s))
        if info is not None:
            return info
        info = SchedInfo(len(self._sched_list), s, tr)
        self._sched[id(s)] = info
        self._sched_list.append(info)
        if attach:
            tr.event(ATTACH, info.sid)
        for c in children(s):
            self._info_for(c, tr).parent = info.sid
        self._snapshot(info, tr)
        return info

    def _snapshot(self, info: SchedInfo, tr: Tracker) -> None:
        if not _wants_scheduler(self.expect) or not info.simulable or info.parent is not None:
            return
        try:
            with patches.suppressed():
                info.snapshot = shadow_copy(info.sched, tr.opt)
        except Exception as e:  # the expectation will say it could not be computed
            info.simulable = False
            self._errors.append(e)

    def _on_sched_begin(self, sched: Any, args: tuple, kwargs: dict) -> None:
        self._current = None
        has_metric = bool(args) or "metrics" in kwargs
        info = self._sched.get(id(sched))
        if info is not None and info.sched is sched:  # fast path: a scheduler seen before
            try:
                info.tracker.sched_begin(info.sid)
                self._current = (info.tracker, info, sched, has_metric)
            except Exception as e:
                self._errors.append(e)
            return
        if not is_scheduler(sched):
            # a wrapper (accelerate's AcceleratedScheduler): it counts as one scheduler step only if it
            # steps its scheduler (it does not on accumulation micro-batches nor after a skipped update)
            self._current = ("deferred", has_metric)
            return
        self._begin(sched, has_metric)

    def _begin(self, s: Any, has_metric: bool) -> None:
        try:
            opt = scheduler_optimizer(s)
            if opt is None:
                return
            tr = self._tracker_for(opt, create=self._targets is None)
            if tr is None:
                return
            info = self._info_for(s, tr)
            tr.observe(SB, info.sid)
            self._current = (tr, info, s, has_metric)
        except Exception as e:
            self._errors.append(e)

    def _on_sched_end(self, sched: Any, error: Optional[BaseException]) -> None:
        cur, self._current = self._current, None
        if cur is None or cur[0] == "deferred":
            return
        try:
            tr, info, s, has_metric = cur
            info.stepped = True
            tr.sched_end(info.sid, past_end(s) if info.may_end else None)
            if error is None:
                return
            if isinstance(error, TypeError) and isinstance(s, L.ReduceLROnPlateau) and not has_metric:
                tr.event(NOTE, "LR003", _LR003)
            elif isinstance(error, ValueError) and isinstance(s, L.OneCycleLR) and "total steps" in str(error):
                tr.event(NOTE, "LR009", _LR009_ONECYCLE.format(total=s.total_steps))
        except Exception as e:
            self._errors.append(e)

    def _on_sched_nested(self, sched: Any) -> None:
        cur = self._current
        if cur is not None and cur[0] == "deferred":  # the wrapper steps its scheduler: one step
            self._begin(sched, cur[1])
            if self._current is cur:
                self._current = None
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
            kids = {id(c) for c in children(s)}
            restart = None
            for other in self._sched_list:
                if (other.tracker is tr and other is not info and other.stepped
                        and type(other.sched) is type(s) and id(other.sched) not in kids):
                    restart = other.sid
                    break
            tr.observe(CTOR, info.sid, restart)
            for c in children(s):
                self._info_for(c, tr).parent = info.sid
            self._snapshot(info, tr)
        except Exception as e:
            self._errors.append(e)

    def _on_optimizer_created(self, opt: Any) -> None:
        try:
            if isinstance(opt, _ShadowOptimizer):
                return
            ids = None
            for tr in self._order:
                if tr.opt is opt or tr.pre_count == 0:
                    continue
                if ids is None:
                    ids = {id(p) for g in opt.param_groups for p in g["params"]}
                if ids & tr.param_ids():
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
        infos = self._sched_list

        def info(sid: int) -> dict:
            i = infos[sid]
            return {
                "name": type(i.sched).__name__,
                "parent": i.parent,
                "stepped": i.stepped,
                "ratio_preserving": ratio_preserving(i.sched),
            }

        findings: List[RuntimeFinding] = []
        for tr in self._order:
            findings.extend(tr.checker.finish(info))
        if self.expect is not None:
            findings.extend(self._expectations())
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
            if isinstance(spec, str):  # "scheduler"
                wanted_scheduler = True
                info = self._attached(tr)
                if info is None:
                    continue
                if info.snapshot is None:
                    why = ("it needs the metric, which only the training loop has"
                           if isinstance(info.sched, L.ReduceLROnPlateau) else "it could not be copied")
                    expect_mod.warn(f"lraudit: expect='scheduler' cannot simulate {type(info.sched).__name__} "
                                    f"of {tr.name} ({why}); no LR015 check for it")
                    used_scheduler = True
                    continue
                used_scheduler = True
                first = c.stats[info.sid].attach_step if info.sid in c.stats else 0
                rows, stopped = expect_mod.simulate(info.snapshot, max(steps - first, 0))
                f = expect_mod.compare(
                    tr.name, c.traj, steps, rows, self.rtol, self.atol, first=first,
                    origin=f"what {type(info.sched).__name__} alone gives with one step per optimizer step",
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


def _wants_scheduler(expect: Any) -> bool:
    if isinstance(expect, str):
        return True
    if isinstance(expect, dict):
        return any(isinstance(v, str) for v in expect.values())
    return False


def _distributed() -> bool:
    dist = getattr(torch, "distributed", None)
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def audit(optimizer_or_list_or_None: Any = None, *, strict: bool = False, expect: Any = None,
          rtol: float = 1e-6, atol: float = 0.0) -> Audit:
    """Audit the learning rates of one optimizer, a list of them, or (None) every optimizer stepped.

    ``with audit(opt) as run: train()`` records, for every param group, the LR each optimizer step used,
    observes the schedulers that drive the audited optimizers, and reports learning-rate problems as
    findings (``run.findings``). ``strict=True`` raises :class:`~lraudit.errors.LRAuditError` at exit when
    there are findings (never masking an exception of the block); otherwise each rule found is warned once
    (:class:`LRAuditWarning`). ``expect``: see :mod:`lraudit.runtime.expect`; ``rtol``/``atol``: its
    tolerance.
    """
    return Audit(optimizer_or_list_or_None, strict=strict, expect=expect, rtol=rtol, atol=atol)
