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
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

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


class SchedStats:
    __slots__ = ("attach_idx", "attach_step", "n_top", "first_idx", "last_idx", "first_step")

    def __init__(self, attach_idx: int, attach_step: int) -> None:
        self.attach_idx = attach_idx
        self.attach_step = attach_step
        self.n_top = 0  # independent (top-level) steps
        self.first_idx: Optional[int] = None
        self.last_idx: Optional[int] = None
        self.first_step: Optional[int] = None


class Write:
    __slots__ = ("idx", "step", "groups", "old", "new", "at", "where", "partial", "ratio")

    def __init__(self, idx, step, groups, old, new, at, where, partial, ratio):
        self.idx, self.step, self.groups, self.old, self.new = idx, step, groups, old, new
        self.at, self.where, self.partial, self.ratio = at, where, partial, ratio


class Checker:
    def __init__(self, name: str, sched_name: Callable[[int], str],
                 where: Optional[Callable[[str], Optional[str]]] = None, prior: bool = False) -> None:
        self.name = name  # series name, "lr-SGD"
        self.sched_name = sched_name  # sid -> "StepLR"
        self.where = where  # lazily locates the code around a manual write (live mode only)
        self.prior = prior  # the optimizer stepped before the audit started
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
        if vals != self.last:
            if self.last is not None:
                self._external(vals, AT_PRE)
            self.last = vals
        if vals != self.traj.last_row:
            self._check_valid(vals)
        self.traj.append(vals)
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
        if vals != self.traj.last_row:  # the update used the LR as it was after the closure
            self._check_valid(vals)
            self.traj.replace_last(vals)
            if self.past_end is not None:
                self._lr009(vals)
        self._applied()

    def sched_begin(self, vals: list, sid: int) -> None:
        self.idx += 1
        if vals != self.last:
            if self.last is not None:
                self._external(vals, AT_SCHED, sid)
            self.last = vals
        st = self._stat(sid)
        st.n_top += 1
        if st.first_idx is None:
            st.first_idx = self.idx
            st.first_step = self.steps
        st.last_idx = self.idx
        self.icount[sid] = self.icount.get(sid, 0) + 1

    def sched_end(self, vals: list, sid: int, past_end: Optional[str]) -> None:
        self.idx += 1
        self.last = vals
        self.past_end = (sid, past_end) if past_end else None

    def ctor(self, vals: list, sid: int, restart_of: Optional[int]) -> None:
        self.idx += 1
        self.last = vals
        self.past_end = None
        st = self._stat(sid)
        st.attach_idx = self.idx
        st.attach_step = self.steps
        if restart_of is not None:
            self._hit("LR006", step=self.steps, group=0, kind="scheduler", sid=sid)

    def attach(self, sid: int) -> None:
        """A scheduler that already drove this optimizer when the audit started."""
        self._stat(sid)

    def opt_ctor(self, cls_name: str) -> None:
        if self.steps or self.pending:
            self._hit("LR006", step=self.steps, group=0, kind="optimizer", cls=cls_name)

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

    def skip(self) -> None:
        self.iskips += 1
        self.nskips += 1

    def note(self, rule: str, message: str, group: Optional[int] = 0) -> None:
        """A finding explained from an exception a scheduler raised; ``{step}``/``{name}`` are filled in."""
        if not any(f.rule == rule for f in self.notes):
            text = message.format(step=self.steps, name=self.name)
            self.notes.append(RuntimeFinding(rule, text, self.steps, group, self.name))

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
            sid, k = max(ic.items(), key=lambda kv: kv[1])
            if self.steps == 0 and not self.prior:
                if self.iskips or k >= 2:
                    self._hit("LR013", step=0, group=0, sid=sid, k=k, skips=self.iskips, first=True)
                else:
                    self._hit("LR001", step=0, group=0, sid=sid, k=k)
            elif k >= 2 and not final:  # extra steps after the last update are never used
                self._hit("LR013", step=self.steps, group=0, sid=sid, k=k, skips=self.iskips, first=False)
            ic.clear()
        self.iskips = 0

    def _hit(self, rule: str, **details) -> None:
        self.counts[rule] = self.counts.get(rule, 0) + 1
        if rule not in self.hits:
            self.hits[rule] = details

    def _check_valid(self, vals: list) -> None:
        for j, v in enumerate(vals):
            if not (v >= 0.0) or v == INF:
                self._hit("LR014", step=self.steps, group=j, value=v)

    def _lr009(self, vals: list) -> None:
        sid, why = self.past_end  # type: ignore[misc]
        self._hit("LR009", step=self.steps, group=0, sid=sid, why=why, value=vals[0] if vals else None)

    def _external(self, vals: list, at: str, sid: Optional[int] = None) -> None:
        old = self.last
        assert old is not None
        n_old = len(old)
        n = min(n_old, len(vals))
        changed = [j for j in range(n) if not same(old[j], vals[j])]
        if not changed:
            return  # only new groups (add_param_group)
        self.past_end = None
        self.n_writes += 1
        partial = n_old >= 2 and len(changed) < n_old
        ratio = not partial and n >= 2 and _ratios_changed(old, vals, n)
        keep = len(self.writes) < _KEEP_WRITES or (partial and self.first_partial is None) or (
            ratio and len(self.ratio_writes) < _KEEP_WRITES)
        where = None
        if keep and self.where is not None:
            where = self.where(at if sid is None else f"{at}:{self.sched_name(sid)}")
        w = Write(self.idx, self.steps, changed, [old[j] for j in changed], [vals[j] for j in changed],
                  at if sid is None else f"{at}:{self.sched_name(sid)}", where, partial, ratio)
        if len(self.writes) < _KEEP_WRITES:
            self.writes.append(w)
        self.last_write = w
        if partial:
            self.n_partial += 1
            if self.first_partial is None:
                self.first_partial = w
        if ratio and len(self.ratio_writes) < _KEEP_WRITES:
            self.ratio_writes.append((w, list(old[:n]), list(vals[:n])))  # type: ignore[arg-type]

    # -- verdicts --------------------------------------------------------------------------------
    def finish(self, info: Callable[[int], dict]) -> List[RuntimeFinding]:
        """Findings of this optimizer; ``info(sid)`` gives ``{"name", "parent", "ratio_preserving"}``."""
        hits = dict(self.hits)
        out: List[RuntimeFinding] = []
        for note in self.notes:  # an explained exception; a finding seen before it says more
            if note.rule not in hits:
                out.append(note)
        add = out.append
        name = self.name

        def sched(sid):
            return info(sid)["name"]

        if "LR001" in hits and "LR013" in hits and hits["LR013"]["sid"] == hits["LR001"]["sid"]:
            # stepped before the first update *and* several times per update: the cause is the step
            # count (accumulation, skipped steps), reported once as LR013 from step 0
            h1 = hits.pop("LR001")
            h = hits["LR013"]
            h["before_first"] = h1["k"]
            h["step"] = 0
        if "LR001" in hits:
            h = hits["LR001"]
            times = "" if h["k"] == 1 else f" {h['k']} times"
            add(RuntimeFinding(
                "LR001",
                f"{sched(h['sid'])}.step() ran{times} before the first step of {name}, so optimizer step 0 "
                "(all param groups) already used the schedule's second value: the whole schedule is shifted "
                f"by one step. Call {sched(h['sid'])}.step() after optimizer.step(), not before.",
                0, 0, name))
        if "LR013" in hits:
            h = hits["LR013"]
            s = sched(h["sid"])
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
                msg = (f"{s}.step() ran {h['k']} times {when} (all param groups): the schedule advances "
                       f"{h['k']}x faster than training, as when scheduler.step() runs every micro-batch "
                       "under gradient accumulation. Step the scheduler once per optimizer step (inside the "
                       "accumulation condition).")
            add(RuntimeFinding("LR013", msg, h["step"], 0, name))

        drivers = {sid: st for sid, st in self.stats.items() if st.n_top > 0}

        # LR002: a manual write while a scheduler drives this optimizer
        if self.n_writes and drivers:
            candidates = self.writes + ([self.last_write] if self.last_write else [])
            for w in candidates:
                fighting = [sid for sid, st in drivers.items() if w.idx > st.attach_idx]
                if fighting:
                    names = ", ".join(sorted({sched(sid) for sid in fighting}))
                    g = w.groups[0]
                    more = f" {self.n_writes} such changes in total." if self.n_writes > 1 else ""
                    add(RuntimeFinding(
                        "LR002",
                        f"param_groups[{g}]['lr'] of {name} changed from {fmt(w.old[0])} to {fmt(w.new[0])} "
                        f"outside any scheduler step, before optimizer step {w.step} ({_where(w)}); {names} "
                        "also drives this optimizer, so two writers fight: a chainable scheduler compounds "
                        "the manual value, a closed-form one overwrites it at its next step. Write the LR in "
                        "one place: fold the manual change into the schedule (LambdaLR, SequentialLR) or "
                        f"drop the scheduler.{more}",
                        w.step, g, name))
                    break

        # LR004: a manual write that moved only some groups, or broke ratios a scheduler keeps
        if self.first_partial is not None:
            w = self.first_partial
            n = len(self.last or []) if self.last else None
            more = f" {self.n_partial} such changes in total." if self.n_partial > 1 else ""
            add(RuntimeFinding(
                "LR004",
                f"only param group(s) {fmt_groups(w.groups)} of {name} changed LR "
                f"({fmt_list(w.old)} -> {fmt_list(w.new)}) before optimizer step {w.step}, outside any "
                f"scheduler ({_where(w)}); the other group(s) kept theirs{'' if n is None else f' ({n} groups)'}. "
                "Update every group (each scaled by its own factor), or let a scheduler move them "
                f"together.{more}",
                w.step, w.groups[0], name))
        elif self.ratio_writes and drivers:
            for w, old, new in self.ratio_writes:  # type: ignore[misc]
                keepers = [sid for sid, st in drivers.items()
                           if w.idx > st.attach_idx and info(sid)["ratio_preserving"]]
                if keepers:
                    add(RuntimeFinding(
                        "LR004",
                        f"every param group of {name} changed LR outside any scheduler before optimizer step "
                        f"{w.step} ({_where(w)}), and the ratios between groups moved (to group 0: "
                        f"{fmt_list(_ratios(old))} -> {fmt_list(_ratios(new))}) although "
                        f"{sched(keepers[0])}, which keeps those ratios, drives this optimizer. Scale each "
                        "group's own LR instead of writing one value into every group.",
                        w.step, w.groups[0], name))
                    break

        # LR005: attached, never stepped, while the optimizer stepped
        for sid, st in self.stats.items():
            i = info(sid)
            if i["parent"] is not None or st.n_top or i["stepped"]:
                continue
            n = self.steps - st.attach_step
            if n >= LR005_MIN_STEPS:
                add(RuntimeFinding(
                    "LR005",
                    f"{i['name']} drives {name} but was never stepped while the optimizer took {n} steps "
                    f"(from step {st.attach_step}, all param groups): the run trained at a constant LR. Call "
                    f"{i['name']}.step() (per batch or per epoch, as it is sized), or hand it to whatever "
                    "steps it (Trainer, accelerate.prepare, Lightning's configure_optimizers).",
                    st.attach_step, 0, name))
                break

        if "LR006" in hits:
            h = hits["LR006"]
            n = self.counts["LR006"]
            if h["kind"] == "scheduler":
                cls = sched(h["sid"])
                times = f" ({n} re-creations)" if n > 1 else ""
                msg = (f"a new {cls} was built on {name} before optimizer step {h['step']} while a previous "
                       f"{cls} had already stepped it{times}: the schedule restarts from its beginning (all "
                       "param groups). Build the scheduler once, before the training loop.")
            else:
                msg = (f"a new {h['cls']} was built over the parameters of {name} after {h['step']} optimizer "
                       f"steps: momentum and moment estimates restart (all param groups), and {name} is not "
                       "stepped any more. Build the optimizer once, before the training loop.")
            add(RuntimeFinding("LR006", msg, h["step"], 0, name))

        if "LR009" in hits:
            h = hits["LR009"]
            n = self.counts["LR009"]
            more = f" {n} steps used such LRs." if n > 1 else ""
            v = "" if h["value"] is None else f", group 0 lr={fmt(h['value'])}"
            add(RuntimeFinding(
                "LR009",
                f"optimizer step {h['step']} of {name} used an LR computed past the schedule's end ({h['why']}"
                f"{v}). Size the schedule in the unit it is stepped in (total optimizer steps when stepped "
                f"per batch), or stop stepping after its end.{more}",
                h["step"], h["group"], name))

        # LR011: two independent schedulers interleave on this optimizer
        top = sorted(((st.first_idx, st.last_idx, sid, st.first_step) for sid, st in drivers.items()))
        done = False
        for a in range(len(top)):
            for b in range(a + 1, len(top)):
                fa, la, sa, _ = top[a]
                fb, lb, sb, stepb = top[b]
                if fb < la and not done:  # b started before a's last step: they interleave
                    add(RuntimeFinding(
                        "LR011",
                        f"{sched(sa)} and {sched(sb)} both step {name} independently (interleaved from "
                        f"optimizer step {stepb}, all param groups): each writes the LR from its own state, "
                        "so one overwrites or compounds the other. Compose them with SequentialLR (one after "
                        "the other) or ChainedScheduler (both at once) and step only that.",
                        stepb, 0, name))
                    done = True

        if "LR014" in hits:
            h = hits["LR014"]
            v = h["value"]
            kind = "a NaN" if v != v else ("an infinite" if v == INF else "a negative")
            effect = ("ascends the loss" if kind == "a negative" else "destroys the weights at the first update")
            n = self.counts["LR014"]
            more = f" ({n} observations of invalid LRs)" if n > 1 else ""
            add(RuntimeFinding(
                "LR014",
                f"param group {h['group']} of {name} used {kind} LR ({fmt(v)}) at optimizer step {h['step']}"
                f"{more}: it {effect}. Check the schedule's formula and its inputs (a division by zero, a "
                "negative factor, a warm-up of length 0).",
                h["step"], h["group"], name))
        return out


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
