"""Trackers and the optimizer step hooks, a part of :class:`~lraudit.runtime.auditor.Audit` (mixed into it
in auditor.py).

Each audited optimizer gets a :class:`~lraudit.runtime.tracker.Tracker` (series named ``lr-<Class>``,
``-1``, ``-2`` for repeats), when the audit starts or, with no optimizer given, at its first step
(``_global_pre``); creating one registers its hooks and looks for the schedulers that already drive it
(scheduler_tracking.py). The step hooks run at every optimizer step: the tracker's steady lane takes the
step first (see lane.py), its general path when the lane declines; the first update after a load is
compared with the restored schedulers (``_after_load``, optimizer_events.py); a finding that
``strict="immediate"`` raises is raised here, between steps. An exception of lraudit's never reaches the
training loop: it is kept and reported at ``stop()``. Every hook stays out of torch.compile's graphs
(``_compile_safe``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from lraudit.runtime.schedulers import (
    _ShadowOptimizer,
    hookable,
    ratio_preserving,
    reached_end,
    recomputes_each_step,
)
from lraudit.runtime.tracker import ABORT, START, Tracker


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


class StepHooksMixin:
    """Audit's trackers and step hooks; see the module docstring."""

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
            "recomputes": recomputes_each_step(i.sched),
            "plateau": i.plateau,
            "predates": i.predates,
            "outside": i.outside,
            "ended": reached_end(i.sched),
            "repositioned": i.repositioned,
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

        if pre:
            def guarded_pre(opt: Any, args: Any, kwargs: Any) -> None:
                gb()
                try:
                    lane = tr.lane
                    # the steady lane first (see lane.py): a plain step costs a few compares
                    if lane is None or not lane.pre(tr, opt):
                        if lane is not None:
                            tr.settle()
                        hook(opt, args, kwargs)
                        if tr.loaded:
                            audit._after_load(tr)
                except Exception as e:  # never break training; reported at stop
                    errors.append(e)
                if audit._pending is not None:
                    audit._raise_before_update(tr)

            return guarded_pre

        def guarded_post(opt: Any, args: Any, kwargs: Any) -> None:
            gb()
            try:
                lane = tr.lane
                if lane is None or not lane.post(tr, opt, args, kwargs):
                    if lane is not None:
                        tr.settle()
                    hook(opt, args, kwargs)
            except Exception as e:  # never break training; reported at stop
                errors.append(e)
            if audit._pending is not None:
                audit._raise_pending()

        return guarded_post

    def _guard(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # never break training; reported at stop
            self._errors.append(e)
        return None

    def _raise_before_update(self, tr: Optional[Tracker]) -> None:
        """strict="immediate" raises in an optimizer's pre-hook: that update will not run, so its start
        is forgotten (step k is the k-th update applied)."""
        if tr is not None:
            self._guard(tr.event, ABORT)
        self._raise_pending()

    def _global_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        tr = None
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
            self._raise_before_update(tr)

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
