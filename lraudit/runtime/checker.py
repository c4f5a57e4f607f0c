"""Per-optimizer state machine: observations in, trajectory and findings out (pure Python, no torch).

An *observation* is the list of every group's LR (floats) at one moment: before an optimizer step
(``pre``: the LR the update uses), after it (``post``), around a scheduler step, a scheduler
construction or ``optimizer.load_state_dict``. A change between two consecutive observations that is
not inside a scheduler step, a construction or a load was made by something else: a manual write.

Steps are counted in *applied* optimizer steps: a step whose update GradScaler skipped (no
``optimizer.step()`` call at all, or a fused step with ``found_inf`` set) is not one. An *interval* is
what happens between two applied steps; the scheduler steps in each interval decide LR001 and LR013.

The same methods are called live from the hooks (float LRs) or replayed at the end from values copied
on the device (tensor LRs), so both give the same findings.

Findings are *emitted* (``emit`` callback) as soon as they are certain: most at the observation that
decides them, LR001 once the second interval closed (it may yet turn out to be LR013), LR005 only at
the end. :meth:`Checker.finish` builds the final list, with the totals counted over the whole run.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

from lraudit.catalog import LR002_WARMUP_LEVEL, lr002_warmup_consequence
from lraudit.runtime.findings import RuntimeFinding
from lraudit.runtime.series import Trajectory, same

INF = float("inf")
LR005_MIN_STEPS = 2  # the optimizer must have stepped this often, unscheduled, for LR005
_KEEP_WRITES = 32  # manual writes kept in detail (all are counted)
_RATIO_RTOL = 1e-6

# where a change was observed
AT_PRE, AT_POST, AT_SCHED, AT_LOAD = "pre", "post", "sched", "load"


def fmt(v: float) -> str:
    return f"{v:.6g}"


def fmt_list(vs) -> str:
    vs = list(vs)
    return "[" + ", ".join(fmt(v) for v in vs) + "]" if len(vs) != 1 else fmt(vs[0])


class Positions:
    """Where a scheduler was stepped: the number of applied optimizer steps before each of its steps,
    stored as arithmetic runs ``[start, stride, count]`` (per-batch and per-epoch cadences are one run)."""

    __slots__ = ("runs", "n")

    def __init__(self) -> None:
        self.runs: List[list] = []
        self.n = 0

    def add(self, pos: int) -> None:
        self.n += 1
        runs = self.runs
        if runs:
            last = runs[-1]
            if last[2] == 1 and pos >= last[0]:
                last[1] = pos - last[0]
                last[2] = 2
                return
            if pos == last[0] + last[1] * last[2]:
                last[2] += 1
                return
        runs.append([pos, 0, 1])

    def __iter__(self):
        for start, stride, count in self.runs:
            for i in range(count):
                yield start + stride * i


class SchedStats:
    __slots__ = ("attach_idx", "attach_step", "n_top", "first_idx", "last_idx", "first_step", "last_step",
                 "positions", "with_args")

    def __init__(self, attach_idx: int, attach_step: int) -> None:
        self.attach_idx = attach_idx
        self.attach_step = attach_step
        self.n_top = 0  # independent (top-level) steps
        self.first_idx: Optional[int] = None
        self.last_idx: Optional[int] = None
        self.first_step: Optional[int] = None
        self.last_step: Optional[int] = None  # updates before its last step (expect='scheduler-per-step')
        self.positions: Optional[Positions] = None  # recorded for expect="scheduler"
        self.with_args = 0  # steps given an explicit epoch


class Write:
    __slots__ = ("idx", "step", "groups", "old", "new", "at", "where", "partial", "ratio", "ended")

    def __init__(self, idx, step, groups, old, new, at, where, partial, ratio):
        self.idx, self.step, self.groups, self.old, self.new = idx, step, groups, old, new
        self.at, self.where, self.partial, self.ratio = at, where, partial, ratio
        self.ended: Optional[frozenset] = None  # schedulers whose schedule had ended at the write


Emit = Callable[[RuntimeFinding], None]


class Checker:
    def __init__(self, name: str, info: Callable[[int], dict],
                 where: Optional[Callable[[str], Optional[str]]] = None, prior: bool = False,
                 emit: Optional[Emit] = None, reads_lr_first: bool = False,
                 record_positions: bool = False) -> None:
        self.name = name  # series name, "lr-SGD"
        # sid -> {"name", "parent", "stepped", "ratio_preserving", "recomputes", "plateau"[, "not_due"]}
        self.info = info
        self.where = where  # lazily locates the code around a manual write (live mode only)
        self.prior = prior  # the optimizer stepped before the audit started
        self.emit = emit  # receives each finding once it is certain
        self.reads_lr_first = reads_lr_first  # LBFGS: the update uses the LR read before the closure
        self.record_positions = record_positions
        self.emitted: Dict[str, RuntimeFinding] = {}
        self.extra: List[RuntimeFinding] = []  # decided outside (LR017-LR019): kept as they were emitted
        self.lr002: Optional[Tuple[Write, str]] = None
        # LR002 over a scheduler that recomputes every group from its base values (LambdaLR) may be a
        # warm-up: writes from before its first step that stop on its own value, after which it alone
        # writes. The verdict waits (see _lr002_for); these hold what it needs.
        self.sched_ref: Dict[int, Tuple[Optional[int], list]] = {}  # sid -> (its step's first idx, LRs it left)
        self.sched_base: Dict[int, list] = {}  # sid -> the LRs when it was built: their ratios are the ones kept
        self.reach: Tuple[int, ...] = ()  # schedulers whose own LRs the last write left in every group
        self.reach_vals: Optional[list] = None  # the LRs right after the last write
        self.lr002_pending: Optional[int] = None  # the scheduler of a possible warm-up: LR002 not decided yet
        self.lr002_armed = False  # ... and it stepped since: the next update without a write decides
        self.lr002_warmup: Optional[int] = None  # decided: a warm-up that handed over to this scheduler
        self.lr004_ratio: Optional[tuple] = None
        self.lr011: Optional[Tuple[int, int, int]] = None
        self.latest_first: Optional[Tuple[int, int, int]] = None  # (first idx, sid, first step) started last
        # a write after a schedule ended (a new stage's LR): LR002 if that scheduler steps again after it
        self.ended_write: Optional[Write] = None
        # schedulers whose LRs were handed back before their step: sid -> (from, to) event indices of
        # the writes undone so; a later write waits for their next step (layer_write)
        self.undone: Dict[int, Tuple[int, int]] = {}
        self.layer_write: Optional[Write] = None
        self.raw = True  # observations are the group dicts' own float objects (no conversion)
        self.written: set = set()  # groups some manual write changed
        self.traj = Trajectory()
        self.steps = 0  # applied optimizer steps
        self.idx = 0  # observation counter (orders writes and attachments)
        self.last: Optional[list] = None
        self.pending = False  # a pre without its post yet
        self.past_end: Optional[Tuple[int, str]] = None  # (sid, why) when the current LR is past a schedule's end
        self.icount: Dict[int, int] = {}  # sid -> independent scheduler steps in the current interval
        self.iskips = 0  # GradScaler-skipped steps in the current interval
        self.nskips = 0
        self.stats: Dict[int, SchedStats] = {}
        self.n_writes = 0
        self.writes: List[Write] = []
        self.last_write: Optional[Write] = None
        self.first_partial: Optional[Write] = None
        self.ratio_writes: List[Write] = []
        self.n_partial = 0
        # first occurrences: rule -> dict of details, and counts
        self.hits: Dict[str, dict] = {}
        self.counts: Dict[str, int] = {}
        self.notes: List[RuntimeFinding] = []

    # -- observations ----------------------------------------------------------------------------
    def start(self, vals: list) -> None:
        self.idx += 1
        self.last = vals

    def pre(self, vals: list) -> None:
        self.idx += 1
        if self.pending:  # the previous step raised before its post hooks: count it
            self._applied()
        last = self.last
        if vals != last:
            if last is not None:
                self._external(vals, AT_PRE)
            self.last = vals
        if self.traj.append(vals):  # a row unlike the last one
            self._check_valid(vals)
        self.pending = True
        if self.past_end is not None:
            self._lr009(vals)

    def post(self, vals: list, found_inf: float = 0.0) -> None:
        self.idx += 1
        if not self.pending:
            return
        if vals != self.last:  # written inside the step's closure (Lightning's training_step)
            self._external(vals, AT_POST)
            self.last = vals
        if found_inf:  # fused optimizer under GradScaler: the update was skipped
            self.traj.pop()
            self.pending = False
            self.iskips += 1
            self.nskips += 1
            return
        if self.lr002_armed:
            self._lr002_fight()
        if vals != self.traj.last_row and not self.reads_lr_first:
            # the update used the LR as it was after the closure (LBFGS read it before calling it)
            self._check_valid(vals)
            self.traj.replace_last(vals)
            if self.past_end is not None:
                self._lr009(vals)
        self._applied()

    def post_unchanged(self) -> None:
        """``post`` for a step without a closure nor ``found_inf``: the LRs are those seen at ``pre``."""
        self.idx += 1
        if self.lr002_armed:
            self._lr002_fight()
        if self.steps and not self.hits:
            # the canonical interval (_close_interval's first case) without its calls: runs at every step
            ic = self.icount
            if ic:
                if len(ic) != 1:
                    return self._applied()
                (k,) = ic.values()
                if k != 1:
                    return self._applied()
                ic.clear()
            self.iskips = 0
            self.steps += 1
            self.pending = False
            return None
        return self._applied()

    def sched_begin(self, vals: list, sid: int, has_args: bool = False) -> None:
        self.idx += 1
        handed_back = False
        if vals != self.last:
            if self.last is not None:
                handed_back = self._hands_back(vals, sid)
                if handed_back:
                    self._undo(sid)
                else:
                    self._external(vals, AT_SCHED, sid)
            self.last = vals
        st = self.stats.get(sid)
        if st is None:
            st = self._stat(sid)
        if self.layer_write is not None and not handed_back and sid in self.undone:
            # a write over a layer that hands back before each step reached this step after all
            w, self.layer_write = self.layer_write, None
            del self.undone[sid]
            self._lr002_for(w)
        st.n_top += 1
        st.last_idx = self.idx
        st.last_step = self.steps
        if self.ended_write is not None and sid in self.ended_write.ended:  # it goes on over the write
            w, self.ended_write = self.ended_write, None
            self._lr002_for(w)
        ic = self.icount
        ic[sid] = ic.get(sid, 0) + 1
        if self.record_positions:
            if st.positions is None:
                st.positions = Positions()
            st.positions.add(self.steps)
            if has_args:
                st.with_args += 1
        if st.first_idx is None:
            st.first_idx = self.idx
            st.first_step = self.steps
            self.latest_first = (st.first_idx, sid, st.first_step)
            self._first_sched_step(sid)
        elif self.lr011 is None:
            # this step interleaves with a scheduler that started after this one's first step: the one
            # started last is such a one if any is (O(1) per step: a run rebuilding its scheduler every
            # epoch has hundreds)
            latest = self.latest_first
            if latest is not None and latest[1] != sid and latest[0] > st.first_idx:
                self.lr011 = (sid, latest[1], latest[2])
                self._emit("LR011")

    def sched_end(self, vals: list, sid: int, past_end: Optional[str]) -> None:
        self.idx += 1
        self.last = vals
        self.past_end = (sid, past_end) if past_end else None
        st = self.stats.get(sid)
        if st is not None:
            self.sched_ref[sid] = (st.last_idx, vals)
        if self.lr002_wait and self.lr002_pending == sid:
            rv = self.reach_vals
            if rv is not None and _same_lrs(vals, rv):
                self.reach = (sid,)  # it arrived at the last write's LRs: a ramp aimed at its next value
            else:
                self.lr002_armed = True

    def ctor(self, vals: list, sid: int, restart_of: Optional[int]) -> None:
        """A scheduler built during the audit; ``restart_of``: the same kind of scheduler it restarts
        (an LR006), None for a first one or a new phase."""
        self.idx += 1
        self.last = vals
        self.past_end = None
        st = self._stat(sid)
        st.attach_idx = self.idx
        st.attach_step = self.steps
        self.sched_ref[sid] = (st.last_idx, vals)
        self.sched_base[sid] = vals
        if restart_of is not None:
            self._hit("LR006", step=self.steps, group=0, kind="scheduler", sid=sid)
            self._emit("LR006")

    def attach(self, sid: int) -> None:
        """A scheduler that already drove this optimizer when the audit started."""
        st = self._stat(sid)
        if self.last is not None and not self.n_writes and sid not in self.sched_ref:
            # nothing wrote the groups during the audit: they hold what it left (built or last stepped)
            self.sched_ref[sid] = (st.last_idx, self.last)
            self.sched_base[sid] = self.last

    def opt_ctor(self, cls_name: str) -> None:
        """A rebuild of this optimizer (same class, same parameters, weights not rewritten) after it
        stepped: its state restarts."""
        if self.steps or self.pending:
            self._hit("LR006", step=self.steps, group=0, kind="optimizer", cls=cls_name)
            self._emit("LR006")

    def load_begin(self, vals: list) -> None:
        self.idx += 1
        if vals != self.last:
            if self.last is not None:
                self._external(vals, AT_LOAD)
            self.last = vals

    def load_end(self, vals: list) -> None:
        self.idx += 1
        self.last = vals
        self.past_end = None
        self.sched_ref.clear()  # what the schedulers left is no longer in the groups
        if self.lr002_pending is not None:  # a load in the middle of a warm-up: not the plain case
            self._lr002_fight()

    def skip(self) -> None:
        self.iskips += 1
        self.nskips += 1

    def abort(self) -> None:
        """The update whose start was just seen will not run (strict="immediate" raised in its pre-hook):
        it is not recorded, as a step is the k-th update applied."""
        if self.pending:
            self.traj.pop()
            self.pending = False

    def note(self, rule: str, message: str, group: Optional[int] = 0) -> None:
        """A finding explained from an exception a scheduler raised; ``{step}``/``{name}`` are filled in."""
        if not any(f.rule == rule for f in self.notes):
            text = message.format(step=self.steps, name=self.name)
            f = RuntimeFinding(rule, text, self.steps, group, self.name)
            self.notes.append(f)
            if rule not in self.hits and rule not in self.emitted:
                self.emitted[rule] = f
                if self.emit is not None:
                    self.emit(f)

    def add(self, rule: str, message: str, step: Optional[int] = None, group: Optional[int] = 0) -> Optional[
            RuntimeFinding]:
        """A finding decided by the audit (LR017-LR019), once per rule and optimizer; emitted at once."""
        if rule in self.emitted:
            return None
        f = RuntimeFinding(rule, message, self.steps if step is None else step, group, self.name)
        self.extra.append(f)
        self.emitted[rule] = f
        if self.emit is not None:
            self.emit(f)
        return f

    def stop(self, vals: Optional[list]) -> None:
        self.idx += 1
        if self.pending:
            self._applied()
        self._close_interval(final=True)

    # -- internals -------------------------------------------------------------------------------
    def _stat(self, sid: int) -> SchedStats:
        st = self.stats.get(sid)
        if st is None:
            st = self.stats[sid] = SchedStats(-1, self.steps)
        return st

    def _applied(self) -> None:
        self._close_interval(final=False)
        self.steps += 1
        self.pending = False

    def _close_interval(self, final: bool) -> None:
        ic = self.icount
        if ic:
            if len(ic) == 1:
                (sid, k), = ic.items()
            else:
                sid, k = max(ic.items(), key=_count)
            if k == 1 and self.steps:  # the canonical interval: one scheduler step
                ic.clear()
            elif self.steps == 0 and not self.prior:
                if self.iskips or k >= 2:
                    self._hit("LR013", step=0, group=0, sid=sid, k=k, skips=self.iskips, first=True)
                    self._emit("LR013")
                else:
                    # ReduceLROnPlateau consumes a metric, not a position in a schedule: stepped on a
                    # baseline validation before training it shifts nothing; nor does a step from a
                    # last_epoch set by hand (it goes where the code put it)
                    first = [s for s in ic if not _moves_nothing(self.info(s))]
                    if first:
                        self._hit("LR001", step=0, group=0, sid=first[0], k=ic[first[0]])
            elif k >= 2 and not final:  # extra steps after the last update are never used
                self._hit("LR013", step=self.steps, group=0, sid=sid, k=k, skips=self.iskips, first=False)
                self._merge_lr001()
                self._emit("LR013")
            ic.clear()
        self.iskips = 0
        if self.hits and (self.steps >= 1 or final) and "LR001" in self.hits and "LR001" not in self.emitted:
            self._emit("LR001")  # LR013 did not take its place

    def _hit(self, rule: str, **details) -> None:
        self.counts[rule] = self.counts.get(rule, 0) + 1
        if rule not in self.hits:
            self.hits[rule] = details

    def _merge_lr001(self) -> None:
        """Stepped before the first update *and* several times per update: the cause is the step count
        (accumulation, skipped steps), reported once as LR013 from step 0 (unless LR001 was already
        emitted)."""
        h1 = self.hits.get("LR001")
        h = self.hits.get("LR013")
        if h1 is None or h is None or "LR001" in self.emitted or h["sid"] != h1["sid"] or "LR013" in self.emitted:
            return
        del self.hits["LR001"]
        h["before_first"] = h1["k"]
        h["step"] = 0

    def _emit(self, rule: str) -> None:
        if rule in self.emitted or self.emit is None:
            return
        f = self._build(rule)
        if f is not None:
            self.emitted[rule] = f
            self.emit(f)

    def _check_valid(self, vals: list) -> None:
        for j, v in enumerate(vals):
            if not (v >= 0.0) or v == INF:
                self._hit("LR014", step=self.steps, group=j, value=v)
                self._emit("LR014")

    def _lr009(self, vals: list) -> None:
        sid, why = self.past_end  # type: ignore[misc]
        self._hit("LR009", step=self.steps, group=0, sid=sid, why=why, value=vals[0] if vals else None)
        self._emit("LR009")

    def _wrote_all(self, old: list, vals: list, changed: list, n: int) -> bool:
        """LR004 judges the write, not the values: a write to every group may leave some unchanged (a
        clamp at a floor). A group counts as written when its value object was replaced by an equal one
        (exact, for float LRs read as they are), or when the values look like such a clamp and the
        group was written before (then reached its floor and stays there)."""
        ch = set(changed)
        rest = [j for j in range(n) if j not in ch]
        if self.raw and all(vals[j] is not old[j] for j in rest):
            self.written.update(rest)
            return True
        return all(j in self.written for j in rest) and _clamp_like(old, vals, changed, n)

    # -- live decisions for the rules that need a scheduler to drive the optimizer -----------------
    def _first_sched_step(self, sid: int) -> None:
        """A scheduler stepped for the first time: writes seen earlier may now fight it; it may
        interleave with another."""
        if self.lr002 is None:
            for w in self.writes + ([self.last_write] if self.last_write else []):
                if self._lr002_for(w):
                    break
        if self.lr004_ratio is None and self.first_partial is None:
            for w, old, new in self.ratio_writes:  # type: ignore[misc]
                if self._lr004_ratio_for(w, old, new):
                    break
        if self.lr011 is None and len(self.stats) > 1:
            self._check_lr011()

    def _hands_back(self, vals: list, sid: int) -> bool:
        """Right before its step, the groups were put back at the LRs this scheduler left (pytorch_warmup's
        ``with warmup.dampening(): scheduler.step()`` restores the undampened LRs, then multiplies by the
        warm-up factor after the step): the writes since its last step never reached its schedule."""
        if sid not in self.sched_ref:
            return False
        since = self._since(sid)
        if any(o != sid and x.last_idx is not None and x.last_idx > since for o, x in self.stats.items()):
            return False  # another scheduler wrote since: going back to this one's LRs undoes that one
        self._fresh_refs(self.last)  # steps the steady lane took set the LRs just before this change
        return _same_lrs(vals, self.sched_ref[sid][1])

    def _since(self, sid: int) -> int:
        """The observation from which this scheduler's LRs stand: its last step's, else its attachment."""
        st = self.stats.get(sid)
        if st is None:
            return -1
        return st.last_idx if st.last_idx is not None else st.attach_idx

    def _undo(self, sid: int) -> None:
        start = self._since(sid)
        prev = self.undone.get(sid)
        if prev is not None and prev[1] >= start:  # contiguous with the last one: its step in between
            start = prev[0]
        self.undone[sid] = (start, self.idx)
        if self.layer_write is not None and self.layer_write.idx > start:
            self.layer_write = None

    def _competing(self, w: "Write") -> List[int]:
        """The schedulers a write competes with: attached before it, stepped, and still running at the
        write or stepping after it. One whose schedule had ended at the write (transformers' linear
        decay at 0, a cosine at T_max) and never stepped again was followed by a new stage: the write
        set that stage's LR (a new scheduler built on it, or none)."""
        if w.ended is None:  # first seen at the write itself: what had ended then
            w.ended = frozenset(sid for sid, st in self.stats.items()
                                if st.n_top > 0 and w.idx > st.attach_idx and self.info(sid).get("ended"))
        undone = self.undone
        return [sid for sid, st in self.stats.items() if st.n_top > 0 and w.idx > st.attach_idx
                and (sid not in w.ended or (st.last_idx is not None and st.last_idx > w.idx))
                and not (sid in undone and undone[sid][0] < w.idx < undone[sid][1])]

    def _lr002_for(self, w: "Write") -> bool:
        if self.lr002 is not None:
            return True
        fighting = self._competing(w)
        if not fighting:
            if w.ended and self.ended_write is None:  # decided if one of them steps again
                self.ended_write = w
            return False
        if all(sid in self.undone for sid in fighting):  # decided at their next step: handed back or not
            if self.layer_write is None:
                self.layer_write = w
            return False
        self.lr002 = (w, ", ".join(sorted({self.sched_name(sid) for sid in fighting})))
        if len(fighting) == 1 and self._may_be_warmup(fighting[0], w):
            self.lr002_pending = fighting[0]  # decided when the writes stop (or resume after a hand-over)
            return True
        self._emit("LR002")
        return True

    def _may_be_warmup(self, sid: int, w: Write) -> bool:
        """The writes began before the scheduler's first step (or before the first update: ultralytics
        steps its scheduler at each epoch's start, the first write follows), and its steps recompute
        every group from its base values (a write never leaks into its schedule)."""
        st = self.stats[sid]
        return ((st.first_idx is None or w.idx < st.first_idx or w.step == 0)
                and bool(self.info(sid).get("recomputes")))

    def _lr004_ratio_for(self, w: "Write", old: list, new: list) -> bool:
        if self.lr004_ratio is not None:
            return True
        keepers = [sid for sid in self._competing(w) if self.info(sid)["ratio_preserving"]]
        if not keepers:
            return False
        self.lr004_ratio = (w, old, new, keepers[0])
        if self.first_partial is None:
            self._emit("LR004")
        return True

    def _check_lr011(self) -> None:
        """Two schedulers interleave when one started before the other's last step (O(S log S))."""
        top = sorted((st.first_idx, st.last_idx, sid, st.first_step) for sid, st in self.stats.items()
                     if st.n_top > 0 and st.first_idx is not None)
        reach = None  # (last step, sid) of the scheduler that stepped latest among those started so far
        for fb, lb, sb, stepb in top:
            if reach is not None and fb < reach[0]:  # b started before a's last step: they interleave
                self.lr011 = (reach[1], sb, stepb)
                self._emit("LR011")
                return
            if reach is None or lb > reach[0]:
                reach = (lb, sb)

    def sched_name(self, sid: int) -> str:
        return self.info(sid)["name"]

    def _external(self, vals: list, at: str, sid: Optional[int] = None) -> None:
        old = self.last
        assert old is not None
        n_old = len(old)
        n = min(n_old, len(vals))
        changed = [j for j in range(n) if not same(old[j], vals[j])]
        if not changed:
            return  # only new groups (add_param_group), or values written back unchanged
        self.past_end = None
        self.n_writes += 1
        if self.sched_ref:
            self._fresh_refs(old)
        partial = n_old >= 2 and len(changed) < n_old and not self._wrote_all(old, vals, changed, n)
        self.written.update(changed)
        # LR004's ratio case judges the write: one value written into every group (the catalogue's
        # ``g["lr"] = new_lr``) that moved the ratios between groups, and not to the ratios a scheduler
        # keeps (those of the LRs it was built on). A write giving each group its own value (a
        # per-group warm-up) decided each group's LR on purpose; one handing the groups back to their
        # schedule restores its ratios.
        ratio = (not partial and n >= 2 and len(changed) == n_old and _one_value(vals, n)
                 and _ratios_changed(old, vals, n)
                 and all(_ratios_changed(base, vals, n) for base in self.sched_base.values() if len(base) >= n))
        keep = len(self.writes) < _KEEP_WRITES or (partial and self.first_partial is None) or (
            ratio and len(self.ratio_writes) < _KEEP_WRITES)
        where = None
        if keep and self.where is not None:
            where = self.where(at if sid is None else f"{at}:{self.sched_name(sid)}")
        w = Write(self.idx, self.steps, changed, [old[j] for j in changed], [vals[j] for j in changed],
                  at if sid is None else f"{at}:{self.sched_name(sid)}", where, partial, ratio)
        if len(self.writes) < _KEEP_WRITES:
            self.writes.append(w)
        prev = self.last_write
        self.last_write = w
        if self.lr002_pending is not None:
            self._warmup_write(prev, w)
        if self.lr002 is None or self.lr002_pending is not None:
            self._reached(vals)
        if partial:
            self.n_partial += 1
            if self.first_partial is None:
                self.first_partial = w
        if ratio and len(self.ratio_writes) < _KEEP_WRITES:
            self.ratio_writes.append((w, list(old[:n]), list(vals[:n])))  # type: ignore[arg-type]
        if partial and self.first_partial is w:
            self._emit("LR004")
        elif ratio and self.lr004_ratio is None and self.first_partial is None:
            self._lr004_ratio_for(w, list(old[:n]), list(vals[:n]))
        if self.lr002 is None:
            self._lr002_for(w)

    # -- a manual warm-up over a scheduler that recomputes the LRs (LR002 at warning) ---------------
    def rewrote_equal(self, vals: list) -> None:
        """The groups were written with the values the scheduler's step had just set (equal, so no change
        is seen; the tracker saw other objects): a warm-up's last write landing on the scheduler's value
        of the new epoch (ultralytics' ramp ends on ``initial_lr * lf(epoch)``). It reached it."""
        self._reached(vals)
        self.lr002_armed = False

    @property
    def lr002_wait(self) -> bool:
        """A possible warm-up whose last write did not reach its scheduler's value (the lane stays off)."""
        return self.lr002_pending is not None and self.lr002_pending not in self.reach

    def _reached(self, vals: list) -> None:
        """Which schedulers' own LRs the write left in every group: those each one set at its last step
        (or construction), see _fresh_refs."""
        self.reach = tuple(sid for sid, (_, ref) in self.sched_ref.items() if _same_lrs(vals, ref))
        self.reach_vals = vals

    def _fresh_refs(self, old: list) -> None:
        """Before a write: the LRs each scheduler left (``sched_ref``), brought up to date. A step the
        steady lane took was not seen by sched_end, but nobody wrote after it (a write ends the lane),
        so the LRs just before this write are what it set."""
        ref_of = self.sched_ref
        for sid, (begin, ref) in ref_of.items():
            st = self.stats.get(sid)
            last = st.last_idx if st is not None else None
            if last != begin:
                ref_of[sid] = (last, old)

    def _warmup_write(self, prev: Optional[Write], w: Write) -> None:
        """A write while the verdict waits: after the scheduler took over from a write that reached its
        value, writing again is no warm-up, it fights the scheduler."""
        self.lr002_armed = False
        st = self.stats[self.lr002_pending]  # type: ignore[index]
        if (prev is not None and self.lr002_pending in self.reach and st.last_idx is not None
                and st.last_idx >= prev.idx):  # equal: prev was seen as that step began
            self._lr002_fight()

    def _lr002_fight(self) -> None:
        """The waiting verdict is the plain LR002 (two writers fight), certain now."""
        self.lr002_pending = None
        self.lr002_armed = False
        self._emit("LR002")

    def _decide_lr002(self) -> None:
        """At the end: a warm-up when its last write left every group at the scheduler's own LRs and
        the scheduler, the only one stepping, stepped after it (from then on it alone wrote)."""
        sid = self.lr002_pending
        if sid is None:
            return
        w = self.last_write
        st = self.stats[sid]
        alone = all(s == sid or not x.n_top for s, x in self.stats.items())
        if (w is not None and sid in self.reach and st.last_idx is not None and st.last_idx >= w.idx
                and alone):
            self.lr002_warmup = sid
        self.lr002_pending = None
        self.lr002_armed = False

    # -- verdicts --------------------------------------------------------------------------------
    def finish(self, info: Optional[Callable[[int], dict]] = None) -> List[RuntimeFinding]:
        """Every finding of this optimizer, with totals over the whole run. Findings not emitted live
        (LR005, anything decided only now) are emitted here."""
        if info is not None:
            self.info = info
        self._merge_lr001()
        self._decide_lr002()
        out: List[RuntimeFinding] = []
        for note in self.notes:  # an explained exception; a finding seen before it says more
            if note.rule not in self.hits:
                out.append(note)
        out.extend(self.extra)
        for rule in _ORDER:
            f = self._build(rule)
            if f is None:
                continue
            out.append(f)
            if rule not in self.emitted:
                self.emitted[rule] = f
                if self.emit is not None:
                    self.emit(f)
        return out

    def _build(self, rule: str) -> Optional[RuntimeFinding]:
        builder = getattr(self, "_build_" + rule, None)
        return builder() if builder is not None else None

    def _build_LR001(self) -> Optional[RuntimeFinding]:
        h = self.hits.get("LR001")
        if h is None:
            return None
        s = self.sched_name(h["sid"])
        times = "" if h["k"] == 1 else f" {h['k']} times"
        return RuntimeFinding(
            "LR001",
            f"{s}.step() ran{times} before the first step of {self.name}, so optimizer step 0 "
            "(all param groups) already used the schedule's second value: the whole schedule is shifted "
            f"by one step. Call {s}.step() after optimizer.step(), not before.",
            0, 0, self.name)

    def _build_LR013(self) -> Optional[RuntimeFinding]:
        h = self.hits.get("LR013")
        if h is None:
            return None
        name = self.name
        s = self.sched_name(h["sid"])
        if h["skips"]:
            when = ("before the first applied update" if h["first"]
                    else f"between optimizer steps {h['step'] - 1} and {h['step']}")
            msg = (f"{s}.step() ran {h['k']} time(s) {when} of {name} while GradScaler skipped "
                   f"{h['skips']} optimizer step(s) for inf/NaN gradients (all param groups): the schedule "
                   f"runs ahead of the updates actually applied ({self.nskips} skipped in total). Step "
                   "the scheduler only when the optimizer step was applied (e.g. compare "
                   "scaler.get_scale() before and after scaler.update()).")
        else:
            if h.get("before_first"):
                when = (f"between two optimizer steps of {name}, and {h['before_first']} time(s) before "
                        "its first step")
            elif h["first"]:
                when = f"before the first step of {name}"
            else:
                when = f"between optimizer steps {h['step'] - 1} and {h['step']} of {name}"
            # before the first update the count says how far ahead the schedule already is, not its
            # rate (a loop stepping it every micro-batch of 4 steps it 3 times before the first update)
            rate = ("the schedule runs ahead of training" if h["first"] and not h.get("before_first")
                    else f"the schedule advances {h['k']}x faster than training")
            msg = (f"{s}.step() ran {h['k']} times {when} (all param groups): {rate}, as when "
                   "scheduler.step() runs every micro-batch under gradient accumulation. Step the "
                   "scheduler once per optimizer step (inside the accumulation condition).")
        return RuntimeFinding("LR013", msg, h["step"], 0, name)

    def _build_LR002(self) -> Optional[RuntimeFinding]:
        if self.lr002 is None:
            return None
        w, names = self.lr002
        g = w.groups[0]
        if self.lr002_warmup is not None and self.last_write is not None:
            s = self.sched_name(self.lr002_warmup)
            last = self.last_write
            return RuntimeFinding(
                "LR002",
                f"manual warm-up written over {s} into the param groups of {self.name}: {self.n_writes} "
                f"changes outside any scheduler step, from before optimizer step {w.step} ({_where(w)}) to "
                f"before step {last.step}, ramping to the scheduler's own value (the last write left "
                f"{fmt_list(self.reach_vals or ())}, the LRs {s} had set, and {s} alone wrote them from its "
                f"next step on): {lr002_warmup_consequence(s)}.",
                w.step, g, self.name, LR002_WARMUP_LEVEL)
        more = f" {self.n_writes} such changes in total." if self.n_writes > 1 else ""
        return RuntimeFinding(
            "LR002",
            f"param_groups[{g}]['lr'] of {self.name} changed from {fmt(w.old[0])} to {fmt(w.new[0])} "
            f"outside any scheduler step, before optimizer step {w.step} ({_where(w)}); {names} "
            "also drives this optimizer, so two writers fight: a chainable scheduler compounds "
            "the manual value, a closed-form one overwrites it at its next step. Write the LR in "
            "one place: fold the manual change into the schedule (LambdaLR, SequentialLR) or "
            f"drop the scheduler.{more}",
            w.step, g, self.name)

    def _build_LR004(self) -> Optional[RuntimeFinding]:
        name = self.name
        if self.first_partial is not None:
            w = self.first_partial
            n = len(self.last or []) if self.last else None
            more = f" {self.n_partial} such changes in total." if self.n_partial > 1 else ""
            return RuntimeFinding(
                "LR004",
                f"only param group(s) {fmt_groups(w.groups)} of {name} changed LR "
                f"({fmt_list(w.old)} -> {fmt_list(w.new)}) before optimizer step {w.step}, outside any "
                f"scheduler ({_where(w)}); the other group(s) kept theirs{'' if n is None else f' ({n} groups)'}. "
                "Update every group (each scaled by its own factor), or let a scheduler move them "
                f"together.{more}",
                w.step, w.groups[0], name)
        if self.lr004_ratio is not None:
            w, old, new, keeper = self.lr004_ratio
            return RuntimeFinding(
                "LR004",
                f"one value ({fmt(new[0])}) was written into every param group of {name} outside any "
                f"scheduler before optimizer step {w.step} ({_where(w)}), so the ratios between groups "
                f"moved (to group 0: {fmt_list(_ratios(old))} -> {fmt_list(_ratios(new))}) although "
                f"{self.sched_name(keeper)}, which keeps those ratios, drives this optimizer. Scale each "
                "group's own LR instead of writing one value into every group.",
                w.step, w.groups[0], name)
        return None

    def _build_LR005(self) -> Optional[RuntimeFinding]:
        if "LR005" in self.emitted:
            return self.emitted["LR005"]
        # another scheduler of this optimizer that stepped after one was attached drove the LR meanwhile
        # (Lightning's lr_find swaps in its own): the run did not train at a constant LR, and the idle
        # one was most likely replaced, so it is not reported
        stepped = [st.last_idx for st in self.stats.values() if st.n_top and st.last_idx is not None]
        for sid, st in self.stats.items():
            i = self.info(sid)
            if i["parent"] is not None or st.n_top or i["stepped"] or i.get("not_due") or i.get("outside"):
                # not_due: the loop that steps it (Lightning's) never asked for a step; outside: it moved
                # between an earlier audit and this one, so it is stepped outside the audited blocks
                continue
            if st.attach_idx is not None and any(idx > st.attach_idx for idx in stepped):
                continue
            n = self.steps - st.attach_step
            if n >= LR005_MIN_STEPS:
                if i.get("loop_asked"):  # the training loop that owns it asked, and the step never ran
                    advice = (f"The training loop that steps it (Lightning's lr_scheduler_step) asked for its "
                              f"step, which never ran: an lr_scheduler_step override must call "
                              f"{i['name']}.step().")
                else:
                    advice = (f"Call {i['name']}.step() (per batch or per epoch, as it is sized), or hand it to "
                              "whatever steps it (Trainer, accelerate.prepare, Lightning's configure_optimizers).")
                    if i.get("predates"):  # the step may follow the audited block: it cannot see it
                        advice += (" If it is stepped after the audited block (one audit per epoch), the audit "
                                   "cannot see that step: step it inside the block, or audit the whole loop.")
                return RuntimeFinding(
                    "LR005",
                    f"{i['name']} drives {self.name} but was never stepped while the optimizer took {n} steps "
                    f"(from step {st.attach_step}, all param groups): the run trained at a constant LR. {advice}",
                    st.attach_step, 0, self.name)
        return None

    def _build_LR006(self) -> Optional[RuntimeFinding]:
        h = self.hits.get("LR006")
        if h is None:
            return None
        name = self.name
        n = self.counts["LR006"]
        if h["kind"] == "scheduler":
            cls = self.sched_name(h["sid"])
            times = f" ({n} re-creations)" if n > 1 else ""
            msg = (f"a new {cls} was built on {name} before optimizer step {h['step']} while a previous "
                   f"{cls} had already stepped it and had not reached its end{times}: the schedule restarts "
                   "from its beginning (all param groups). Build the scheduler once, before the training "
                   "loop.")
        else:
            msg = (f"a new {h['cls']} was built over the same parameters as {name} after {h['step']} "
                   f"optimizer steps, with the weights carried on: momentum and moment estimates restart "
                   f"(all param groups), and {name} is not stepped any more. Build the optimizer once, "
                   "before the training loop.")
        return RuntimeFinding("LR006", msg, h["step"], 0, name)

    def _build_LR009(self) -> Optional[RuntimeFinding]:
        h = self.hits.get("LR009")
        if h is None:
            return None
        n = self.counts["LR009"]
        more = f" {n} steps used such LRs." if n > 1 else ""
        v = "" if h["value"] is None else f", group 0 lr={fmt(h['value'])}"
        return RuntimeFinding(
            "LR009",
            f"optimizer step {h['step']} of {self.name} used an LR computed past the schedule's end ({h['why']}"
            f"{v}). Size the schedule in the unit it is stepped in (total optimizer steps when stepped "
            f"per batch), or stop stepping after its end.{more}",
            h["step"], h["group"], self.name)

    def _build_LR011(self) -> Optional[RuntimeFinding]:
        if self.lr011 is None:
            return None
        sa, sb, stepb = self.lr011
        return RuntimeFinding(
            "LR011",
            f"{self.sched_name(sa)} and {self.sched_name(sb)} both step {self.name} independently "
            f"(interleaved from optimizer step {stepb}, all param groups): each writes the LR from its own "
            "state, so one overwrites or compounds the other. Compose them with SequentialLR (one after "
            "the other) or ChainedScheduler (both at once) and step only that.",
            stepb, 0, self.name)

    def _build_LR014(self) -> Optional[RuntimeFinding]:
        h = self.hits.get("LR014")
        if h is None:
            return None
        v = h["value"]
        kind = "a NaN" if v != v else ("an infinite" if v == INF else "a negative")
        effect = ("ascends the loss" if kind == "a negative" else "destroys the weights at the first update")
        n = self.counts["LR014"]
        more = f" ({n} observations of invalid LRs)" if n > 1 else ""
        return RuntimeFinding(
            "LR014",
            f"param group {h['group']} of {self.name} used {kind} LR ({fmt(v)}) at optimizer step {h['step']}"
            f"{more}: it {effect}. Check the schedule's formula and its inputs (a division by zero, a "
            "negative factor, a warm-up of length 0).",
            h["step"], h["group"], self.name)


def _count(kv):
    return kv[1]


_ORDER = ("LR001", "LR013", "LR002", "LR004", "LR005", "LR006", "LR009", "LR011", "LR014")


def _clamp_like(old: list, new: list, changed: list, n: int) -> bool:
    """A write to every group that left some at a bound: the changed groups all moved the same way, and
    every unchanged group already sits at or beyond all of their new values in that direction
    (``g["lr"] = max(g["lr"] * 0.5, min_lr)`` with one group at its floor). The values alone cannot tell
    it from a write to some groups only; the write is judged by what it could have been, and silence
    wins the tie."""
    if not changed:
        return False
    down = all(new[j] < old[j] for j in changed)
    up = all(new[j] > old[j] for j in changed)
    if not (down or up):
        return False
    moved = [new[j] for j in changed]
    bound = min(moved) if down else max(moved)
    ch = set(changed)
    for j in range(n):
        if j in ch:
            continue
        if down and not new[j] <= bound:
            return False
        if up and not new[j] >= bound:
            return False
    return True


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= _RATIO_RTOL * max(abs(a), abs(b))


def _same_lrs(a: list, b: list) -> bool:
    """Every group's LR the same in both readings (within the ratio tolerance)."""
    return len(a) == len(b) and all(map(_close, a, b))


def _moves_nothing(info: dict) -> bool:
    """A step before the first update that shifts no schedule: ReduceLROnPlateau's, or one from a
    last_epoch set by hand."""
    return bool(info.get("plateau") or info.get("repositioned"))


def _one_value(vals: list, n: int) -> bool:
    """Every group holds the same LR (within the ratio tolerance)."""
    v = vals[0]
    return all(_close(vals[j], v) for j in range(1, n))


def _ratios_changed(old: list, new: list, n: int) -> bool:
    if old[0] == 0 or new[0] == 0:
        return False
    for j in range(1, n):
        if old[j] == 0:
            return False
        r_old = old[j] / old[0]
        r_new = new[j] / new[0]
        if abs(r_old - r_new) > _RATIO_RTOL * abs(r_old):
            return True
    return False


def _ratios(vals: list) -> list:
    return [v / vals[0] for v in vals] if vals and vals[0] else list(vals)


def fmt_groups(groups) -> str:
    return ", ".join(str(g) for g in groups)


def _where(w: Write) -> str:
    at = w.at
    if at == AT_PRE:
        base = "seen at the next optimizer.step() call"
    elif at == AT_POST:
        base = "written inside the optimizer step's closure"
    elif at == AT_LOAD:
        base = "seen before optimizer.load_state_dict()"
    elif at.startswith(AT_SCHED + ":"):
        base = f"seen when {at.split(':', 1)[1]}.step() was called"
    else:
        base = at
    return f"{base}, {w.where}" if w.where else base
