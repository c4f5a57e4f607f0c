"""The analysis core's own guarantees: the prescan gate, the cost bounds, identity through calls."""
from __future__ import annotations

from pathlib import Path

import libcst as cst

from lraudit.analysis import build_model, interpreter, may_contain_findings
from lraudit.analysis.prescan import prescan
from lraudit.checks import check_source

ROOT = Path(__file__).resolve().parent.parent
BAD = (ROOT / "fixtures" / "static" / "LR001" / "helper_function.py").read_text(encoding="utf-8")


def test_files_without_known_constructions_are_not_parsed_by_libcst(monkeypatch):
    source = "from engine import train\nimport torch\n\ndef f(optimizer, scheduler):\n    scheduler.step()\n    optimizer.step()\n"
    assert may_contain_findings(source) is False or prescan(source).relevant is False
    calls = []
    monkeypatch.setattr(cst, "parse_module", lambda *a, **k: calls.append(a))
    assert check_source(source, "x.py") == [] and calls == []


def test_prescan_keeps_every_file_the_model_could_report():
    scan = prescan(BAD)
    assert scan is not None and scan.relevant
    assert may_contain_findings(BAD)


def test_prescan_marks_methods_that_cannot_matter_as_idle():
    source = (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x):\n        return self.helper(x)\n"
        "    def helper(self, x):\n        return x\n"
        "def fit(trainer):\n    trainer.run_epoch()\n"
        "class Trainer:\n    def __init__(self):\n        self.opt = torch.optim.SGD([], lr=0.1)\n"
        "    def run_epoch(self):\n        self.opt.step()\n"
    )
    scan = prescan(source)
    assert scan.idle == frozenset({("Net", "forward"), ("Net", "helper")})


def test_a_module_over_budget_reports_nothing(monkeypatch):
    assert [f.rule for f in check_source(BAD, "x.py")] == ["LR001"]
    monkeypatch.setattr(interpreter, "MAX_ENTRY_STATEMENTS", 3)
    assert check_source(BAD, "x.py") == []


def test_identity_flows_through_unknown_calls_and_unpacking():
    source = (
        "import torch\n"
        "def main(fabric, make):\n"
        "    model, opt = fabric.setup(make(), make())\n"
        "    sched = torch.optim.lr_scheduler.StepLR(opt, 3)\n"
        "    for _ in range(3):\n"
        "        opt.step()\n"
        "        sched.step()\n"
    )
    model = build_model(cst.parse_module(source))
    (scheduler,) = model.schedulers
    assert model.steps_of_scheduler(scheduler)
    assert model.steps_of_optimizers(model.optimizers_of(scheduler))
