"""Compressed storage of LR trajectories (pure Python, no torch).

A :class:`Series` keeps one param group's values as runs of equal values: a run of length one costs
one float (8 bytes), a longer run 24 bytes, whatever its length. A :class:`Trajectory` keeps the rows
(one value per param group) of one optimizer: identical consecutive rows are counted, not stored, and
a group whose values have so far been identical to an earlier group's stores nothing (the frequent
"decay / no-decay" split of one LR into two groups).
"""
from __future__ import annotations

import sys
from array import array
from operator import eq as _eq
from operator import itemgetter
from operator import sub as _sub
from typing import List, Optional, Sequence

_FIRST = itemgetter(0)


def same(a: float, b: float) -> bool:
    """Equality that also holds for two NaNs."""
    return a == b or (a != a and b != b)


class Series:
    """Run-length encoded float series: ``vals`` per run; ``rep_at``/``rep_len`` for runs longer than one."""

    __slots__ = ("vals", "rep_at", "rep_len", "n")

    def __init__(self) -> None:
        self.vals = array("d")
        self.rep_at = array("q")  # index into vals of each run longer than one
        self.rep_len = array("q")  # its length
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, value: float, count: int = 1) -> None:
        if count <= 0:
            return
        vals = self.vals
        if vals and same(vals[-1], value):
            last = len(vals) - 1
            if self.rep_at and self.rep_at[-1] == last:
                self.rep_len[-1] += count
            else:
                self.rep_at.append(last)
                self.rep_len.append(1 + count)
        else:
            vals.append(value)
            if count > 1:
                self.rep_at.append(len(vals) - 1)
                self.rep_len.append(count)
        self.n += count

    def extend(self, values: Sequence[float]) -> None:
        """Append each of ``values`` once: a column of a block of rows. Where no two neighbours are
        equal (a smooth schedule) the values are stored with one C-level copy."""
        if not values:
            return
        vals = self.vals
        if (vals and same(vals[-1], values[0])) or any(map(_eq, values[1:], values[:-1])):
            for v in values:
                self.append(v)
            return
        vals.extend(values)
        self.n += len(values)

    def pop(self) -> float:
        if not self.n:
            raise IndexError("pop from an empty Series")
        last = len(self.vals) - 1
        value = self.vals[last]
        if self.rep_at and self.rep_at[-1] == last:
            self.rep_len[-1] -= 1
            if self.rep_len[-1] == 1:
                self.rep_at.pop()
                self.rep_len.pop()
        else:
            self.vals.pop()
        self.n -= 1
        return value

    def last(self) -> float:
        return self.vals[-1]

    def tail(self, k: int) -> List[float]:
        """The last ``k`` values (fewer when shorter), walking runs from the end: O(k + runs crossed)."""
        out: List[float] = []
        i, r = len(self.vals) - 1, len(self.rep_at) - 1
        while k > 0 and i >= 0:
            if r >= 0 and self.rep_at[r] == i:
                length = self.rep_len[r]
                r -= 1
            else:
                length = 1
            take = min(length, k)
            out.extend([self.vals[i]] * take)
            k -= take
            i -= 1
        out.reverse()
        return out

    def copy(self) -> "Series":
        new = Series()
        new.vals = array("d", self.vals)
        new.rep_at = array("q", self.rep_at)
        new.rep_len = array("q", self.rep_len)
        new.n = self.n
        return new

    def runs(self):
        """Yield ``(value, length)`` pairs."""
        reps = dict(zip(self.rep_at, self.rep_len))
        for i, v in enumerate(self.vals):
            yield v, reps.get(i, 1)

    def to_list(self) -> List[float]:
        out: List[float] = []
        for v, k in self.runs():
            if k == 1:
                out.append(v)
            else:
                out.extend([v] * k)
        return out

    def nbytes(self) -> int:
        return sum(
            sys.getsizeof(a) for a in (self.vals, self.rep_at, self.rep_len)
        ) + sys.getsizeof(self)


class _Group:
    __slots__ = ("start", "series", "alias")

    def __init__(self, start: int, alias: Optional[int]) -> None:
        self.start = start  # index of the first row this group has a value in
        self.series: Optional[Series] = None if alias is not None else Series()
        self.alias = alias  # index of an earlier group with identical values so far


class Trajectory:
    """The rows of one optimizer: ``row[j]`` is the LR group j used at one optimizer step.

    Rows may grow (``add_param_group``): a new group starts at the row where it first appears.

    A schedule that changes the LR at every step (OneCycleLR, cosine, a warm-up lambda) gives a new row
    per step: such rows wait in a block and are compressed a column at a time (``zip``, ``array.extend``,
    C loops) instead of one Python loop per row and group at each optimizer step.
    """

    __slots__ = ("groups", "n", "_row", "_rep", "_flushed", "_block")

    BLOCK = 256  # single rows waiting to be compressed together

    def __init__(self) -> None:
        self.groups: List[_Group] = []
        self.n = 0  # rows recorded
        self._row: Optional[list] = None  # the last row, repeated _rep times, not yet in the series
        self._rep = 0
        self._flushed = 0  # rows written into the series
        self._block: List[list] = []  # rows (once each) before _row, not yet in the series

    # -- recording -------------------------------------------------------------------------------
    def append(self, row: list, count: int = 1) -> bool:
        """Add ``row`` ``count`` times; True when it differs from the last row (a new value to check)."""
        if count <= 0:
            return False
        self.n += count
        rep = self._rep
        if rep and row == self._row:
            self._rep = rep + count
            return False
        if rep == 1:
            block = self._block
            block.append(self._row)
            if len(block) >= self.BLOCK:
                self._settle()
        elif rep:
            self._flush()
        self._row = row
        self._rep = count
        return True

    def append_rows(self, rows: List[list], counts: List[int]) -> None:
        """``append(row, count)`` for each row and count of ``rows`` and ``counts`` (how the steady lane
        hands over its rows).

        A smooth schedule hands over a new row per update: rows that each differ from the one before,
        once each, join the block in one ``extend`` (the comparisons run in C) instead of one call each."""
        if not rows:
            return
        self.append(rows[0], counts[0])  # it may repeat the last row recorded
        k = len(rows) - 1
        if (k and counts[0] > 0 and self._rep and counts.count(1) - (counts[0] == 1) == k
                and not any(map(_eq, rows[1:], rows[:-1]))):
            # as append does for a row that differs from the last: the last goes to the block
            if self._rep == 1:
                self._block.append(self._row)
            else:
                self._flush()
            block = self._block
            block.extend(rows[1:k])
            self._row = rows[k]
            self._rep = 1
            self.n += k
            if len(block) >= self.BLOCK:
                self._settle()
            return
        append = self.append
        for i in range(1, k + 1):
            append(rows[i], counts[i])

    @property
    def last_row(self) -> Optional[list]:
        return self._row if self._rep else None

    def pop(self) -> None:
        """Forget the last row (an optimizer step whose update was skipped)."""
        if not self.n:
            return
        if self._rep:
            self._rep -= 1
        elif self._block:
            self._block.pop()
        else:  # only reached when the last row was already flushed
            for g in self.groups:
                if g.series is not None and g.start < self._flushed:
                    g.series.pop()
            self._flushed -= 1
            # a group that first appeared in the row just removed has no value left: it never took part
            while self.groups and self.groups[-1].start >= self._flushed:
                self.groups.pop()
        self.n -= 1

    def replace_last(self, row: list) -> None:
        self.pop()
        self.append(row)

    def _flush(self) -> None:
        """Write everything recorded into the series (the block, then the last row)."""
        self._settle()
        rep, row = self._rep, self._row
        if rep:
            self._write(row, rep)  # type: ignore[arg-type]
            self._rep = 0

    def _settle(self) -> None:
        """Compress the block of single rows into the series."""
        block = self._block
        if not block:
            return
        self._block = []
        if not self.groups:  # the first row makes the groups (and their aliases)
            self._write(block[0], 1)
            block = block[1:]
            if not block:
                return
        groups = self.groups
        n = len(groups)
        if n and set(map(len, block)) == {n}:  # every row has every group (a C loop: blocks are long)
            # one group (the usual case): a C map, much cheaper than zip(*block) with a thousand arguments
            cols = [tuple(map(_FIRST, block))] if n == 1 else list(zip(*block))
            # an aliased group that leaves its twin inside the block needs the row-by-row path
            if all(g.alias is None or cols[j] == cols[g.alias] for j, g in enumerate(groups)):
                for j, g in enumerate(groups):
                    if g.alias is None:
                        g.series.extend(cols[j])  # type: ignore[union-attr]
                self._flushed += len(block)
                return
        for r in block:
            self._write(r, 1)

    def _write(self, row: list, rep: int) -> None:
        """Write ``row`` ``rep`` times into the series."""
        groups = self.groups
        start = self._flushed
        # first split the aliases that leave their group (copying it before it gets this row)
        for j in range(min(len(row), len(groups))):
            g = groups[j]
            if g.alias is not None and not same(row[g.alias], row[j]):
                g.series = groups[g.alias].series.copy()  # type: ignore[union-attr]
                g.alias = None
        for j, v in enumerate(row):
            if j >= len(groups):
                alias = None
                for i in range(len(groups)):
                    gi = groups[i]
                    if gi.alias is None and gi.start == start and same(row[i], v):
                        alias = i
                        break
                groups.append(_Group(start, alias))
            g = groups[j]
            if g.alias is None:
                g.series.append(v, rep)  # type: ignore[union-attr]
        self._flushed += rep

    # -- reading ---------------------------------------------------------------------------------
    def n_groups(self) -> int:
        self._settle()
        pending = len(self._row) if self._rep and self._row is not None else 0
        return max(len(self.groups), pending)

    def group_start(self, j: int) -> int:
        self._settle()
        if j < len(self.groups):
            return self.groups[j].start
        return self._flushed

    def values(self, j: int) -> List[float]:
        self._settle()
        out: List[float] = []
        if j < len(self.groups):
            g = self.groups[j]
            src = g
            while src.alias is not None:
                src = self.groups[src.alias]
            out = src.series.to_list()  # type: ignore[union-attr]
        if self._rep and self._row is not None and j < len(self._row):
            out.extend([self._row[j]] * self._rep)
        return out

    def tail(self, j: int, k: int) -> List[float]:
        """The last ``k`` values of group ``j`` (fewer when it has fewer), without expanding the rest."""
        self._settle()
        pending = self._rep if self._row is not None and j < len(self._row) else 0
        head: List[float] = []
        if k > pending and j < len(self.groups):
            src = self.groups[j]
            while src.alias is not None:
                src = self.groups[src.alias]
            head = src.series.tail(k - pending)  # type: ignore[union-attr]
        return head + [self._row[j]] * min(k, pending) if pending else head  # type: ignore[index]

    def runs(self, j: int):
        """Yield ``(value, length)`` runs of group ``j`` from its first row, without expanding them."""
        self._settle()
        if j < len(self.groups):
            src = self.groups[j]
            while src.alias is not None:
                src = self.groups[src.alias]
            yield from src.series.runs()  # type: ignore[union-attr]
        if self._rep and self._row is not None and j < len(self._row):
            yield self._row[j], self._rep

    def nbytes(self) -> int:
        self._settle()
        total = sys.getsizeof(self) + sys.getsizeof(self.groups)
        for g in self.groups:
            total += sys.getsizeof(g)
            if g.series is not None:
                total += g.series.nbytes()
        return total


def series_name(optimizer: str, group: str, index: int, n_groups: int) -> str:
    """The name Lightning's LearningRateMonitor logs a param group's LR under.

    ``lr-SGD`` for the only group of an optimizer, ``lr-SGD/pg1``, ``lr-SGD/pg2`` for several, and the
    group's own ``name`` when it has one (``lr-SGD/head``, also for a single group). A group whose name
    is its default ``pgN`` counts as unnamed.
    """
    if n_groups == 1 and group == f"pg{index + 1}":
        return optimizer
    return f"{optimizer}/{group}"


_MOMENTUM = itemgetter("momentum")


class ParamRecord:
    """Momentum and betas of one optimizer's groups, read where a scheduler may change them.

    A reading taken when ``step`` updates were applied holds from update ``step`` on, until the next
    reading: schedulers that cycle momentum (OneCycleLR, CyclicLR) write it in their own ``step``, so
    readings at the audit's start, at scheduler constructions, after ``load_state_dict`` and after each
    step of such a scheduler give every update's value. Columns are ``(group, key)`` with key
    ``momentum`` (SGD, RMSprop) or ``beta1``/``beta2`` (Adam family); rows are compressed as the LRs are.
    """

    __slots__ = ("columns", "traj", "current", "changed", "_reported", "_index", "_plain")

    KEYS = ("momentum", "beta1", "beta2")

    def __init__(self) -> None:
        self.columns: List[tuple] = []  # (group index, key) of each value of a row
        self.traj = Trajectory()  # rows of the updates before the current reading
        self.current: Optional[list] = None  # the reading in force since traj.n
        self.changed = False  # some value differed from an earlier reading
        self._reported: set = set()
        self._index: dict = {}  # (group, key) -> column
        # (groups, key) when the columns are exactly that key of each of that many groups, in order
        self._plain: Optional[tuple] = None

    def read(self, param_groups) -> Optional[list]:
        """The row of the current values (floats), or None when one lives on an accelerator.

        A value that is missing or not a number in this reading keeps its previous value."""
        plain = self._plain
        if plain is not None and len(param_groups) == plain[0]:
            # a cycling scheduler makes this run at every step: the columns are every group's momentum,
            # or every group's two betas, read without building (group, key) pairs
            try:
                if plain[1] == "momentum":
                    row = list(map(_MOMENTUM, param_groups))
                else:
                    row = [b for g in param_groups for b in g["betas"]]
                if len(row) == len(self.columns):
                    for v in row:
                        if type(v) is not float:
                            break
                    else:
                        return row
            except (KeyError, TypeError):
                pass
        row = self._read(param_groups)
        if row is not None and self._plain is None:
            self._plain = self._plain_layout(len(param_groups))
        return row

    def _plain_layout(self, n: int) -> Optional[tuple]:
        if self.columns == [(j, "momentum") for j in range(n)]:
            return (n, "momentum")
        if self.columns == [(j, k) for j in range(n) for k in ("beta1", "beta2")]:
            return (n, "betas")
        return None

    def _read(self, param_groups) -> Optional[list]:
        found = []
        for j, g in enumerate(param_groups):
            m = g.get("momentum")
            betas = g.get("betas")
            if m is not None:
                pairs: tuple = (("momentum", m),)
            elif isinstance(betas, (tuple, list)) and len(betas) == 2:
                pairs = (("beta1", betas[0]), ("beta2", betas[1]))
            else:
                continue
            for key, v in pairs:
                if type(v) is not float:
                    if isinstance(v, (bool, str)):  # a flag of some other optimizer, not a value
                        continue
                    if getattr(getattr(v, "device", None), "type", "cpu") != "cpu":
                        return None  # reading it would synchronise the device
                    try:
                        v = float(v)
                    except (TypeError, ValueError):
                        continue
                found.append((j, key, v))
        row = list(self.current) if self.current is not None else []
        for j, key, v in found:
            c = self._index.get((j, key))
            if c is None:
                c = self._index[(j, key)] = len(self.columns)
                self.columns.append((j, key))
            while len(row) <= c:  # a column new in this reading
                row.append(v)
                self._plain = None
            row[c] = v
        return row

    def at(self, step: int, row: list) -> List[tuple]:
        """Record ``row`` as in force from update ``step``; returns ``(group, key, value)`` newly out of [0, 1)."""
        self.record([step], [row])
        for v in row:
            if not 0.0 <= v < 1.0:
                break
        else:
            return []
        bad = []
        for c, v in enumerate(row):
            if not 0.0 <= v < 1.0 and c not in self._reported:
                self._reported.add(c)
                j, key = self.columns[c]
                bad.append((j, key, v))
        return bad

    def record(self, steps: List[int], rows: List[list]) -> None:
        """Record each row of ``rows`` as in force from the update of ``steps`` at the same place, in order,
        without looking at the values' range (``at`` does; the steady lane checked its rows)."""
        if not rows:
            return
        traj = self.traj
        n = traj.n
        cur = self.current
        before = [cur] + rows[:-1]  # the reading each one follows (None: the first of all)
        if not self.changed:
            for row, prev in zip(rows, before):
                if prev is not None and row != prev and any(not same(a, b) for a, b in zip(row, prev)):
                    self.changed = True
                    break
        self.current = rows[-1]
        if cur is not None:
            # the steady lane's hand-over (a reading per cycling scheduler step): each reading held from
            # its step until the next one's, computed a list at a time
            gaps = list(map(_sub, steps, [n] + steps[:-1]))
            if min(gaps) > 0:
                traj.append_rows(before, gaps)
                return
        held, gaps = [], []  # rows and the updates each held for, handed to the trajectory in one call
        for step, row in zip(steps, rows):
            if cur is not None:
                gap = step - n
                if gap > 0:
                    held.append(cur)
                    gaps.append(gap)
                    n = step
            cur = row
        traj.append_rows(held, gaps)

    def values(self, c: int, steps: int) -> List[float]:
        """Column ``c`` for every update from the group's first, ``steps`` updates in all."""
        out = self.traj.values(c)
        if self.current is not None and c < len(self.current):
            out.extend([self.current[c]] * max(steps - self.traj.n, 0))
        return out

    def tail(self, c: int, k: int, steps: int) -> List[float]:
        """The last ``k`` of column ``c``'s ``steps`` values."""
        current = max(steps - self.traj.n, 0) if self.current is not None and c < len(self.current) else 0
        head = self.traj.tail(c, k - current) if k > current else []
        return head + [self.current[c]] * min(k, current) if current else head  # type: ignore[index]

    def runs(self, c: int, steps: int):
        yield from self.traj.runs(c)
        if self.current is not None and c < len(self.current) and steps > self.traj.n:
            yield self.current[c], steps - self.traj.n

    def start(self, c: int) -> int:
        """The update from which column ``c`` has values (a group added by ``add_param_group`` starts late)."""
        if c < self.traj.n_groups():
            return self.traj.group_start(c)
        return self.traj.n


def close(a: float, b: float, rtol: float, atol: float) -> bool:
    if a != a or b != b:
        return a != a and b != b
    if a == b:
        return True
    return abs(a - b) <= atol + rtol * abs(b)


def first_mismatches(actual: Sequence[float], expected: Sequence[float], rtol: float, atol: float):
    for i, (a, e) in enumerate(zip(actual, expected)):
        if not close(a, e, rtol, atol):
            yield i, a, e
