"""Class-level wrappers that let running audits observe schedulers, optimizer constructions and GradScaler.

Installed when the first audit starts and removed when the last one stops, whatever the order in which
audits start and stop; while installed they forward events to every running audit. Wrapping the class
(not the instance) keeps every scheduler's ``__dict__``, and so its ``state_dict()``, untouched, and also
observes schedulers built before the audit started or inside it.

Observed:
- ``step`` of every torch scheduler class (LRScheduler subclasses and ReduceLROnPlateau), and of
  accelerate's ``AcceleratedScheduler`` when accelerate is already imported. A step made while another
  scheduler step is running (children of SequentialLR / ChainedScheduler) is *nested*: it is not an
  independent scheduler step. A step made while a scheduler is being constructed is its initial step.
- ``__init__`` of every scheduler class (outermost call only) and of ``Optimizer``.
- ``load_state_dict`` of every scheduler class (outermost call only): a resume re-anchors expectations.
- ``GradScaler.step``: a call that did not reach ``optimizer.step()`` is a step skipped for inf/NaN.
"""
from __future__ import annotations

import functools
import sys
import threading
import warnings
from typing import Any, Callable, List, Tuple

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as L

_lock = threading.RLock()
ACTIVE: List[Any] = []  # running audits
_patched: List[Tuple[type, str, Any]] = []  # (class, attribute, original entry of cls.__dict__)
_patched_keys: set = set()


class _State(threading.local):
    """Per thread: two threads each training (and auditing) their own optimizer never see each other's
    scheduler steps as nested in theirs. Class attributes are every thread's starting values."""

    ctor_depth = 0  # scheduler constructors running
    load_depth = 0  # scheduler load_state_dict running
    suppress = 0  # our own shadow computations
    # suppress + ctor_depth + scheduler steps running: the step wrapper, which runs at every scheduler
    # step, reads this one attribute in the usual case (0: a top-level step)
    busy = 0


state = _State()

# what an audit's ``_lane_step`` returns for a step it leaves to the general way (it did not run it)
DECLINED = object()


class suppressed:
    """Context in which the wrappers forward nothing (shadow schedulers of expect="scheduler")."""

    def __enter__(self):
        state.suppress += 1
        state.busy += 1

    def __exit__(self, *exc):
        state.suppress -= 1
        state.busy -= 1


def _all_subclasses(cls: type) -> List[type]:
    out, todo, seen = [], [cls], set()
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        out.append(c)
        try:
            todo.extend(c.__subclasses__())
        except TypeError:
            pass
    return out


def _patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
    key = (cls, name)
    if key in _patched_keys or name not in cls.__dict__:
        return
    original = cls.__dict__[name]
    if not callable(original):
        return
    wrapper = make(original)
    wrapper.__lraudit_original__ = original
    setattr(cls, name, wrapper)
    _patched.append((cls, name, original))
    _patched_keys.add(key)


# -- wrappers ---------------------------------------------------------------------------------------
def _sched_step(original):
    @functools.wraps(original)
    def step(self, *args, **kwargs):
        if not ACTIVE:
            return original(self, *args, **kwargs)
        st = state
        if st.busy:
            if st.suppress or st.ctor_depth:  # our shadows; an initial step, part of a construction
                return original(self, *args, **kwargs)
            # a child of a composite scheduler, or a subclass calling super().step()
            for a in tuple(ACTIVE):
                a._on_sched_nested(self)
            return original(self, *args, **kwargs)
        if len(ACTIVE) == 1:  # the usual case: the audit's steady lane runs the step when it takes it
            out = ACTIVE[0]._lane_step(self, original, args, kwargs)
            if out is not DECLINED:
                return out
        audits = tuple(ACTIVE)
        tokens = [a._on_sched_begin(self, args, kwargs) for a in audits]
        st.busy += 1
        error = None
        try:
            if _may_warn(self, args, kwargs):
                return _warnings_at_caller(original, self, args, kwargs)
            return original(self, *args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            st.busy -= 1
            for a, token in zip(audits, tokens):
                a._on_sched_end(self, error, token)

    return step


def _may_warn(sched: Any, args: tuple, kwargs: dict) -> bool:
    """A step on which torch warns: the first one (before ``optimizer.step()``), or one given an
    epoch (deprecated). Never a steady step: those run without the detour below."""
    if isinstance(sched, L.ReduceLROnPlateau):  # its metric is an argument; only an epoch warns
        return len(args) > 1 or kwargs.get("epoch") is not None
    return bool(args or kwargs) or getattr(sched, "_step_count", None) == 1


def _warnings_at_caller(original: Callable, sched: Any, args: tuple, kwargs: dict) -> Any:
    """Run the step; torch's own warnings about it (``stacklevel=2``) would name this module's wrapper,
    the step's caller now: issue them again at the line that called ``step()``, where the filters in
    force decide (once per place, ignore, error: an error is raised after the step ran)."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return original(sched, *args, **kwargs)
    finally:
        frame = sys._getframe(2)  # 0: here, 1: the wrapper, 2: the code that called step()
        g = frame.f_globals
        for w in caught:
            if w.filename == _HERE:
                warnings.warn_explicit(w.message, w.category, frame.f_code.co_filename, frame.f_lineno,
                                       module=g.get("__name__"), registry=g.setdefault("__warningregistry__", {}),
                                       module_globals=g)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno or 0)
        del frame, g


_HERE = _sched_step.__code__.co_filename


def _sched_init(original):
    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        if not ACTIVE or state.suppress:
            return original(self, *args, **kwargs)
        before = _groups_before(args, kwargs) if state.ctor_depth == 0 else None
        state.ctor_depth += 1
        state.busy += 1
        try:
            original(self, *args, **kwargs)
        finally:
            state.ctor_depth -= 1
            state.busy -= 1
        if state.ctor_depth == 0:
            _patch_class_tree(type(self))  # a scheduler class defined after the audit started
            for a in tuple(ACTIVE):
                a._on_sched_created(self, before)

    return __init__


def _groups_before(args: tuple, kwargs: dict) -> Any:
    """``(lr, initial_lr)`` of each group of the optimizer a scheduler is being built on, as they were
    before its constructor ran (None when it cannot be told)."""
    opt = args[0] if args else kwargs.get("optimizer")
    try:
        return [(g.get("lr"), g.get("initial_lr")) for g in opt.param_groups]
    except Exception:
        return None


def _sched_load(original):
    @functools.wraps(original)
    def load_state_dict(self, *args, **kwargs):
        if not ACTIVE or state.suppress or state.load_depth:  # a child of a composite loads with it
            return original(self, *args, **kwargs)
        state.load_depth += 1
        try:
            out = original(self, *args, **kwargs)
        finally:
            state.load_depth -= 1
        saved = args[0] if args else kwargs.get("state_dict")
        for a in tuple(ACTIVE):
            a._on_sched_loaded(self, saved)
        return out

    return load_state_dict


def _opt_init(original):
    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if ACTIVE and not state.suppress:
            for a in tuple(ACTIVE):
                a._on_optimizer_created(self)

    return __init__


def _scaler_step(original):
    @functools.wraps(original)
    def step(self, optimizer, *args, **kwargs):
        if not ACTIVE or state.suppress:
            return original(self, optimizer, *args, **kwargs)
        audits = tuple(ACTIVE)
        marks = [a._scaler_mark(optimizer) for a in audits]
        out = original(self, optimizer, *args, **kwargs)
        for a, m in zip(audits, marks):
            a._scaler_done(optimizer, m)
        return out

    return step


def _patch_class_tree(cls: type) -> None:
    """Wrap ``step``/``__init__`` of a scheduler class and its scheduler bases, if not yet done."""
    if not _patched or cls in _seen_classes:
        return
    with _lock:
        for c in cls.__mro__:
            if c is object:
                break
            if issubclass(c, (L.LRScheduler, L.ReduceLROnPlateau)):
                _patch(c, "step", _sched_step)
                _patch(c, "__init__", _sched_init)
                _patch(c, "load_state_dict", _sched_load)
        _seen_classes.add(cls)


_seen_classes: set = set()


def _install() -> None:
    roots = [L.LRScheduler]
    if not issubclass(L.ReduceLROnPlateau, L.LRScheduler):  # torch < 2.2
        roots.append(L.ReduceLROnPlateau)
    for root in roots:
        for cls in _all_subclasses(root):
            _patch(cls, "step", _sched_step)
            _patch(cls, "__init__", _sched_init)
            _patch(cls, "load_state_dict", _sched_load)
            _seen_classes.add(cls)
    _patch(Optimizer, "__init__", _opt_init)
    scaler_roots = []
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        scaler_roots.append(amp.GradScaler)
    elif hasattr(torch.cuda.amp, "GradScaler"):
        scaler_roots.append(torch.cuda.amp.GradScaler)
    for root in scaler_roots:
        for cls in _all_subclasses(root):
            _patch(cls, "step", _scaler_step)
    acc = sys.modules.get("accelerate.scheduler")
    if acc is not None and hasattr(acc, "AcceleratedScheduler"):
        _patch(acc.AcceleratedScheduler, "step", _sched_step)


def _uninstall() -> None:
    while _patched:
        cls, name, original = _patched.pop()
        setattr(cls, name, original)
    _patched_keys.clear()
    _seen_classes.clear()


def acquire(audit: Any) -> None:
    with _lock:
        if not ACTIVE:
            _install()
        ACTIVE.append(audit)


def release(audit: Any) -> None:
    with _lock:
        if audit in ACTIVE:
            ACTIVE.remove(audit)
        if not ACTIVE:
            _uninstall()
            state.ctor_depth = state.busy = state.load_depth = 0
