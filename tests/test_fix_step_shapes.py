"""LR001's unsafe fix never leaves a scheduler stepped twice in one iteration (LR013's duplicated
step): where moving the early step would do so, no fix is offered, and fixing every LR001 fixture
adds no LR013 finding."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lraudit.checks import check_source
from lraudit.fix import fix_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

BEFORE_AND_AFTER = '''import torch
from torch.optim.lr_scheduler import StepLR


def train(model, loader, epochs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = StepLR(optimizer, 30)
    for epoch in range(epochs):
        for x in loader:
            scheduler.step()
            model(x).sum().backward()
            optimizer.step()
            scheduler.step()
'''

GUARDED_LATER_STEP = '''import torch
from torch.optim.lr_scheduler import StepLR


def train(model, loader, epochs, catch_up):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = StepLR(optimizer, 30)
    for epoch in range(epochs):
        for x in loader:
            scheduler.step()
            model(x).sum().backward()
            optimizer.step()
            if catch_up:
                scheduler.step()
'''


def _rules(source: str) -> Counter:
    return Counter(f.rule for f in check_source(source, "train.py"))


def test_a_step_before_and_after_the_optimizer_is_one_duplicated_step_not_lr001():
    assert _rules(BEFORE_AND_AFTER) == Counter({"LR013": 1})
    assert fix_source(BEFORE_AND_AFTER, "train.py", None, True).source == BEFORE_AND_AFTER


def test_no_lr001_fix_when_the_block_steps_the_scheduler_again_later():
    assert _rules(GUARDED_LATER_STEP)["LR001"] == 1
    result = fix_source(GUARDED_LATER_STEP, "train.py", None, True)
    assert result.source == GUARDED_LATER_STEP and result.fixed == []


LR001_FILES = [p for p in sorted((FIXTURES / "static").rglob("*.py")) if "LR001" in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", LR001_FILES, ids=[p.name for p in LR001_FILES])
def test_fixing_lr001_never_adds_a_duplicated_step(path: Path):
    source = path.read_text(encoding="utf-8")
    before = _rules(source)
    result = fix_source(source, str(path), {"LR001"}, True)
    after = _rules(result.source)
    assert after["LR013"] <= before["LR013"]
