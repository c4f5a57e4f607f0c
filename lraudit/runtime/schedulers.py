"""What the audit knows about optimizers and torch schedulers: unwrapping, composition, schedule ends.

Everything here reads Python state only (no tensor is read, no device is synchronised).
"""
from __future__ import annotations

import copy
import types
from bisect import bisect_right
from typing import Any, List, Optional

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as L

from lraudit.runtime.transformers_schedules import schedule_end

_MAX_UNWRAP = 8


_INNER_ATTRS = ("_optimizer", "optimizer", "_base_optimizer", "base_optimizer", "inner_optimizer", "opt")


def hookable(opt: Any) -> bool:
    """A torch optimizer whose ``step`` runs the step hooks (``Optimizer.__init__`` ran on it)."""
    return isinstance(opt, Optimizer) and isinstance(getattr(opt, "_optimizer_step_pre_hooks", None), dict)


def unwrap_optimizer(obj: Any) -> Any:
    """The torch optimizer that really updates, under optimizer-like wrappers.

    accelerate's ``AcceleratedOptimizer`` keeps it in ``.optimizer``, Lightning's ``LightningOptimizer`` in
    ``._optimizer``, timm's ``Lookahead`` in ``._base_optimizer``, DeepSpeed-style engines in
    ``.optimizer`` (possibly through a ZeRO wrapper that is no torch optimizer itself). Several of these
    pass ``isinstance(x, Optimizer)`` without ever running the step hooks. A hookable optimizer is kept
    as it is unless it only shares its param groups with the one inside (a subclass holding the real one).
    """
    for _ in range(_MAX_UNWRAP):
        if isinstance(obj, type):
            return obj
        inner = None
        for attr in _INNER_ATTRS:
            try:
                cand = getattr(obj, attr, None)
            except Exception:  # a property that raises
                cand = None
            if cand is None or cand is obj or isinstance(cand, type):
                continue
            if isinstance(cand, Optimizer) or any(
                    isinstance(getattr(cand, a, None), Optimizer) for a in _INNER_ATTRS):
                inner = cand
                break
        if inner is None:
            return obj
        if hookable(obj) and isinstance(inner, Optimizer):
            # a real optimizer holding another one: only a wrapper when the updates are the inner one's
            try:
                shared = obj.param_groups is inner.param_groups or (
                    obj.param_groups and obj.param_groups[0] is inner.param_groups[0])
            except Exception:
                shared = False
            if not shared:
                return obj
        obj = inner
    return obj


def underlying_scheduler(obj: Any) -> Any:
    """The torch scheduler under accelerate's ``AcceleratedScheduler`` (``.scheduler``)."""
    for _ in range(_MAX_UNWRAP):
        if is_scheduler(obj):
            return obj
        inner = getattr(obj, "scheduler", None)
        if inner is None or inner is obj:
            return obj
        obj = inner
    return obj


def is_scheduler(obj: Any) -> bool:
    return isinstance(obj, (L.LRScheduler, L.ReduceLROnPlateau))


def scheduler_optimizer(sched: Any) -> Optional[Optimizer]:
    opt = getattr(sched, "optimizer", None)
    if opt is None:
        return None
    opt = unwrap_optimizer(opt)
    return opt if isinstance(opt, Optimizer) else None


def children(sched: Any) -> List[Any]:
    """The schedulers a SequentialLR / ChainedScheduler (or a look-alike) composes."""
    kids = getattr(sched, "_schedulers", None)
    if isinstance(kids, (list, tuple)):
        return [k for k in kids if is_scheduler(k)]
    return []


def held(sched: Any) -> List[Any]:
    """Schedulers this one holds and may step itself (a warm-up wrapper's ``after_scheduler``), besides
    the ones it composes: they count as stepped when it is."""
    out = list(children(sched))
    for k, v in vars(sched).items():
        if k in ("optimizer", "_schedulers"):
            continue
        items = v if isinstance(v, (list, tuple)) else [v]
        for x in items[:16]:
            if x is not sched and is_scheduler(x) and all(x is not o for o in out):
                out.append(x)
    return out


def built_groups(sched: Any) -> Optional[int]:
    """How many param groups the scheduler (or the first of its children that knows) was built for;
    None when it keeps no per-group state (ReduceLROnPlateau extends its own)."""
    kids = children(sched)
    for s in (kids or [sched]):
        base = getattr(s, "base_lrs", None)
        if isinstance(s, L.ReduceLROnPlateau) or not isinstance(base, list):
            continue
        return len(base)
    return None


def mismatched_groups(sched: Any, n_groups: int) -> Optional[int]:
    """The group count one of the schedulers (``sched`` or a child) was built for, when it is not
    ``n_groups``."""
    for s in (children(sched) or [sched]):
        base = getattr(s, "base_lrs", None)
        if isinstance(s, L.ReduceLROnPlateau) or not isinstance(base, list):
            continue
        if len(base) != n_groups:
            return len(base)
    return None


def active_children(sched: Any) -> List[Any]:
    """The schedulers whose state decides the LR right now."""
    kids = children(sched)
    if not kids:
        return [sched]
    if isinstance(sched, L.SequentialLR):
        idx = bisect_right(sched._milestones, sched.last_epoch)
        idx = min(idx, len(kids) - 1)
        return active_children(kids[idx])
    out: List[Any] = []
    for k in kids:
        out.extend(active_children(k))
    return out


def step_offset(sched: Any) -> Optional[int]:
    """``last_epoch - _step_count``: constant while the scheduler steps, loads or is built with
    ``last_epoch=k``; it moves only when ``last_epoch`` is set by hand. None for a scheduler without them."""
    last, count = getattr(sched, "last_epoch", None), getattr(sched, "_step_count", None)
    return last - count if type(last) is int and type(count) is int else None


def has_end(sched: Any) -> bool:
    """Whether ``past_end`` can ever say something about this scheduler (or one it composes)."""
    kids = children(sched)
    if kids:
        return any(has_end(k) for k in kids)
    if isinstance(sched, L.LambdaLR):
        return schedule_end(sched) is not None
    return isinstance(sched, (L.OneCycleLR, L.CosineAnnealingLR))


def past_end(sched: Any) -> Optional[str]:
    """Why the LR this scheduler last computed lies past its schedule's end, or None.

    OneCycleLR: ``last_epoch >= total_steps`` (its last step is ``total_steps - 1``); CosineAnnealingLR:
    ``last_epoch > T_max`` (from there the cosine climbs again); transformers' schedules: past the step
    their ``num_training_steps`` ends them (see transformers_schedules.py).
    """
    # the usual case, a plain OneCycleLR, CosineAnnealingLR or transformers schedule within its
    # schedule, without building lists (this runs after every step of such a scheduler)
    cls = type(sched)
    if cls is L.OneCycleLR:
        if sched.last_epoch < sched.total_steps:
            return None
    elif cls is L.CosineAnnealingLR:
        if sched.last_epoch <= sched.T_max:
            return None
    elif cls is L.LambdaLR:  # no transformers schedule ends before num_training_steps - 1
        kw = getattr(sched.lr_lambdas[0], "keywords", None)
        if kw is not None and sched.last_epoch < kw.get("num_training_steps", 0):
            return None
    for s in active_children(sched):
        if isinstance(s, L.OneCycleLR):
            if s.last_epoch >= s.total_steps:
                return (
                    f"OneCycleLR is at step {s.last_epoch} of a schedule of total_steps={s.total_steps} "
                    f"(its last step is {s.total_steps - 1})"
                )
        elif isinstance(s, L.CosineAnnealingLR):
            if s.last_epoch > s.T_max:
                return (
                    f"CosineAnnealingLR is at epoch {s.last_epoch} of T_max={s.T_max}: past T_max the "
                    "cosine climbs back towards the initial LR"
                )
        elif isinstance(s, L.LambdaLR):
            end = schedule_end(s)
            if end is not None and s.last_epoch > end[0]:
                return f"the LambdaLR of {end[1]} is at step {s.last_epoch} and its last step is {end[0]}; {end[2]}"
    return None


def reached_end(sched: Any) -> bool:
    """Whether the schedule has run its course (a new scheduler after it starts a new phase)."""
    s = sched
    kids = children(s)
    if kids:
        return all(reached_end(k) for k in kids) if not isinstance(s, L.SequentialLR) else reached_end(kids[-1])
    last = getattr(s, "last_epoch", None)
    if not isinstance(last, int):
        return False
    if isinstance(s, L.OneCycleLR):
        return last >= s.total_steps - 1
    if isinstance(s, L.CosineAnnealingLR):
        return last >= s.T_max
    if isinstance(s, (L.LinearLR, L.ConstantLR, L.PolynomialLR)):
        return last >= s.total_iters
    end = schedule_end(s) if isinstance(s, L.LambdaLR) else None
    if end is not None:
        return last >= end[0]
    # any other that stepped and left every group at exactly 0 decayed to its end (transformers' linear
    # and cosine schedules, a LambdaLR sized to the run): nothing of it is left to restart
    last_lr = getattr(s, "_last_lr", None)
    return (last > 0 and isinstance(last_lr, list) and bool(last_lr)
            and all(type(v) is float and v == 0.0 for v in last_lr))


def _same_callable(fns: Any) -> bool:
    fns = list(fns or ())
    return all(f is fns[0] for f in fns)


def ratio_preserving(sched: Any) -> bool:
    """True when the scheduler keeps the ratios between its groups' LRs (lr_g = base_g * f(t))."""
    kids = children(sched)
    if kids:
        return all(ratio_preserving(k) for k in kids)
    if isinstance(sched, (L.StepLR, L.MultiStepLR, L.ExponentialLR, L.LinearLR, L.ConstantLR,
                          L.PolynomialLR, L.OneCycleLR)):
        return True
    if isinstance(sched, (L.LambdaLR, L.MultiplicativeLR)):
        return _same_callable(getattr(sched, "lr_lambdas", ()))
    if isinstance(sched, (L.CosineAnnealingLR, L.CosineAnnealingWarmRestarts)):
        return getattr(sched, "eta_min", 1) == 0
    return False


# schedulers whose step computes every group's LR from values fixed at construction (``base_lrs``, the
# group's ``initial_lr``/``max_lr``/``min_lr``) and never reads the current ``group["lr"]``: whatever was
# written in between, their next step puts each group back on its own schedule. StepLR, ExponentialLR,
# MultiplicativeLR, LinearLR, ConstantLR, PolynomialLR and CosineAnnealingLR multiply (or, for the
# cosine, update recursively) the current value instead, so a write leaks into the schedule.
_RECOMPUTING = (L.LambdaLR, L.OneCycleLR, L.CyclicLR, L.CosineAnnealingWarmRestarts)


def recomputes_each_step(sched: Any) -> bool:
    """True when ``sched.step()`` sets each group's LR from its own base values, whatever the group
    holds (LambdaLR's ``base_lr * lr_lambda(epoch)``); a subclass counts only with torch's own
    ``get_lr`` and ``step``. Composites (SequentialLR, ChainedScheduler) do not: their children
    restart or multiply."""
    for cls in _RECOMPUTING:
        if isinstance(sched, cls):
            kind = type(sched)
            return kind.get_lr is cls.get_lr and kind.step is cls.step
    return False


def describe(sched: Any) -> str:
    return type(sched).__name__


# -- shadow copies for expect="scheduler" ---------------------------------------------------------
class _ShadowOptimizer(Optimizer):
    """A parameterless stand-in with the real optimizer's groups and defaults; its step does nothing."""

    def __init__(self, real: Optimizer) -> None:
        groups = []
        for g in real.param_groups:
            group = {}
            for k, v in g.items():
                if k == "params":
                    continue
                group[k] = v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            group["params"] = [torch.zeros(1)]
            groups.append(group)
        super().__init__(groups, dict(real.defaults))

    def step(self, closure=None):  # noqa: D401 - nothing to update
        return None


def _clone(sched: Any, memo: dict) -> Any:
    if id(sched) in memo:
        return memo[id(sched)]
    new = object.__new__(type(sched))
    memo[id(sched)] = new
    for k, v in sched.__dict__.items():
        if k == "_schedulers" and isinstance(v, (list, tuple)):
            new.__dict__[k] = type(v)(_clone(c, memo) if is_scheduler(c) else c for c in v)
            continue
        new.__dict__[k] = _copy_attribute(v, sched, new, memo)
    return new


def _copy_attribute(v: Any, sched: Any, new: Any, memo: dict) -> Any:
    """One attribute of a scheduler's copy. Its functions (``lr_lambda``, ``scale_fn``, a partial) are
    shared: a schedule calls them without changing them, and a copy would drag in what they hold (a
    method of a LightningModule holds the whole model). Its own methods are bound to the copy. Modules
    are shared. Anything else is copied, and what cannot be (a generator) raises: sharing state the
    replay would advance would change the real training, so the scheduler is not replayed."""
    if id(v) in memo:
        return memo[id(v)]
    if isinstance(v, types.MethodType):
        return types.MethodType(v.__func__, new) if v.__self__ is sched else v
    if isinstance(v, (list, tuple)) and any(callable(x) for x in v):  # lr_lambdas: one per group
        return type(v)(_copy_attribute(x, sched, new, memo) for x in v)
    if callable(v) or isinstance(v, torch.nn.Module):
        return v
    return copy.deepcopy(v, memo)


def shadow_copy(sched: Any, opt: Optimizer):
    """A copy of ``sched`` driving a shadow of ``opt``: stepping it never touches the real optimizer."""
    shadow_opt = _ShadowOptimizer(opt)
    memo = {id(opt): shadow_opt}
    raw = getattr(sched, "optimizer", None)
    if raw is not None:
        memo[id(raw)] = shadow_opt
    return _clone(sched, memo), shadow_opt
