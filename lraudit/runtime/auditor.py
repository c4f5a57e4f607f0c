"""``audit()``: record the LR every param group used at every optimizer step, and check it.

Lifecycle: ``start()`` installs the class wrappers (see :mod:`lraudit.runtime.patches`) and the step
hooks (per optimizer, or the global ones when no optimizer is given); ``stop()`` removes every hook and
wrapper first, whatever happens next, then turns the observations into findings.

This module holds :class:`Audit`'s lifecycle and wiring (its state, start, stop, how a finding is
announced) and the ``audit()`` factory. What the hooks and the class wrappers call is mixed into
``Audit``, one job a module: step_hooks.py (trackers, the optimizer step hooks, the steady lane's entry
points), scheduler_tracking.py (which schedulers drive an audited optimizer: found, built, loaded; the
anchors of ``expect='scheduler'``), scheduler_steps.py (a scheduler step begins and ends; LR017 and
LR019 just before it), optimizer_events.py (optimizer loads and LR018, optimizers rebuilt in the loop,
GradScaler's skipped steps), conclusions.py (the series and findings at the end, ``expect=``).
"""
from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.optim import Optimizer

from lraudit.errors import LRAuditError
from lraudit.runtime import expect as expect_mod
from lraudit.runtime import patches
from lraudit.runtime.conclusions import ConclusionsMixin
from lraudit.runtime.findings import LRAuditInternalWarning, LRAuditWarning, RuntimeFinding
from lraudit.runtime.optimizer_events import OptimizerEventsMixin
from lraudit.runtime.run import Run
from lraudit.runtime.scheduler_steps import SchedulerStepsMixin
from lraudit.runtime.scheduler_tracking import SchedInfo, SchedulerTrackingMixin
from lraudit.runtime.schedulers import hookable, underlying_scheduler, unwrap_optimizer
from lraudit.runtime.step_hooks import StepHooksMixin, _compile_safe
from lraudit.runtime.tracker import STOP, Tracker, _location


class _Current(threading.local):
    current: Optional[tuple] = None  # the scheduler step running in this thread


class Audit(StepHooksMixin, SchedulerTrackingMixin, SchedulerStepsMixin, OptimizerEventsMixin, ConclusionsMixin):
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
        self._loop_driven: Dict[int, Callable[[], bool]] = {}  # see ConclusionsMixin.driven_by_loop
        self._handles: List[Any] = []
        self._class_count: Dict[str, int] = {}
        self._tls = _Current()
        self._errors: List[BaseException] = []
        self._pending: Optional[BaseException] = None  # raised at the next safe point
        self._warned: set = set()
        self._rebuilds: Dict[tuple, int] = {}
        self._loaded_states: set = set()  # optimizer states loaded: a rebuild loading one again restarts
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
            try:
                warnings.warn(f"lraudit: internal error while auditing, findings may be incomplete: {e!r}",
                              LRAuditInternalWarning, stacklevel=stacklevel)
            except Exception:
                if exc is None:
                    raise  # warnings turned into errors; with the block's exception, that one goes on
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
            try:
                warnings.warn(f"{f}{more}", LRAuditWarning, stacklevel=stacklevel)
            except Exception:
                if exc is None:
                    raise
                # warnings turned into errors: the block's own exception goes on, with the note above

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
