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

Only the steps every rank took are compared: under ``torch.distributed.algorithms.Join`` (uneven inputs)
a rank may take fewer steps, and the steps it did not take are no divergence. When the ranks took
different numbers of steps, :func:`compare_ranks` says so in a note (no finding).

Like any collective, it must be reached by every rank of the group: call ``stop()`` (leave the
``with`` block) on all ranks, before the process group is destroyed.
"""
from __future__ import annotations

import hashlib
import math
from typing import Dict, List, Optional, Sequence, Tuple

# Runs of equal values: [(lr, count), ...]. A million-step piecewise-constant series is a few pairs.
Runs = List[Tuple[float, int]]
SeriesKey = Tuple[str, str]  # (optimizer series name "lr-SGD", group name "pg1")

MAX_RANKS_LISTED = 8


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


def divergences(per_rank: List[List[Tuple[str, str, int, Runs]]]):
    """From every rank's summary: per optimizer, the first (step index, group) where ranks differ.

    Returns ``[(optimizer, group_name, group_index, step_index, {value: [ranks]})]``, one entry per
    optimizer whose series differ, ordered as rank 0 (then the others) recorded them.
    """
    keys: List[SeriesKey] = []
    index_of: Dict[SeriesKey, int] = {}
    tables: List[Dict[SeriesKey, Runs]] = []
    for summary in per_rank:
        table = {}
        for opt_name, group_name, k, runs in summary:
            key = (opt_name, group_name)
            table[key] = runs
            if key not in index_of:
                index_of[key] = k
                keys.append(key)
        tables.append(table)

    found: Dict[str, Tuple[int, int, SeriesKey]] = {}  # optimizer -> (step index, order, key)
    for order, key in enumerate(keys):
        present = [t.get(key) for t in tables]
        ref = next(r for r in present if r is not None)
        first = None
        for runs in present:
            d = 0 if runs is None else first_difference(ref, runs, common_only=True)
            if d is not None and (first is None or d < first):
                first = d
        if first is None:
            continue
        best = found.get(key[0])
        if best is None or (first, order) < best[:2]:
            found[key[0]] = (first, order, key)

    out = []
    for opt_name, (step_index, _order, key) in sorted(found.items(), key=lambda kv: kv[1][1]):
        by_value: Dict[str, Tuple[Optional[float], List[int]]] = {}
        for rank, table in enumerate(tables):
            runs = table.get(key)
            v = None if runs is None else value_at(runs, step_index)
            label = "missing" if runs is None else ("none" if v is None else float(v).hex())
            by_value.setdefault(label, (v, []))[1].append(rank)
        out.append((opt_name, key[1], index_of[key], step_index, list(by_value.values())))
    return out


def step_counts(per_rank) -> Dict[str, Dict[int, List[int]]]:
    """Per optimizer, the ranks grouped by the number of steps they recorded, when that differs."""
    counts: Dict[str, Dict[int, List[int]]] = {}
    for rank, summary in enumerate(per_rank):
        seen = set()
        for opt_name, _group, _k, runs in summary:
            if opt_name in seen:
                continue
            seen.add(opt_name)
            counts.setdefault(opt_name, {}).setdefault(_length(runs), []).append(rank)
    return {o: c for o, c in counts.items() if len(c) > 1}


def step_count_note(per_rank) -> Optional[str]:
    parts = []
    for opt_name, by_count in step_counts(per_rank).items():
        text = "; ".join(f"{_ranks_text(ranks)} took {n}" for n, ranks in sorted(by_count.items()))
        parts.append(f"{opt_name}: {text}")
    if not parts:
        return None
    return ("lraudit: the ranks took different numbers of optimizer steps (uneven inputs, e.g. under "
            "torch.distributed.algorithms.Join), so LR016 compared only the steps every rank took: "
            + " | ".join(parts))


def _message(name: str, step: int, values) -> str:
    used = "; ".join(
        f"{_ranks_text(ranks)} took no step" if v is None else f"{_ranks_text(ranks)} used {v:.6g}"
        for v, ranks in values
    )
    return (
        f"the LR of {name} differs across distributed ranks from optimizer step {step} on: {used}. "
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
    per_rank = exchange(summary, world, group)  # only when ranks differ: every rank sees it

    from lraudit.runtime import RuntimeFinding

    note = step_count_note(per_rank)
    if note is not None:
        import warnings

        from lraudit.runtime.findings import LRAuditNote

        warnings.warn(note, LRAuditNote, stacklevel=3)

    findings = []
    from lraudit.runtime.series import series_name

    n_groups: Dict[str, int] = {}
    for opt_name, *_ in summary:
        n_groups[opt_name] = n_groups.get(opt_name, 0) + 1
    for opt_name, group_name, group_index, step_index, values in divergences(per_rank):
        step = step_index  # like every runtime finding: the 0-based index of the optimizer step
        name = series_name(opt_name, group_name, group_index, n_groups.get(opt_name, 2))
        findings.append(
            RuntimeFinding(
                rule="LR016",
                message=_message(name, step, values),
                step=step,
                group=group_index,
                optimizer=opt_name,
            )
        )
    return findings
