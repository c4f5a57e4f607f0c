"""The compressed storage and the version 2 encoding, property-tested: whatever rows the hooks feed
(repeats, NaN, skipped updates that pop a row, groups added late), the file reads back as the plain
list of rows, and the tail the callbacks log equals the end of that list. Torch-free."""
import math

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lraudit.runtime.run import OptimizerSeries, Run  # noqa: E402
from lraudit.runtime.series import Trajectory  # noqa: E402
from lraudit.runtime.trajectory_file import read  # noqa: E402

VALUES = st.sampled_from([0.1, 0.05, 0.0, 1e-8, 3.0, math.nan, math.inf])
OPS = st.lists(st.tuples(st.sampled_from(["append", "append", "append", "pop", "replace", "grow"]),
                         st.lists(VALUES, min_size=1, max_size=3)), max_size=60)


def same(a, b):
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def replay(ops):
    """Feed a Trajectory and a plain list of rows the same operations."""
    traj, rows, width = Trajectory(), [], 1
    for op, vals in ops:
        if op == "grow":
            width = min(width + 1, 4)
            continue
        row = [vals[j % len(vals)] for j in range(width)]
        if op == "append" or (op == "replace" and not rows):
            traj.append(row)
            rows.append(row)
        elif op == "pop" and rows:
            traj.pop()
            rows.pop()
        elif op == "replace":
            traj.replace_last(row)
            rows[-1] = row
    return traj, rows


@settings(max_examples=300, deadline=None)
@given(OPS)
# found by this test: a group whose only rows were popped (its first update skipped) kept its start
@example([("append", [0.1]), ("grow", [0.1]), ("append", [0.1]), ("append", [0.05]), ("pop", [0.1]),
          ("pop", [0.1]), ("replace", [0.1]), ("append", [0.1])])
def test_file_reads_back_as_the_rows_fed(ops):
    traj, rows = replay(ops)
    run = Run()
    n_groups = traj.n_groups()
    run._freeze([OptimizerSeries("lr-SGD", "SGD", [f"pg{j + 1}" for j in range(n_groups)], traj, len(rows))], [])
    [opt] = read(run.to_dict()).optimizers
    assert opt.steps == len(rows) and len(opt.groups) == n_groups
    for j, g in enumerate(opt.groups):
        expected = [r[j] for r in rows if j < len(r)]
        assert g.start == len(rows) - len(expected)
        assert same(g.lr, expected), (j, g.lr, expected)
        for k in range(len(expected) + 2):  # the tail SeriesLog reads
            assert same(traj.tail(j, k), expected[max(len(expected) - k, 0):])
