"""pytest plugin (entry point ``pytest11: lraudit``): pin a training schedule in a smoke test.

```python
from lraudit.integrations.pytest_plugin import assert_lr_schedule

def test_warmup_then_decay(lr_audit):
    model, opt, sched = build()
    with lr_audit(opt) as run:          # the same audit as lraudit.audit(opt, ...)
        train(model, opt, sched, steps=10)
    assert run.findings == []
    assert_lr_schedule(run, expect=[0.01, 0.02, 0.03, 0.03, 0.027], rtol=1e-6)  # first 5 steps ... or all
```

``lr_audit(optimizer=None, **kwargs)`` takes the arguments of ``audit()``; ``lr_audit.start(...)``
returns a run without a ``with`` block. Every audit the fixture started is stopped at teardown, and
when the test fails its LR report is shown in the failure's "Captured lraudit call" section.

pytest loads this module in every session of every environment where lraudit is installed: it imports
nothing but pytest at import time (no torch, no rich); the runtime is imported when the fixture is used.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Union

import pytest

__all__ = ["assert_lr_schedule", "LRAuditFixture", "lr_audit"]

MAX_DIFF_ROWS = 10

Expected = Union[Sequence[float], Callable[[int], Any]]


def _close(actual: float, expected: float, rtol: float, atol: float) -> bool:
    if math.isnan(actual) or math.isnan(expected):
        return math.isnan(actual) and math.isnan(expected)
    if math.isinf(actual) or math.isinf(expected):
        return actual == expected
    return abs(actual - expected) <= atol + rtol * abs(expected)


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.8g}"


def _series_label(run, group, optimizer) -> str:
    """The series name LearningRateMonitor would log (``lr-SGD``, ``lr-SGD/pg2``, ``lr-SGD/head``)."""
    try:
        series = run.series()
    except Exception:  # a label is a nicety; never hide the real assertion behind it
        return f"group {group}"
    mine = [s for s in series if optimizer is None or s[0] == optimizer]
    if not mine:
        return f"group {group}"
    from lraudit.runtime.series import series_name

    first_opt = mine[0][0]
    groups = [s for s in mine if s[0] == first_opt]
    for i, s in enumerate(groups):
        if (isinstance(group, int) and i == group) or s[2] == group:
            return getattr(s, "name", None) or series_name(first_opt, s[2], i, len(groups))
    return f"{first_opt}/{group}"


def assert_lr_schedule(
    run,
    expect: Expected,
    rtol: float = 1e-6,
    atol: float = 0.0,
    *,
    group: int = 0,
    optimizer: Optional[str] = None,
    prefix: bool = False,
) -> None:
    """Assert that ``run`` recorded the LR schedule ``expect`` for one param group.

    ``expect`` is a sequence (one LR per optimizer step) or a callable ``step -> lr`` (``step`` counts
    optimizer steps from 0, like the positions of ``run.lrs()``; a callable may return one LR per group).
    Values match when ``|actual - expected| <= atol + rtol * |expected|``; NaN matches NaN only. The
    number of steps must match too, unless ``prefix=True`` (then only the first ``len(expect)`` steps
    are compared). On failure the message is a table of the first differing steps.
    """
    __tracebackhide__ = True
    actual: List[float] = [float(v) for v in run.lrs(group=group, optimizer=optimizer)]
    if callable(expect):
        expected = []
        for step in range(len(actual)):
            value = expect(step)
            if isinstance(value, (list, tuple)):
                value = value[group]
            expected.append(float(value))
    else:
        expected = [float(v) for v in expect]
    actual_cmp = actual[: len(expected)] if prefix else actual

    rows = []
    n = max(len(actual_cmp), len(expected))
    diffs = 0
    for i in range(n):
        a = actual_cmp[i] if i < len(actual_cmp) else None
        e = expected[i] if i < len(expected) else None
        if a is not None and e is not None and _close(a, e, rtol, atol):
            continue
        diffs += 1
        if len(rows) < MAX_DIFF_ROWS:
            rows.append((i, e, a))
    if not diffs:
        return

    label = _series_label(run, group, optimizer)
    lines = [
        f"LR schedule of {label} differs from the expected one at {diffs} of {n} steps "
        f"(rtol={rtol:g}, atol={atol:g}):"
    ]
    if len(actual_cmp) != len(expected):
        lines.append(f"  recorded {len(actual_cmp)} optimizer steps, expected {len(expected)}")
    lines.append(f"  {'step':>6}  {'expected':>16}  {'actual':>16}  {'rel. error':>10}")
    for i, e, a in rows:
        if a is None or e is None:
            rel = "missing" if a is None else "extra"
        elif e == 0 or not math.isfinite(e) or not math.isfinite(a):
            rel = f"{abs(a - e):.3g} abs" if math.isfinite(a) and math.isfinite(e) else "-"
        else:
            rel = f"{abs(a - e) / abs(e):.3g}"
        lines.append(f"  {i:>6}  {_fmt(e):>16}  {_fmt(a):>16}  {rel:>10}")
    if diffs > len(rows):
        lines.append(f"  ... and {diffs - len(rows)} more differing steps")
    raise AssertionError("\n".join(lines))


class LRAuditFixture:
    """What the ``lr_audit`` fixture gives a test: a factory of audits that are all stopped at teardown."""

    def __init__(self):
        self._audits: list = []
        self._runs: list = []

    def __call__(self, optimizer=None, **kwargs):
        """``audit(optimizer, **kwargs)``: use it as ``with lr_audit(opt) as run:``."""
        from lraudit.runtime import audit

        tracked = audit(optimizer, **kwargs)
        self._audits.append(tracked)
        return _Tracked(tracked, self._runs)

    def start(self, optimizer=None, **kwargs):
        """Start an audit now and return its run; the fixture stops it at teardown (or call ``stop()``)."""
        return self(optimizer, **kwargs).start()

    def stop(self):
        """Stop every audit this fixture started (idempotent)."""
        for tracked in self._audits:
            tracked.stop()

    @property
    def runs(self) -> list:
        return list(self._runs)

    @property
    def run(self):
        """The run of the last audit started, or None."""
        return self._runs[-1] if self._runs else None

    assert_schedule = staticmethod(assert_lr_schedule)

    def _report_text(self) -> str:
        from lraudit.runtime.trajectory_report import render_text

        parts = []
        for i, run in enumerate(self._runs):
            title = f"lr_audit run {i + 1} of {len(self._runs)}" if len(self._runs) > 1 else None
            parts.append(render_text(run.to_dict(), width=110, title=title))
        return "\n".join(parts)


class _Tracked:
    """An ``Audit`` whose run the fixture remembers (for ``lr_audit.run`` and the failure report)."""

    def __init__(self, audit_obj, runs: list):
        self._audit = audit_obj
        self._runs = runs

    def __enter__(self):
        run = self._audit.__enter__()
        self._runs.append(run)
        return run

    def __exit__(self, *exc_info):
        return self._audit.__exit__(*exc_info)

    def start(self):
        run = self._audit.start()
        self._runs.append(run)
        return run

    def stop(self, exc=None):
        return self._audit.stop(exc)

    def __getattr__(self, name):
        return getattr(self._audit, name)


@pytest.fixture
def lr_audit():
    """Audit optimizers inside a test: ``with lr_audit(optimizer, expect=..., strict=...) as run:``."""
    fixture = LRAuditFixture()
    yield fixture
    fixture.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    # A failing test that used lr_audit shows the LR report of its runs next to its captured output.
    if call.when != "call" or call.excinfo is None:
        return None
    fixture = getattr(item, "funcargs", {}).get("lr_audit")
    if isinstance(fixture, LRAuditFixture) and fixture.runs:
        try:
            item.add_report_section("call", "lraudit", fixture._report_text())
        except Exception as exc:  # the report must never hide the test's own failure
            item.add_report_section("call", "lraudit", f"(lraudit could not render the LR report: {exc!r})")
    return None
