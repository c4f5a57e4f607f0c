"""The compressed trajectory against a plain list of rows: every operation sequence reads back the same.

Rows of a smooth schedule wait in a block and are compressed a column at a time; these tests drive that
path (a block of 3 rows, so that settling happens often) through appends, repeats, pops, new groups,
aliased groups that split inside a block, NaNs and reads in between.
"""
from __future__ import annotations

import math

import pytest

from lraudit.runtime.series import Trajectory

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.sampled_from([0.0, 0.1, 0.2, 0.5, 1e-3, float("nan"), 0.1 + 1e-12])


def _ops():
    row = st.lists(_VALUES, min_size=1, max_size=2).flatmap(
        lambda base: st.integers(0, 2).map(lambda extra: base + base[:1] * extra))  # twins: aliases
    return st.lists(st.one_of(
        st.tuples(st.just("append"), row, st.integers(1, 3)),
        st.tuples(st.just("smooth"), st.integers(1, 8), st.integers(1, 3)),
        # the steady lane's hand-over: several rows (a new one per update, or repeats) in one call
        st.tuples(st.just("rows"), st.lists(st.tuples(row, st.integers(1, 3)), min_size=0, max_size=8),
                  st.none()),
        st.tuples(st.just("smooth_rows"), st.integers(1, 8), st.integers(1, 3)),
        st.tuples(st.just("pop"), st.none(), st.none()),
        st.tuples(st.just("read"), st.none(), st.none()),
    ), max_size=40)


def _same(a, b):
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


class _Reference:
    """Rows as they were appended; a row may be wider than the ones before (a new group)."""

    def __init__(self):
        self.rows = []

    def column(self, j):
        return [r[j] for r in self.rows if len(r) > j]

    def start(self, j):
        return next(i for i, r in enumerate(self.rows) if len(r) > j)


def _check(t, ref):
    assert t.n == len(ref.rows)
    width = max((len(r) for r in ref.rows), default=0)
    assert t.n_groups() == width
    for j in range(width):
        assert _same(t.values(j), ref.column(j)), j
        assert t.group_start(j) == ref.start(j)
        assert _same(t.tail(j, 4), ref.column(j)[-4:])
        expanded = [v for v, k in t.runs(j) for _ in range(k)]
        assert _same(expanded, ref.column(j))


@settings(max_examples=300, deadline=None)
@given(_ops())
def test_trajectory_reads_back_what_was_appended(monkeypatch_block, ops):
    t, ref = Trajectory(), _Reference()
    width = 1
    for op, arg, count in ops:
        if op == "append":
            # rows never get narrower: a new group is added, none is removed
            row = list(arg) + [0.3] * max(width - len(arg), 0)
            width = len(row)
            t.append(list(row), count)
            ref.rows.extend([row] * count)
        elif op == "rows":
            rows, counts = [], []
            for r, c in arg:
                row = list(r) + [0.3] * max(width - len(r), 0)
                width = len(row)
                rows.append(row)
                counts.append(c)
                ref.rows.extend([row] * c)
            t.append_rows([list(r) for r in rows], counts)
        elif op in ("smooth", "smooth_rows"):
            # a new LR at every step, groups in a fixed ratio (a decay / no-decay split)
            rows = []
            for i in range(arg):
                v = 0.01 * (len(ref.rows) + i + 1)
                rows.append([v * (0.5 if j % count == 1 else 1.0) for j in range(width)])
            ref.rows.extend(rows)
            if op == "smooth":
                for row in rows:
                    t.append(list(row))
            else:
                t.append_rows([list(r) for r in rows], [1] * len(rows))
        elif op == "pop":
            t.pop()
            if ref.rows:
                ref.rows.pop()
                # a group whose only values were popped has no value left
                width = max([len(r) for r in ref.rows] + [1])
        else:
            _check(t, ref)
    _check(t, ref)


@pytest.fixture(scope="module")
def monkeypatch_block():
    old = Trajectory.BLOCK
    Trajectory.BLOCK = 3
    yield
    Trajectory.BLOCK = old


def test_smooth_schedule_is_stored_once_per_step_and_group():
    t = Trajectory()
    n = 10_000
    for i in range(n):
        v = 0.1 * (1 - i / n)
        t.append([v, v, v * 0.1])  # groups 0 and 1 identical: one series between them
    assert t.values(0) == [0.1 * (1 - i / n) for i in range(n)]
    assert t.values(1) == t.values(0)
    assert t.values(2)[-1] == pytest.approx(0.1 * (1 - (n - 1) / n) * 0.1)
    assert t.groups[1].alias == 0
    # two stored series of n floats each, nothing per row beyond that
    assert 2 * 8 * n < t.nbytes() < 2 * 8 * n * 1.2
