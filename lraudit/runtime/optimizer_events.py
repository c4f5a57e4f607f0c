"""What happens to an audited optimizer besides its steps, a part of
:class:`~lraudit.runtime.auditor.Audit` (mixed into it in auditor.py).

``load_state_dict()`` (its pre and post hooks, registered in step_hooks.py): a restore marks a resume,
so a scheduler that was not restored with it is remembered for LR019 (scheduler_steps.py), and the
first update after the loads is compared with what the restored schedulers report (``_after_load``:
LR018). A new optimizer built over the parameters an audited one updates (``_on_optimizer_created``,
from the patched ``Optimizer.__init__``): LR006 when the loop rebuilds it, a new phase otherwise.
GradScaler's ``step()`` (patched) marks the optimizer step it skipped on inf/NaN gradients.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from lraudit.runtime.checker import fmt
from lraudit.runtime.scheduler_tracking import _agrees
from lraudit.runtime.schedulers import _ShadowOptimizer, reached_end, unwrap_optimizer
from lraudit.runtime.series import close
from lraudit.runtime.tracker import LB, LE, OPTCTOR, SKIP, Tracker


class OptimizerEventsMixin:
    """Audit's observation of optimizer loads, rebuilds and skipped steps; see the module docstring."""

    def _opt_load_begin(self, tr: Tracker, state_dict: Any) -> None:
        tr.observe(LB)
        try:
            tr.restoring = bool(state_dict.get("state")) and not _own_state(tr.opt, state_dict)
            if tr.restoring:
                fp = _fingerprint(state_dict)
                if fp is not None:
                    self._loaded_states.add(fp)
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
        restored = []  # (ended, SchedInfo, first group that differs or None, what it reports)
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
            restored.append((reached_end(info.sched), info, bad[0] if bad else None, reported))
        # several restored schedulers (a warm-up that ended, then the main schedule): the ones still
        # running decide (an ended warm-up's last LR is the base LR, what a reset to base gives too);
        # the LR is right when it is the one any of them is at
        deciding = [r for r in restored if not r[0]] or restored
        if not deciding or any(r[2] is None for r in deciding):
            return
        _, info, j, reported = deciding[0]
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
                    self._rebuilt(opt, tr)
        except Exception as e:
            self._errors.append(e)

    def _rebuilt(self, opt: Any, tr: Tracker) -> None:
        """``opt`` rebuilds ``tr``'s optimizer; whether its state restarts (LR006) is known at its first
        step: a state loaded in between (``opt.load_state_dict(checkpoint)``, an in-process resume) is no
        restart, unless it is a state this audit saw loaded before (the same checkpoint loaded into
        every rebuild: each epoch restarts from it)."""
        loaded: list = []  # the fingerprint of the state loaded into it before its first step
        pending = [True]  # the hooks stay until the audit stops (torch forbids removing one while it runs)

        def on_load(o: Any, state_dict: Any) -> None:
            if pending[0]:
                loaded[:] = [_fingerprint(state_dict)]

        def first_step(o: Any, args: Any, kwargs: Any) -> None:
            if not pending[0]:
                return
            pending[0] = False
            seen = self._loaded_states
            restored = bool(loaded) and (loaded[0] is None or loaded[0] not in seen)  # None: cannot tell
            if loaded and loaded[0] is not None:
                seen.add(loaded[0])
            if not restored and self._state == 1:
                self._guard(tr.event, OPTCTOR, type(o).__name__)

        if hasattr(opt, "register_load_state_dict_pre_hook"):
            self._handles.append(opt.register_load_state_dict_pre_hook(
                lambda o, sd: self._guard(on_load, o, sd)))
        self._handles.append(opt.register_step_pre_hook(first_step))

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


def _first_param_of(opt: Any) -> Any:
    from lraudit.runtime.tracker import _first_param

    return _first_param(opt)


def _same_settings(a: Any, b: Any) -> bool:
    try:
        return bool(a.defaults == b.defaults)
    except Exception:  # tensor-valued settings: cannot tell, so not the same
        return False


def _own_state(opt: Any, state_dict: Any) -> bool:
    """``state_dict`` is the optimizer's own state handed back (accelerate's AcceleratedOptimizer loads
    ``optimizer.state_dict()``, moved to the device, when it wraps an optimizer): nothing is resumed.
    Every value is the very tensor the optimizer holds (a move to the device it is on returns it), or
    an equal number (a step count on the CPU); never a device read."""
    saved = state_dict["state"]
    n = 0
    if len(state_dict["param_groups"]) != len(opt.param_groups):
        return False
    for g_saved, group in zip(state_dict["param_groups"], opt.param_groups):
        # the settings too: a snapshot taken by reference (``snap = opt.state_dict()``) holds the live
        # state tensors but the LRs of its time; loading it back is a roll-back
        if any(k != "params" and not _same_value(v, group.get(k)) for k, v in g_saved.items()
               if isinstance(v, (int, float, torch.Tensor))):
            return False
        for idx, p in zip(g_saved["params"], group["params"]):
            mine, theirs = opt.state.get(p), saved.get(idx)
            if (mine is None) != (theirs is None):
                return False
            if mine is None:
                continue
            n += 1
            if mine.keys() != theirs.keys() or not all(_same_value(mine[k], theirs[k]) for k in mine):
                return False
    return n == len(saved)


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        x = _host_number(a)
        return x is not None and x == _host_number(b)
    return type(a) is type(b) and a == b


def _host_number(x: Any) -> Optional[float]:
    """The number a step count or a one-element CPU tensor holds; None for a device tensor (reading it
    would synchronise) or anything else."""
    if isinstance(x, torch.Tensor):
        return x.item() if x.device.type == "cpu" and x.numel() == 1 else None
    return x if isinstance(x, (int, float)) else None


def _fingerprint(state_dict: Any) -> Optional[tuple]:
    """What tells one saved optimizer state from another without reading a device: the groups' LRs and
    the step counts (Adam's and most others'; on the CPU). None when there are no step counts (SGD):
    two checkpoints at the same LR cannot be told apart, so none counts as loaded twice."""
    try:
        lrs = tuple(float(g["lr"]) for g in state_dict["param_groups"])
        steps = []
        for st in list(state_dict["state"].values())[:64]:
            step = _host_number(st.get("step"))
            if step is None:
                return None
            steps.append(step)
        return (lrs, tuple(steps)) if steps else None
    except Exception:
        return None
