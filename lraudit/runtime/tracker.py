"""One audited optimizer: reads its LRs at each observation and feeds its :class:`Checker`.

Float LRs (and tensor LRs on the CPU) are read and checked at once. A tensor LR on an accelerator is
never read during the run: each observation is copied on the device (``detach().clone()`` semantics,
one small kernel), the copies are concatenated per chunk and moved to pinned host memory
asynchronously, and the chunk's observations are replayed through the same checker once its copy has
completed (``Event.query()``, which never blocks) or at the end of the audit.
"""
from __future__ import annotations

import operator
import os
import sys
from typing import Any, Callable, List, Optional

import torch
from torch import Tensor

from lraudit.runtime.checker import Checker
from lraudit.runtime.lane import IDLE, RETRY_AFTER, Lane, open_lane
from lraudit.runtime.series import ParamRecord, series_name

# Event kinds of the device queue
START, PRE, POST, SB, SE, CTOR, ATTACH, OPTCTOR, LB, LE, SKIP, NOTE, STOP, MOM, ABORT = range(15)

# Momentum / betas are read at these observations only (never per optimizer step) ...
_READS_PARAMS = frozenset((START, CTOR, LE))
# ... and after the steps of schedulers that may write them: torch's own write only the LR, except these
# (and the composites, whose children may be these).
_MAY_WRITE_MOMENTUM = frozenset(("OneCycleLR", "CyclicLR", "SequentialLR", "ChainedScheduler"))
_LR_ONLY = frozenset(
    n for n, c in vars(torch.optim.lr_scheduler).items()
    if isinstance(c, type) and n not in _MAY_WRITE_MOMENTUM
    and issubclass(c, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
)
_LR022 = ("{where} from optimizer step {step}: a momentum or beta must lie in [0, 1); at 1 or above the "
          "running average never forgets (or grows without bound), below 0 it flips sign")

CHUNK = 1024  # observations per device chunk
_LR = operator.itemgetter("lr")
FORCE_DEVICE_PATH = False  # tests: send CPU tensor LRs through the device path too

_SKIP_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep
    for m in (torch, sys.modules[__name__.rsplit(".", 1)[0]])
    if getattr(m, "__file__", None)
)


def _location() -> Optional[str]:
    """file:line of the innermost frame outside torch and lraudit.runtime (the user's training code)."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_SKIP_DIRS) and not fn.startswith("<frozen"):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return None


class _DeviceQueue:
    """Observations whose values stay on the device until they can be read without a sync."""

    def __init__(self, device: torch.device, tracker: "Tracker") -> None:
        self.device = device
        self.tracker = tracker
        self.rows: List[Tensor] = []
        self.widths: List[int] = []
        self.events: List[tuple] = []  # (kind, row index or -1, a, b)
        self.sealed: List[tuple] = []  # (host tensor, cuda event or None, events, widths)

    def push(self, kind: int, row: Optional[Tensor], a: Any = None, b: Any = None) -> None:
        if row is not None:
            self.rows.append(row)
            self.widths.append(row.shape[0])
            self.events.append((kind, len(self.rows) - 1, a, b))
        else:
            self.events.append((kind, -1, a, b))
        if len(self.rows) >= CHUNK:
            self.seal()
            self.drain(wait=False)

    def seal(self) -> None:
        if not self.events:
            return
        host, ev = None, None
        if self.rows:
            flat = torch.cat(self.rows)
            if flat.device.type == "cpu":
                host = flat
            elif flat.device.type == "cuda":
                host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
                host.copy_(flat, non_blocking=True)
                ev = torch.cuda.Event()
                ev.record()
            else:  # other accelerators: keep it there, read it at the end
                host = flat
        self.sealed.append((host, ev, self.events, self.widths))
        self.rows, self.widths, self.events = [], [], []

    def drain(self, wait: bool) -> None:
        tracker = self.tracker
        while self.sealed:
            host, ev, events, widths = self.sealed[0]
            if ev is not None and not ev.query():
                if not wait:
                    return
                ev.synchronize()  # only at the end of the audit
            elif host is not None and host.device.type != "cpu" and not wait:
                return
            values = host.tolist() if host is not None else []
            offsets = []
            off = 0
            for w in widths:
                offsets.append(off)
                off += w
            self.sealed.pop(0)
            for kind, ri, a, b in events:
                if ri >= 0:
                    seg = values[offsets[ri]:offsets[ri] + widths[ri]]
                    tracker.replay(kind, seg[:-1], seg[-1], a, b)
                else:
                    tracker.replay(kind, None, 0.0, a, b)


def _first_param(opt: Any) -> Any:
    try:
        for g in opt.param_groups:
            for p in g["params"]:
                if isinstance(p, Tensor):
                    return p
    except Exception:
        pass
    return None


class Tracker:
    def __init__(self, opt: Any, name: str, info, prior: bool, emit=None, record_positions: bool = False,
                 sched_info: Optional[Callable[[int], Any]] = None) -> None:
        self.opt = opt
        self.name = name
        self.cls = type(opt).__name__
        self.group_names: List[str] = []
        self._checker = Checker(name, info, where=self._where, prior=prior, emit=emit,
                               reads_lr_first=isinstance(opt, torch.optim.LBFGS),
                               record_positions=record_positions)
        self.queue: Optional[_DeviceQueue] = None  # set once an accelerator tensor LR is seen
        self.pre_count = 0
        self.handles: List[Any] = []
        self._param_ids: Optional[set] = None
        self._params = ParamRecord()  # momentum / betas, read where a scheduler may change them
        self._reads_params: dict = {}  # scheduler id -> whether its steps may write momentum
        # one parameter's version counter after the last update: a new optimizer over the same weights
        # that finds it changed comes after a reset or a load (a new phase), not a rebuild in the loop
        self.sample = _first_param(opt)
        self.sample_version = -1
        self.restoring = False  # the optimizer state being loaded holds per-parameter state (a resume)
        self.loaded = False  # an optimizer or scheduler load since the last step: LR018 looks at the next
        self.resume: dict = {}  # sid -> last_epoch when the optimizer's state was restored (LR019)
        self.resumed_at: Optional[int] = None  # applied steps when the optimizer's state was restored
        self.restored_lrs: Optional[list] = None  # the LRs that restore brought
        # the steady lane (see lane.py): plain steps recorded without the checker, settled into it
        self.lane: Optional[Lane] = None
        self.lane_wait = RETRY_AFTER  # general-path updates before the lane is tried
        self.armed_lrs: Optional[list] = None  # the LR objects a scheduler left while LR002 waits
        self._sched_info = sched_info  # sid -> the audit's SchedInfo

    # -- the steady lane -------------------------------------------------------------------------
    @property
    def checker(self) -> Checker:
        """The checker, with everything the lane holds recorded in it."""
        if self.lane is not None:
            self.settle()
        return self._checker

    @property
    def params(self) -> ParamRecord:
        if self.lane is not None:
            self.settle()
        return self._params

    def settle(self, again: bool = False) -> None:
        """Hand what the lane holds to the checker; ``again``: open a new lane at once (a periodic
        settle), else go the general way for a while (something unusual happened)."""
        lane = self.lane
        if lane is None:
            return
        self.lane = None
        lane.settle_into(self._checker, self._params)
        if again and lane.phase == IDLE:
            self.lane = open_lane(self, self._sched_info)
        else:
            self.lane_wait = RETRY_AFTER

    def _lane_countdown(self) -> None:
        """After an update on the general path: try the lane once it had RETRY_AFTER of them."""
        if self.lane_wait:
            self.lane_wait -= 1
        elif self._sched_info is not None and self.queue is None:
            self.lane = open_lane(self, self._sched_info)
            if self.lane is None:
                self.lane_wait = RETRY_AFTER

    # -- reading ---------------------------------------------------------------------------------
    def _names(self, groups) -> None:
        for i in range(len(self.group_names), len(groups)):
            n = groups[i].get("name")
            self.group_names.append(n if isinstance(n, str) and n else f"pg{i + 1}")
        self._param_ids = None

    def read(self) -> Optional[list]:
        """Every group's LR as floats, or None once the LRs live on an accelerator.

        Runs three times per optimizer + scheduler step: the usual single group is read without a map."""
        groups = self.opt.param_groups
        if len(groups) == 1 and self.group_names:
            v = groups[0]["lr"]
            if type(v) is float:
                return [v]
            vals = [v]
        else:
            if len(groups) != len(self.group_names):
                self._names(groups)
            vals = list(map(_LR, groups))
            for v in vals:
                if type(v) is not float:
                    break
            else:
                return vals
        return self._convert(vals)

    def _convert(self, vals: list) -> Optional[list]:
        self._checker.raw = False  # converted values are new objects: identity says nothing
        out = []
        for v in vals:
            if isinstance(v, Tensor):
                if v.device.type != "cpu" or FORCE_DEVICE_PATH:
                    self._to_device_mode(v.device)
                    return None
                out.append(float(v))
            else:
                out.append(float(v))
        return out

    def _to_device_mode(self, device: torch.device) -> None:
        if self.queue is None:
            self.queue = _DeviceQueue(device, self)

    def _row(self, extra: Any = None) -> Tensor:
        """This observation's LRs (and found_inf) as one float64 vector on the device: no sync."""
        groups = self.opt.param_groups
        if len(groups) != len(self.group_names):
            self._names(groups)
        dev = self.queue.device  # type: ignore[union-attr]
        parts = []
        for g in groups:
            v = g["lr"]
            if isinstance(v, Tensor):
                parts.append(v.detach().reshape(()).to(device=dev, dtype=torch.float64, copy=True))
            else:
                parts.append(torch.full((), float(v), dtype=torch.float64, device=dev))
        if isinstance(extra, Tensor):
            parts.append(extra.detach().reshape(()).to(device=dev, dtype=torch.float64, copy=True))
        else:
            parts.append(torch.full((), float(extra or 0.0), dtype=torch.float64, device=dev))
        return torch.stack(parts)

    def _where(self, at: str) -> Optional[str]:
        if self.queue is not None:
            return None
        loc = _location()
        return f"at {loc}" if loc else None

    # -- observations ----------------------------------------------------------------------------
    def observe(self, kind: int, a: Any = None, b: Any = None) -> None:
        if self.lane is not None:
            self.settle()
        if self.queue is None:
            vals = self.read()
            if vals is not None:
                self._feed(kind, vals, 0.0, a, b)
                if kind in _READS_PARAMS:
                    self.read_params()
                return
        self.queue.push(kind, self._row(), a, b)  # type: ignore[union-attr]
        if kind in _READS_PARAMS:
            self.read_params()

    def read_params(self) -> None:
        """Record the momentum / betas in force from the next update (a few dict reads)."""
        if self.lane is not None:
            self.settle()
        row = self._params.read(self.opt.param_groups)
        if row is None:
            return
        if self.queue is None:
            self._params_at(row)
        else:  # the step count is known when the queue is replayed
            self.queue.push(MOM, None, row)

    def _params_at(self, row: list) -> None:
        c = self._checker
        bad = self._params.at(c.steps, row)
        if not bad:
            return
        if max(group for group, _, _ in bad) >= len(self.group_names):
            self._names(self.opt.param_groups)
        places = []
        for group, key, value in bad:
            series = series_name(self.name, self.group_names[group], group, len(self.group_names))
            what = "momentum" if key == "momentum" else f"betas[{int(key[-1]) - 1}]"
            places.append(f"{what} of {series} is {value:.6g}")
        where = ", ".join(places).replace("{", "{{").replace("}", "}}")  # note() formats the text again
        c.note("LR022", _LR022.format(where=where, step="{step}"), bad[0][0])

    def _may_write_params(self, sid: int) -> bool:
        known = self._reads_params.get(sid)
        if known is None:
            known = self._reads_params[sid] = self._checker.sched_name(sid) not in _LR_ONLY
        return known

    def sched_begin(self, sid: int, has_args: bool = False) -> None:
        if self.lane is not None:
            self.settle()
        if self.queue is None:
            vals = self.read()
            if vals is not None:
                self._checker.sched_begin(vals, sid, has_args)
                return
        self.queue.push(SB, self._row(), sid, has_args)  # type: ignore[union-attr]

    def sched_end(self, sid: int, why: Optional[str]) -> None:
        if self.lane is not None:
            self.settle()
        momentum = self._reads_params.get(sid)
        if momentum is None:
            momentum = self._may_write_params(sid)
        if self.queue is None:
            vals = self.read()
            if vals is not None:
                self._checker.sched_end(vals, sid, why)
                if self._checker.lr002_armed:  # the objects it left: a write of equal values replaces them
                    self.armed_lrs = [g["lr"] for g in self.opt.param_groups]
                if momentum:
                    self.read_params()
                return
        self.queue.push(SE, self._row(), sid, why)  # type: ignore[union-attr]
        if momentum:
            self.read_params()

    def event(self, kind: int, a: Any = None, b: Any = None) -> None:
        """An event without values (a skipped step, an attachment, a note)."""
        if self.lane is not None:
            self.settle()
        if self.queue is None:
            self._feed(kind, None, 0.0, a, b)
        else:
            self.queue.push(kind, None, a, b)

    def on_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self.lane is not None:
            self.settle()
        self.pre_count += 1
        if self.queue is None:
            vals = self.read()
            if vals is not None:
                c = self._checker
                if self.armed_lrs is not None:  # rare: a warm-up's verdict waits on this update
                    if c.lr002_armed and c.last == vals and any(
                            g["lr"] is not v for g, v in zip(self.opt.param_groups, self.armed_lrs)):
                        c.rewrote_equal(vals)
                    self.armed_lrs = None
                c.pre(vals)
                return
        self.queue.push(PRE, self._row())  # type: ignore[union-attr]

    def on_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self.lane is not None:
            self.settle()
        sample = self.sample
        if sample is not None:
            self.sample_version = sample._version
        fi = getattr(opt, "found_inf", None)
        if self.queue is None:
            if fi is None and len(args) <= 1 and not kwargs and self._checker.pending:  # args: (optimizer,)
                # no closure ran inside the step: nothing but the optimizer touched the groups since
                # the pre-hook read them, and the update used what it read then
                self._checker.post_unchanged()
                self._lane_countdown()
                return
            if fi is not None and isinstance(fi, Tensor):
                if fi.device.type != "cpu" or FORCE_DEVICE_PATH:
                    self._to_device_mode(fi.device)
                else:
                    fi = float(fi)
            if self.queue is None:
                vals = self.read()
                if vals is not None:
                    self._checker.post(vals, fi or 0.0)
                    if not fi:
                        self._lane_countdown()
                    return
        self.queue.push(POST, self._row(fi))  # type: ignore[union-attr]

    def _feed(self, kind: int, vals: Optional[list], extra: float, a: Any, b: Any) -> None:
        c = self._checker
        if kind == PRE:
            c.pre(vals)  # type: ignore[arg-type]
        elif kind == POST:
            c.post(vals, extra)  # type: ignore[arg-type]
        elif kind == SB:
            c.sched_begin(vals, a, bool(b))  # type: ignore[arg-type]
        elif kind == SE:
            c.sched_end(vals, a, b)  # type: ignore[arg-type]
        elif kind == CTOR:
            c.ctor(vals, a, b)  # type: ignore[arg-type]
        elif kind == ATTACH:
            c.attach(a)
        elif kind == OPTCTOR:
            c.opt_ctor(a)
        elif kind == LB:
            c.load_begin(vals)  # type: ignore[arg-type]
        elif kind == LE:
            c.load_end(vals)  # type: ignore[arg-type]
        elif kind == SKIP:
            c.skip()
        elif kind == ABORT:
            c.abort()
        elif kind == NOTE:
            c.note(a, b)
        elif kind == START:
            c.start(vals)  # type: ignore[arg-type]
        elif kind == STOP:
            c.stop(vals)
        elif kind == MOM:
            self._params_at(a)

    def replay(self, kind: int, vals: Optional[list], extra: float, a: Any, b: Any) -> None:
        self._feed(kind, vals, extra, a, b)

    def flush(self, wait: bool) -> None:
        if self.lane is not None:
            self.settle()
        if self.queue is not None:
            if wait:
                self.queue.seal()
            self.queue.drain(wait)

    # -- parameters ------------------------------------------------------------------------------
    def param_ids(self) -> set:
        if self._param_ids is None:
            self._param_ids = {id(p) for g in self.opt.param_groups for p in g["params"]}
        return self._param_ids

    def weights_rewritten(self) -> bool:
        """The sample parameter changed since this optimizer's last update (a reset, a load)."""
        sample = self.sample
        return sample is None or self.sample_version < 0 or sample._version != self.sample_version

    def remove_hooks(self) -> None:
        while self.handles:
            h = self.handles.pop()
            try:
                h.remove()
            except Exception:  # pragma: no cover - a handle whose dict is gone
                pass
