"""Autofix fixtures: ``fixtures/fix/<rule>/*.in.py`` fixed gives exactly ``*.out.py``.

The directory names the rule the pair is about; unsafe fixes are enabled when that rule's catalogue
entry says its fix is unsafe. Every pair is also checked for idempotence (fixing the output changes
nothing), for parsing, for re-linting (what was fixed is not reported again) and with CRLF line
endings. Adding a pair never means editing this file."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import libcst as cst
import pytest

import lraudit.checks as checks
from lraudit import catalog
from lraudit.checks import check_source
from lraudit.checks.base import Fix, StaticRule
from lraudit.fix import FixError, fix_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fix"
PAIRS = sorted(FIXTURES.rglob("*.in.py"))


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:  # keep line endings as they are
        return handle.read()


def _unsafe(path: Path) -> bool:
    return catalog.RULES[path.parent.name].fix == catalog.FIX_UNSAFE


def _out(path: Path) -> Path:
    return path.with_name(path.name[: -len(".in.py")] + ".out.py")


@pytest.mark.parametrize("path", PAIRS, ids=[str(p.relative_to(FIXTURES)) for p in PAIRS])
def test_fix_output_is_exact(path: Path):
    result = fix_source(_read(path), str(path), None, _unsafe(path))
    assert result.source == _read(_out(path))
    assert any(f.rule == path.parent.name for f in result.fixed), "the pair fixes nothing of its rule"


@pytest.mark.parametrize("path", PAIRS, ids=[str(p.relative_to(FIXTURES)) for p in PAIRS])
def test_fix_is_idempotent_parses_and_relints_clean(path: Path):
    source = _read(path)
    result = fix_source(source, str(path), None, _unsafe(path))
    cst.parse_module(result.source)
    compile(result.source, str(path), "exec")
    again = fix_source(result.source, str(path), None, _unsafe(path))
    assert again.source == result.source and again.fixed == []
    before = Counter(f.rule for f in check_source(source, str(path)))
    after = Counter(f.rule for f in check_source(result.source, str(path)))
    for rule, count in Counter(f.rule for f in result.fixed).items():
        assert after[rule] <= before[rule] - count, f"{rule} still reported after its fix"
    assert all(after[rule] <= before[rule] for rule in after), "the fix introduced new findings"


@pytest.mark.parametrize("path", PAIRS, ids=[str(p.relative_to(FIXTURES)) for p in PAIRS])
def test_fix_keeps_crlf(path: Path):
    source = _read(path).replace("\r\n", "\n").replace("\n", "\r\n")
    expected = _read(_out(path)).replace("\r\n", "\n").replace("\n", "\r\n")
    result = fix_source(source, str(path), None, _unsafe(path))
    assert result.source == expected


def test_fixable_flag_marks_safe_fixes_only():
    lr001 = check_source(_read(FIXTURES / "LR001" / "move_after.in.py"), "a.py")
    assert any(f.rule == "LR001" for f in lr001) and not any(f.fixable for f in lr001)  # unsafe move
    lr007 = check_source(_read(FIXTURES / "LR007" / "drop_epoch.in.py"), "b.py", ["LR007"])
    assert [(f.line, f.fixable) for f in lr007] == [(13, True), (23, True), (33, False), (42, False)]
    lr008 = check_source(_read(FIXTURES / "LR008" / "get_last_lr.in.py"), "c.py", ["LR008"])
    assert lr008 and all(f.fixable for f in lr008)


def test_unsafe_fixes_need_the_flag():
    source = _read(FIXTURES / "LR001" / "move_after.in.py")
    result = fix_source(source, "move_after.py", None, unsafe=False)
    assert not any(f.rule == "LR001" for f in result.fixed)
    assert result.source == source


def test_select_limits_the_rules_fixed():
    source = _read(FIXTURES / "LR008" / "get_last_lr.in.py")
    result = fix_source(source, "x.py", ["LR007"], unsafe=False)
    assert result.source == source and result.fixed == []


def test_nothing_to_fix_returns_the_input():
    source = "import torch\n\nprint(torch.__version__)\n"
    result = fix_source(source, "x.py", None, unsafe=True)
    assert result.source is source and result.fixed == []


class _BrokenFix(StaticRule):
    """A fix that does not remove its own finding: the fixer must refuse the result."""

    code = "LR008"

    def check(self, model):
        for event in model.events:
            if event.kind == "get_lr" and isinstance(event.call, cst.Call):
                yield self.report(event.node, "broken", fix=Fix("noop-ish", ((event.call, event.call.with_changes(
                    whitespace_after_func=cst.SimpleWhitespace(" "))),)))


def test_a_fix_that_does_not_fix_is_refused(monkeypatch):
    monkeypatch.setattr(checks, "RULES", (_BrokenFix(),))
    source = ("import torch\nopt = torch.optim.SGD([], lr=1)\n"
              "s = torch.optim.lr_scheduler.StepLR(opt, 1)\nprint(s.get_lr())\n")
    with pytest.raises(FixError):
        fix_source(source, "x.py", None, unsafe=False)
