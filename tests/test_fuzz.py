"""Property-based fuzzing of the static half (issue 13): generated training-loop programs.

Programs are random nestings of loops, conditions, context managers and same-module helpers around
optimizer and scheduler steps, LR writes, checkpoint saves and ``get_lr`` calls, as scripts and as
notebooks. Every generated program is valid Python, so for each one:

- the analysis reports no error (internal or otherwise) and is deterministic;
- ``--fix`` (unsafe fixes included) yields code that parses, and fixing it again changes nothing;
- appending unrelated code changes no finding;
- a notebook of the same statements reports the same rules.

CI time is bounded: fixed ``max_examples``, no deadline, derandomized (the same examples every run).
"""
from __future__ import annotations

import ast
import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lraudit.config import resolve_settings
from lraudit.engine import check_text
from lraudit.fix import FixError, fix_source

SETTINGS = resolve_settings(["."], isolated=True)
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HEADER = """\
import torch
from torch.optim import lr_scheduler

model = torch.nn.Linear(2, 2)
opt = torch.optim.{optimizer}(model.parameters(), lr=0.1)
sched = lr_scheduler.{scheduler}
"""
SCHEDULERS = ["StepLR(opt, step_size=10)", "ExponentialLR(opt, gamma=0.9)", "CosineAnnealingLR(opt, T_max=10)",
              "OneCycleLR(opt, max_lr=0.1, total_steps=100)", "ReduceLROnPlateau(opt)", "LambdaLR(opt, lambda e: 1.0)"]

# Simple statements; {opt}/{sched} are the names in scope (module level or a helper's parameters).
SIMPLE = [
    "{opt}.step()",
    "{sched}.step()",
    "{sched}.step(epoch)",
    "{opt}.zero_grad()",
    "loss = model(torch.randn(1, 2)).sum()",
    "loss.backward()",
    "{opt}.param_groups[0]['lr'] = 0.01",
    "print({sched}.get_lr())",
    "print({sched}.get_last_lr())",
    "torch.save({{'model': model.state_dict(), 'optimizer': {opt}.state_dict()}}, 'ckpt.pt')",
    "other = lr_scheduler.StepLR({opt}, step_size=5)",
    "second = torch.optim.Adam(model.parameters(), lr=0.001)",
    "value = epoch * 2",
    "pass",
]
HEADS = [
    "for epoch in range(3):",
    "for i, batch in enumerate(range(4)):",
    "if epoch > 0:",
    "if (i + 1) % 4 == 0:",
    "if args.warmup:",
    "while value < 3:",
    "with torch.no_grad():",
]


def _block(draw, depth: int, names: dict, helpers: list, indent: str) -> list:
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["simple", "simple", "compound", "call"] if depth < 4 else ["simple"]))
        if kind == "call" and helpers:
            lines.append(f"{indent}{draw(st.sampled_from(helpers))}({names['opt']}, {names['sched']}, epoch)")
        elif kind == "compound":
            head = draw(st.sampled_from(HEADS))
            lines.append(indent + head)
            lines.extend(_block(draw, depth + 1, names, helpers, indent + "    "))
            if head.startswith("if") and draw(st.booleans()):
                lines.append(indent + "else:")
                lines.extend(_block(draw, depth + 1, names, helpers, indent + "    "))
        else:
            lines.append(indent + draw(st.sampled_from(SIMPLE)).format(**names))
    return lines


@st.composite
def programs(draw) -> list:
    """A training script as a list of top-level chunks (each a complete statement or definition)."""
    optimizer = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    chunks = [HEADER.format(optimizer=optimizer, scheduler=draw(st.sampled_from(SCHEDULERS))),
              "args = object()\nepoch = 0\ni = 0\nvalue = 0\n"]
    helpers = []
    for k in range(draw(st.integers(0, 2))):
        body = _block(draw, 1, {"opt": "optimizer", "sched": "scheduler"}, list(helpers), "    ")
        chunks.append(f"def helper_{k}(optimizer, scheduler, epoch):\n" + "\n".join(body) + "\n")
        helpers.append(f"helper_{k}")
    main = _block(draw, 0, {"opt": "opt", "sched": "sched"}, helpers, "")
    # top-level statements one chunk each (a compound statement with its body)
    current: list = []
    for line in main:
        if current and not line.startswith((" ", "else:")):
            chunks.append("\n".join(current) + "\n")
            current = []
        current.append(line)
    if current:
        chunks.append("\n".join(current) + "\n")
    return chunks


def findings(result):
    return [(f.line, f.column, f.rule, f.message) for f in result.findings]


@FUZZ
@given(programs())
def test_generated_programs(chunks):
    source = "".join(chunks)
    ast.parse(source)  # the generator only writes valid Python
    first = check_text(source, "train.py", SETTINGS)
    assert first.errors == [], (first.errors, source)
    assert findings(check_text(source, "train.py", SETTINGS)) == findings(first)  # deterministic

    appended = source + "\n\ndef unrelated_helper(x):\n    return [y * 2 for y in x]\n\nUNRELATED = {'a': 1}\n"
    assert findings(check_text(appended, "train.py", SETTINGS)) == findings(first), source

    try:
        fixed = fix_source(source, "train.py", unsafe=True)
    except FixError:
        return  # refused: the file is left as it was, which is allowed
    ast.parse(fixed.source)
    assert check_text(fixed.source, "train.py", SETTINGS).errors == []
    again = fix_source(fixed.source, "train.py", unsafe=True)
    assert again.source == fixed.source and again.fixed == [], source  # idempotent


def _notebook(chunks) -> str:
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
              "source": chunk.splitlines(keepends=True)} for chunk in chunks]
    cells.insert(1, {"cell_type": "markdown", "metadata": {}, "source": ["# Training\n"]})
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
                       "nbformat": 4, "nbformat_minor": 5}, indent=1)


@settings(FUZZ, max_examples=20)
@given(programs())
def test_generated_notebooks(chunks):
    notebook = _notebook(chunks)
    result = check_text(notebook, "train.ipynb", SETTINGS)
    assert result.errors == [], result.errors
    assert findings(check_text(notebook, "train.ipynb", SETTINGS)) == findings(result)
    as_script = check_text("".join(chunks), "train.py", SETTINGS)
    assert Counter(f.rule for f in result.findings) == Counter(f.rule for f in as_script.findings)
    assert all(getattr(f, "cell", 0) >= 1 for f in result.findings)
