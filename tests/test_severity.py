"""A finding carries its own severity when its consequence is milder than the rule's (the LR is
right here and only torch's warning is tripped): JSON, SARIF, GitHub and text show it, the cache
keeps it, and ``[tool.lraudit.severity]`` still overrides a rule as a whole."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lraudit.checks import check_source
from lraudit.cli import main

SOURCE = '''import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, StepLR


def train(model, loader, epochs, nw, writer):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    lf = lambda x: (1 - x / epochs) * 0.99 + 0.01  # noqa: E731
    scheduler = LambdaLR(optimizer, lr_lambda=lf)
    cosine = CosineAnnealingLR(torch.optim.SGD(model.parameters(), lr=0.1), T_max=epochs)
    nb = len(loader)
    for epoch in range(epochs):
        for i, x in enumerate(loader):
            ni = i + nb * epoch
            if ni <= nw:
                for g in optimizer.param_groups:
                    g["lr"] = np.interp(ni, [0, nw], [0.0, g["initial_lr"] * lf(epoch)])
            model(x).sum().backward()
            optimizer.step()
        scheduler.step()
        cosine.step()
        writer.add_scalar("lr", scheduler.get_lr()[0], epoch)
        writer.add_scalar("cosine", cosine.get_lr()[0], epoch)


def exact(model, loader, epochs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    lf = lambda x: 0.95 ** x  # noqa: E731
    scheduler = LambdaLR(optimizer, lf)
    for epoch in range(epochs):
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * lf(epoch)
        for x in loader:
            model(x).sum().backward()
            optimizer.step()
        scheduler.step()


def wrong(model, loader, epochs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = StepLR(optimizer, 10)
    for epoch in range(epochs):
        for g in optimizer.param_groups:
            g["lr"] = 0.01 * min(1.0, epoch / 5)
        for x in loader:
            model(x).sum().backward()
            optimizer.step()
        scheduler.step()
'''

EXPECTED = [
    (17, "LR002", "warning"),  # a warm-up ramping to LambdaLR's own value: right once it ends
    (22, "LR008", "info"),  # LambdaLR's get_lr is its closed form: the LR shown is the LR in use
    (23, "LR008", "warning"),  # CosineAnnealingLR's get_lr computes the next value from the current one
    (32, "LR002", "info"),  # exactly the scheduler's closed form
    (44, "LR002", "error"),  # a write StepLR compounds: the LR is wrong
]


def test_each_finding_has_the_severity_of_its_consequence():
    findings = check_source(SOURCE, "train.py")
    assert [(f.line, f.rule, f.severity) for f in findings] == EXPECTED
    by_line = {f.line: f.message for f in findings}
    assert "the LR is right here" in by_line[22] and "the LR is right here" in by_line[32]
    assert "right once the warm-up ends" in by_line[17]


def _run(tmp_path: Path, monkeypatch, *args, config: str = ""):
    (tmp_path / "train.py").write_text(SOURCE)
    (tmp_path / "pyproject.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, ["check", *args])


def test_json_sarif_github_and_the_cache_keep_a_findings_own_severity(tmp_path, monkeypatch):
    res = _run(tmp_path, monkeypatch, "--format", "json")
    cold = [(f["line"], f["rule"], f["severity"]) for f in json.loads(res.stdout)["findings"]]
    assert cold == EXPECTED
    warm = [(f["line"], f["rule"], f["severity"]) for f in json.loads(_run(tmp_path, monkeypatch, "--format", "json").stdout)["findings"]]
    assert warm == EXPECTED  # read back from the cache
    sarif = json.loads(_run(tmp_path, monkeypatch, "--no-cache", "--format", "sarif").stdout)
    levels = [(r["locations"][0]["physicalLocation"]["region"]["startLine"], r["level"]) for r in sarif["runs"][0]["results"]]
    assert levels == [(17, "warning"), (22, "note"), (23, "warning"), (32, "note"), (44, "error")]
    github = _run(tmp_path, monkeypatch, "--no-cache", "--format", "github").stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in github] == ["::warning", "::notice", "::warning", "::notice", "::error"]
    text = _run(tmp_path, monkeypatch, "--no-cache").stdout
    assert "train.py:22:" in text and "train.py:44:" in text


def test_config_severity_overrides_the_rule_as_a_whole(tmp_path, monkeypatch):
    res = _run(tmp_path, monkeypatch, "--no-cache", "--format", "json",
               config="[tool.lraudit.severity]\nLR008 = 'error'\nLR002 = 'info'\n")
    assert [(f["line"], f["severity"]) for f in json.loads(res.stdout)["findings"]] == [
        (17, "info"), (22, "error"), (23, "error"), (32, "info"), (44, "info")]
