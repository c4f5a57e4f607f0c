"""``expect=``: the trajectory an audit is compared with (LR015).

Accepted forms:
- a callable ``step -> lr`` (the same LR for every group) or ``step -> [lr per group]``;
- a sequence, one entry per optimizer step: an LR (every group) or a list (one per group);
- ``"scheduler"``: what the scheduler attached to the optimizer alone would produce, stepped where it
  was really stepped (per batch, per epoch, or on any cadence): a shadow copy (a copy of the scheduler
  driving a parameterless copy of the optimizer, never the real one) is replayed at the end of the audit
  with one step at each position the real scheduler stepped, so anything else that moved the LR (a
  manual write, a second scheduler, a warm-up written by hand) shows as LR015. The copy is taken when
  the audit starts (or the scheduler is built or first seen) and again after each
  ``load_state_dict`` of the optimizer or the scheduler (a resume re-anchors the expectation).
  Schedulers that step one after the other are phases (see ``ConclusionsMixin._phases``), each replayed
  from where it took over (:func:`simulate_phases`);
- ``"scheduler-per-step"``: what the scheduler alone would produce with exactly one scheduler step per
  optimizer step: this also checks the cadence (a per-epoch schedule, or one stepped every micro-batch,
  differs from it);
- a dict mapping an optimizer (object, index or series name) to one of the above.

Steps count from 0, the first optimizer step inside the audit.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from lraudit.runtime.checker import fmt
from lraudit.runtime.findings import LRAuditWarning, RuntimeFinding
from lraudit.runtime.series import close

SCHEDULER = "scheduler"
SCHEDULER_PER_STEP = "scheduler-per-step"
MODES = (SCHEDULER, SCHEDULER_PER_STEP)
_TABLE_ROWS = 5


def validate(expect: Any) -> Any:
    """Reject what can never be an expectation, early (at ``audit(...)``)."""
    if expect is None:
        return None
    if isinstance(expect, Mapping):
        for v in expect.values():
            validate(v)
        return expect
    if isinstance(expect, str):
        if expect not in MODES:
            raise ValueError(f"expect={expect!r}: the strings accepted are 'scheduler' (stepped where it "
                             "was stepped) and 'scheduler-per-step' (one step per optimizer step)")
        return expect
    if callable(expect) or isinstance(expect, Sequence) or (
            hasattr(expect, "__len__") and hasattr(expect, "__getitem__")):
        return expect
    raise TypeError(
        "expect= takes a callable step -> lr (or -> list per group), a sequence of LRs, 'scheduler', "
        f"or a dict of those per optimizer; got {type(expect).__name__}")


def _row(value: Any, n_groups: int, where: str) -> List[Optional[float]]:
    if isinstance(value, (list, tuple)):
        if len(value) != n_groups:
            raise ValueError(f"{where} gave {len(value)} LRs for {n_groups} param groups")
        return [None if v is None else float(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):
        return _row(value.tolist(), n_groups, where)
    return [float(value)] * n_groups


def expected_rows(spec: Any, n_steps: int, n_groups: int) -> Tuple[List[Optional[list]], Optional[int]]:
    """``(rows, length)``: one expected row per recorded step (None: no expectation at that step);
    ``length`` is the sequence's length when it differs from the number of steps, else None."""
    rows: List[Optional[list]] = []
    if callable(spec):
        for s in range(n_steps):
            rows.append(_row(spec(s), n_groups, f"expect({s})"))
        return rows, None
    seq = list(spec)
    for s in range(n_steps):
        rows.append(_row(seq[s], n_groups, f"expect[{s}]") if s < len(seq) else None)
    return rows, (len(seq) if len(seq) != n_steps else None)


def wants(expect: Any, mode: Optional[str]) -> bool:
    """Whether ``expect`` (or one of its per-optimizer entries) asks for ``mode`` (None: either mode)."""
    values = list(expect.values()) if isinstance(expect, Mapping) else [expect]
    return any(isinstance(v, str) and (mode is None or v == mode) for v in values)


class Phase(NamedTuple):
    """One scheduler's part of an ``expect='scheduler'`` replay.

    ``anchors``: its copies ``(step, scheduler steps before, (shadow scheduler, shadow optimizer), lazy,
    event index)`` in the order they were taken, each replayed until the next; ``positions``: for each of
    its real steps in order, how many updates preceded it (recorded for ``'scheduler'`` only);
    ``start``: the update from which it drives the LR (None: from its first anchor); ``handoff``: it was
    built before the phase before it ended, so its first copy starts from the LRs that phase left (as
    the real scheduler read the real group's LR); ``last``: the position of its last real step.
    """
    anchors: List[tuple]
    positions: Any
    start: Optional[int] = None
    handoff: bool = False
    last: Optional[int] = None


def simulate_phases(phases: List[Phase], n_steps: int,
                    per_step: bool) -> Tuple[List[Optional[list]], Optional[str]]:
    """Expected rows (one per optimizer step, None where there is no expectation) replayed phase by
    phase: each scheduler from each of its anchors until the next anchor or the next phase's start.

    A step at position p comes before optimizer step p. ``per_step``: one scheduler step between two
    optimizer steps instead. A lazy anchor was taken as the scheduler's first step began: it holds the LR
    of the update before. A phase whose replay raises (OneCycleLR past its total) has no expectation
    from there; a later phase built after it still has its own, one that starts from its LRs has none.
    """
    from lraudit.runtime.patches import suppressed

    rows: List[Optional[list]] = [None] * n_steps
    segments = []  # (phase, from, to, anchor, handoff, first of a later phase)
    for k, ph in enumerate(phases):
        end = min(phases[k + 1].start, n_steps) if k + 1 < len(phases) else n_steps
        chosen = sorted(ph.anchors, key=lambda a: a[0])
        if ph.start is not None:  # the anchor in force at its start, then the later ones
            chosen = [a for a in chosen if a[0] <= ph.start][-1:] + [a for a in chosen if a[0] > ph.start]
        chosen = [a for j, a in enumerate(chosen) if j == 0 or a[0] < end]
        for j, a in enumerate(chosen):
            later_first = j == 0 and ph.start is not None
            from_t = ph.start if later_first else a[0]
            to_t = chosen[j + 1][0] if j + 1 < len(chosen) else end
            segments.append((k, from_t, min(to_t, end), a, later_first and ph.handoff, later_first))
    stopped = None
    broken = -1  # the last phase that has no expectation left
    prev = None  # the segment before: (shadow scheduler, shadow optimizer, positions left, the next, last)
    with suppressed(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, from_t, to_t, (at, before, (sched, opt), lazy, *_), handoff, later_first in segments:
            if k == broken or (handoff and prev is None):
                broken = k
                continue
            t = from_t
            try:
                if handoff:
                    _hand_over(prev, opt, from_t, per_step)
                if per_step:
                    start = from_t - 1 if (handoff or (lazy and from_t == at)) and from_t > 0 else from_t
                else:
                    start = from_t
                positions = phases[k].positions
                pos_iter = iter(positions)
                for _ in range(before):  # the real steps the anchor already contains
                    next(pos_iter, None)
                nxt = next(pos_iter, None)
                floor = from_t if later_first else 0  # rows before a later phase's start are not its
                for t in range(start, to_t):
                    if per_step:
                        if t > start:
                            sched.step()
                    else:
                        while nxt is not None and nxt <= t:
                            sched.step()
                            nxt = next(pos_iter, None)
                    if t >= floor:
                        rows[t] = [float(g["lr"]) for g in opt.param_groups]
                prev = (sched, opt, pos_iter, nxt, phases[k].last)
            except Exception as exc:  # OneCycleLR past its total: no expectation beyond, in this phase
                stopped = stopped or f"{type(sched).__name__} raised {type(exc).__name__} at step {t}: {exc}"
                broken, prev = k, None
    return rows, stopped


def _hand_over(prev: tuple, opt: Any, at: int, per_step: bool) -> None:
    """A later phase's scheduler, built before the one before it ended, starts from the LRs that one's
    replay left, as the real scheduler read the real group's LR at its first step. The previous
    scheduler's steps in the same gap came first (its last step preceded this one's first)."""
    psched, popt, piter, pnxt, plast = prev
    if per_step:  # one step per gap: the one it took in this gap, if its last real step was there
        if plast == at:
            psched.step()
    else:
        while pnxt is not None and pnxt <= at:
            psched.step()
            pnxt = next(piter, None)
    for g, pg in zip(opt.param_groups, popt.param_groups):
        g["lr"] = pg["lr"]


def compare(name: str, traj: Any, steps: int, rows: List[Optional[list]], rtol: float, atol: float,
            first: int = 0, length: Optional[int] = None, origin: str = "the expected trajectory",
            extra: str = "") -> Optional[RuntimeFinding]:
    """LR015 when the recorded LRs of ``traj`` differ from ``rows`` (rows[i] is for step first + i)."""
    bad = []  # (step, group, actual, expected)
    n_bad = 0
    n_groups = traj.n_groups()
    values = [traj.values(j) for j in range(n_groups)]
    starts = [traj.group_start(j) for j in range(n_groups)]
    for i, row in enumerate(rows):
        s = first + i
        if row is None or s >= steps:
            continue
        for j, e in enumerate(row):
            if e is None or j >= n_groups:
                continue
            k = s - starts[j]
            if k < 0 or k >= len(values[j]):
                continue
            a = values[j][k]
            if not close(a, e, rtol, atol):
                n_bad += 1
                if len(bad) < _TABLE_ROWS:
                    bad.append((s, j, a, e))
    if not bad and length is None:
        return None
    lines = []
    if bad:
        lines.append(
            f"the LR of {name} differs from {origin} at {n_bad} (step, group) pair(s) "
            f"(rtol={rtol:g}, atol={atol:g}); first divergences:")
        lines.append(f"  {'step':>6}  {'group':>5}  {'actual':>12}  {'expected':>12}")
        for s, j, a, e in bad:
            lines.append(f"  {s:>6}  {j:>5}  {fmt(a):>12}  {fmt(e):>12}")
    if length is not None:
        lines.append(f"{name} took {steps} optimizer steps but {origin} has {length}.")
    if extra:
        lines.append(extra)
    lines.append("Fix the schedule, or the expectation if the schedule is the intended one.")
    step, group = (bad[0][0], bad[0][1]) if bad else (min(steps, length or 0), 0)
    return RuntimeFinding("LR015", "\n".join(lines), step, group, name)


def warn(message: str) -> None:
    warnings.warn(message, LRAuditWarning, stacklevel=4)


SpecFor = Callable[[int, Any, str], Any]


def spec_for(expect: Any, index: int, opt: Any, name: str) -> Any:
    """The expectation that applies to one optimizer (``expect`` may be a dict per optimizer)."""
    if not isinstance(expect, Mapping):
        return expect
    for key, spec in expect.items():
        if key is opt or key == name or (isinstance(key, int) and not isinstance(key, bool) and key == index):
            return spec
        inner = getattr(key, "optimizer", None) or getattr(key, "_optimizer", None)
        if inner is not None and inner is opt:
            return spec
    return None
