"""LR016: under ``torch.distributed``, the ranks compare their LR trajectories once, at the end of the audit.

Each rank records its own trajectory during training with no communication at all. At stop the core
calls :func:`compare_ranks`, which costs one small exchange (a digest of every series); only when the
digests differ does a second exchange bring the run-length compressed series to every rank, so that
each rank can name the first step and group where the ranks parted.

The exchanges go through the default group's key-value store (the rendezvous store), not through a
gloo/NCCL collective: an ``all_gather`` leaves an asynchronous work object in the backend's worker
thread, whose destructor takes the GIL; destroyed when the script releases its DDP model, the process
group's destructor then waits, holding the GIL, for that thread (a hang at exit in about half of the
torchrun runs, or ``terminate called without an active exception`` at interpreter exit). Groups other
than the default one use ``all_gather_object``. Every rank
computes the same findings, so ``strict=True`` raises on all ranks together instead of leaving some of
them waiting in a collective.

When every rank took the same number of steps, the series are compared step by step. Under
``torch.distributed.algorithms.Join`` (uneven inputs) a rank that has joined takes no step while the others
go on, so after the first Join block its updates no longer pair with the others' by index. What every
rank shares is the schedule: it visits the same LR values in the same order, a rank that took fewer
updates only holds each value for fewer of them (a per-epoch schedule: the same values; a per-step one:
a prefix of them). So with uneven step counts each rank's sequence of distinct consecutive LR values
(the run-length compressed series without its counts) is compared, and LR016 fires only when neither
rank's sequence is a prefix of the other's; a note says that the step counts differ. A rank that never
stepped an optimizer took 0 steps on it (the empty sequence is a prefix of every other).

The second exchange carries at most :data:`MAX_RUNS_EXCHANGED` runs per series (with each series' true
step count); the comparison then covers those runs, which is sound, and a note says the bound was hit.

Like any collective, it must be reached by every rank of the group: call ``stop()`` (leave the
``with`` block) on all ranks, before the process group is destroyed.
"""
from __future__ import annotations

import hashlib
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

# Runs of equal values: [(lr, count), ...]. A million-step piecewise-constant series is a few pairs.
Runs = List[Tuple[float, int]]
SeriesKey = Tuple[str, str]  # (optimizer series name "lr-SGD", group name "pg1")

MAX_RANKS_LISTED = 8
# Runs per series sent in the second exchange (through the rendezvous store): a per-step cosine over
# a million steps is a million runs; its first 65536 changes are enough to find where ranks part.
MAX_RUNS_EXCHANGED = 1 << 16


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compress(lrs: Sequence[float]) -> Runs:
    runs: Runs = []
    for v in lrs:
        v = float(v)
        if runs and _same(runs[-1][0], v):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return runs


def _length(runs: Runs) -> int:
    return sum(n for _, n in runs)


def value_at(runs: Runs, index: int) -> Optional[float]:
    for v, n in runs:
        if index < n:
            return v
        index -= n
    return None


def first_difference(a: Runs, b: Runs, common_only: bool = False) -> Optional[int]:
    """0-based index of the first step where two compressed series differ, or None. A series longer
    than the other differs where the shorter ends, unless ``common_only`` (only steps both took)."""
    i = j = 0
    pos = 0
    left_a = a[0][1] if a else 0
    left_b = b[0][1] if b else 0
    while i < len(a) and j < len(b):
        if not _same(a[i][0], b[j][0]):
            return pos
        take = min(left_a, left_b)
        pos += take
        left_a -= take
        left_b -= take
        if left_a == 0:
            i += 1
            left_a = a[i][1] if i < len(a) else 0
        if left_b == 0:
            j += 1
            left_b = b[j][1] if j < len(b) else 0
    if (i < len(a) or j < len(b)) and not common_only:
        return pos  # one rank took more steps than the other
    return None


def local_summary(run) -> List[Tuple[str, str, int, Runs]]:
    """(optimizer name, group name, group index, compressed LRs) of every series this rank recorded."""
    out = []
    index: Dict[str, int] = {}
    for opt_name, _cls, group_name, lrs in run.series():
        k = index.get(opt_name, 0)
        index[opt_name] = k + 1
        out.append((str(opt_name), str(group_name), k, compress(lrs)))
    return out


def _steps(entry) -> int:
    """Steps a summary entry covers: its 5th element when its runs were cut at the bound."""
    return entry[4] if len(entry) > 4 else _length(entry[3])


def bounded(summary, limit: int = MAX_RUNS_EXCHANGED):
    """The summary to exchange: each series' runs cut to ``limit``, with its true step count kept."""
    return [e if len(e[3]) <= limit else (e[0], e[1], e[2], e[3][:limit], _steps(e)) for e in summary]


def bound_note(per_rank, limit: int = MAX_RUNS_EXCHANGED) -> Optional[str]:
    cut: Dict[str, List[int]] = {}
    for rank, summary in enumerate(per_rank):
        for e in summary:
            if _steps(e) > _length(e[3]):
                cut.setdefault(f"{e[0]}/{e[1]}", []).append(rank)
    if not cut:
        return None
    parts = "; ".join(f"{name} ({_ranks_text(ranks)})" for name, ranks in cut.items())
    return (f"lraudit: LR016 compared only the first {limit} LR changes of a series whose LR changed more "
            f"often than that (bound on what the ranks exchange): {parts}")


def digest(summary) -> str:
    h = hashlib.sha256()
    for opt_name, group_name, k, runs in summary:
        h.update(f"{opt_name}\0{group_name}\0{k}\0".encode())
        for v, n in runs:
            h.update(f"{float(v).hex()}*{n};".encode())
        h.update(b"\n")
    return h.hexdigest()


def _ranks_text(ranks: List[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    spans = []
    start = prev = ranks[0]
    for r in ranks[1:] + [None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if r is not None:
            start = prev = r
    text = ", ".join(spans[:MAX_RANKS_LISTED]) + (", ..." if len(spans) > MAX_RANKS_LISTED else "")
    return f"ranks {text}"


class Divergence(NamedTuple):
    """Where the ranks' series of one optimizer part (the earliest of its groups).

    ``values``: ``[(lr or None, [ranks])]``. Compared step by step (equal step counts): ``step`` is the
    0-based update index and ``run`` is None. Compared by LR sequence (uneven step counts): ``run`` is
    the 0-based index of the run of equal LRs where the sequences part, ``starts`` maps each listed rank
    to the update where that run starts on it, and ``step`` is the earliest of those.
    """

    optimizer: str
    group_name: str
    group_index: int
    step: int
    values: list
    run: Optional[int] = None
    starts: Optional[Dict[int, int]] = None


def _by_value(pairs) -> list:
    """``[(lr or None, [ranks])]`` from ``(rank, lr)`` pairs, in order of first appearance."""
    by_value: Dict[str, Tuple[Optional[float], List[int]]] = {}
    for rank, v in pairs:
        label = "none" if v is None else float(v).hex()
        by_value.setdefault(label, (v, []))[1].append(rank)
    return list(by_value.values())


def _index_parting(present: List[Optional[Runs]]) -> Optional[Tuple[int, list, None, None]]:
    """Equal step counts: the first update index where a rank's LR differs (a missing series: at 0)."""
    ref = next(r for r in present if r is not None)
    first = None
    for runs in present:
        d = 0 if runs is None else first_difference(ref, runs, common_only=True)
        if d is not None and (first is None or d < first):
            first = d
    if first is None:
        return None
    pairs = [(rank, None if runs is None else value_at(runs, first)) for rank, runs in enumerate(present)]
    return first, _by_value(pairs), None, None


def _sequence_parting(present: List[Optional[Runs]]):
    """Uneven step counts: where the ranks' sequences of run values stop being prefixes of one another.

    Every sequence must be a prefix of the longest one; the first run where one differs from it is
    where they part. A missing series (the rank has the optimizer but not this group) parts at run 0.
    """
    seqs = [None if runs is None else [v for v, _ in runs] for runs in present]
    longest = max((s for s in seqs if s is not None), key=len)
    first = None
    for s in seqs:
        if s is None:
            d: Optional[int] = 0
        else:
            d = next((i for i, (a, b) in enumerate(zip(s, longest)) if not _same(a, b)), None)
        if d is not None and (first is None or d < first):
            first = d
    if first is None:
        return None
    pairs, starts = [], {}
    for rank, (runs, s) in enumerate(zip(present, seqs)):
        if s is None:
            pairs.append((rank, None))
            starts[rank] = 0
        elif first < len(s):  # a rank whose shorter sequence ended before agrees with every other
            pairs.append((rank, s[first]))
            starts[rank] = sum(n for _, n in runs[:first])
    return min(starts.values()), _by_value(pairs), first, starts


def divergences(per_rank) -> List[Divergence]:
    """From every rank's summary: per optimizer, the earliest point where the ranks' series differ.

    One :class:`Divergence` per optimizer whose series differ, ordered as rank 0 (then the others)
    recorded them. A series whose ranks took the same number of steps is compared step by step; one
    whose ranks did not, by its sequence of LR values (see the module docstring).
    """
    keys: List[SeriesKey] = []
    index_of: Dict[SeriesKey, int] = {}
    tables: List[Dict[SeriesKey, tuple]] = []
    for summary in per_rank:
        table = {}
        for entry in summary:
            key = (entry[0], entry[1])
            table[key] = entry
            if key not in index_of:
                index_of[key] = entry[2]
                keys.append(key)
        tables.append(table)
    optimizers = [{key[0] for key in table} for table in tables]

    found: Dict[str, Tuple[int, int, Divergence]] = {}  # optimizer -> (step, order, divergence)
    for order, key in enumerate(keys):
        entries = [t.get(key) for t in tables]
        counts = {_steps(e) for e in entries if e is not None}
        # A rank that never stepped this optimizer took 0 steps on it (an empty series).
        present = [e[3] if e is not None else ([] if key[0] not in opts else None)
                   for e, opts in zip(entries, optimizers)]
        if len(counts) == 1 and all(e is not None for e in entries):
            parting = _index_parting(present)
        else:
            parting = _sequence_parting(present)
        if parting is None:
            continue
        step, values, run, starts = parting
        best = found.get(key[0])
        if best is None or (step, order) < best[:2]:
            found[key[0]] = (step, order, Divergence(key[0], key[1], index_of[key], step, values, run, starts))
    return [d for _step, _order, d in sorted(found.values(), key=lambda t: t[1])]


def step_counts(per_rank) -> Dict[str, Dict[int, List[int]]]:
    """Per optimizer, the ranks grouped by the number of steps they recorded, when that differs
    (a rank that never stepped an optimizer another rank stepped took 0 steps on it)."""
    names: List[str] = []
    per: List[Dict[str, int]] = []
    for summary in per_rank:
        mine: Dict[str, int] = {}
        for entry in summary:
            if entry[0] not in mine:
                mine[entry[0]] = _steps(entry)
                if entry[0] not in names:
                    names.append(entry[0])
        per.append(mine)
    counts: Dict[str, Dict[int, List[int]]] = {}
    for opt_name in names:
        for rank, mine in enumerate(per):
            counts.setdefault(opt_name, {}).setdefault(mine.get(opt_name, 0), []).append(rank)
    return {o: c for o, c in counts.items() if len(c) > 1}


def step_count_note(per_rank) -> Optional[str]:
    parts = []
    for opt_name, by_count in step_counts(per_rank).items():
        text = "; ".join(f"{_ranks_text(ranks)} took {n}" for n, ranks in sorted(by_count.items()))
        parts.append(f"{opt_name}: {text}")
    if not parts:
        return None
    return ("lraudit: the ranks took different numbers of optimizer steps (uneven inputs, e.g. under "
            "torch.distributed.algorithms.Join), so LR016 compared the sequence of LR values each rank "
            "went through, not the steps one by one: " + " | ".join(parts))


def _used(v, ranks, starts) -> str:
    if v is None:
        return f"{_ranks_text(ranks)} took no step" if starts is None else f"{_ranks_text(ranks)} has no such series"
    text = f"{_ranks_text(ranks)} used {v:.6g}"
    if starts is None:
        return text
    steps = sorted({starts[r] for r in ranks})
    shown = ", ".join(str(s) for s in steps[:MAX_RANKS_LISTED]) + (", ..." if len(steps) > MAX_RANKS_LISTED else "")
    return text + (f" from step {shown}" if len(steps) == 1 else f" from steps {shown}")


def _message(name: str, d: Divergence) -> str:
    used = "; ".join(_used(v, ranks, d.starts) for v, ranks in d.values)
    if d.run is None:
        where = f"from optimizer step {d.step} on: {used}"
    else:
        where = (f"(the ranks took different numbers of steps, and their sequences of LR values part at "
                 f"LR value {d.run + 1} of the schedule): {used}")
    return (
        f"the LR of {name} differs across distributed ranks {where}. "
        "Ranks that train with different LRs average gradients of different schedules; make every rank "
        "take the same LR decision (compute it identically or broadcast it from rank 0)."
    )


_EXCHANGES = [0]  # per process: every rank makes the same sequence of exchanges, so keys agree


def _default_store():
    try:
        from torch.distributed import distributed_c10d as c10d

        return c10d._get_default_store()
    except Exception:  # an older torch, or no store: fall back to the collective
        return None


def exchange(obj, world: int, group=None) -> list:
    """Every rank's ``obj``, in rank order (a collective: every rank of ``group`` must call it)."""
    import pickle

    import torch.distributed as dist

    store = _default_store() if group is None else None
    if store is None:
        out: List[Optional[object]] = [None] * world
        dist.all_gather_object(out, obj, group=group)
        return out
    _EXCHANGES[0] += 1
    key = f"lraudit/compare/{_EXCHANGES[0]}/"
    store.set(key + str(dist.get_rank()), pickle.dumps(obj))
    return [pickle.loads(store.get(key + str(r))) for r in range(world)]


def compare_ranks(run, group=None) -> list:
    """LR016 findings of ``run`` against the other ranks of ``group`` (default: the world).

    A collective: every rank of the group must call it. Returns ``[]`` when torch.distributed is not
    initialised or the group has a single rank.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return []
    world = dist.get_world_size(group)
    if world < 2:
        return []
    summary = local_summary(run)
    digests = exchange(digest(summary), world, group)
    if len(set(digests)) == 1:
        return []
    per_rank = exchange(bounded(summary), world, group)  # only when ranks differ: every rank sees it

    from lraudit.runtime import RuntimeFinding

    for note in (step_count_note(per_rank), bound_note(per_rank)):
        if note is not None:
            import warnings

            from lraudit.runtime.findings import LRAuditNote

            warnings.warn(note, LRAuditNote, stacklevel=3)

    findings = []
    from lraudit.runtime.series import series_name

    n_groups: Dict[str, int] = {}
    for opt_name, *_ in summary:
        n_groups[opt_name] = n_groups.get(opt_name, 0) + 1
    for d in divergences(per_rank):
        # like every runtime finding: the 0-based index of the optimizer step (the earliest rank's)
        name = series_name(d.optimizer, d.group_name, d.group_index, n_groups.get(d.optimizer, 2))
        findings.append(
            RuntimeFinding(
                rule="LR016",
                message=_message(name, d),
                step=d.step,
                group=d.group_index,
                optimizer=d.optimizer,
            )
        )
    return findings
