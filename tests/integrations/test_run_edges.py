"""`lraudit run` at its edges: scripts that change directory, names that look like markup, forks."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from lraudit.cli_runtime import run_command
from lraudit.runtime.trajectory_file import load

from .conftest import ROOT

pytest.importorskip("torch")

TRAIN = """
import os, sys
import torch

def train(steps, groups=None, lr=0.1):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    params = groups(net) if groups else net.parameters()
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
"""


def script(tmp_path, body):
    path = tmp_path / "train.py"
    path.write_text(TRAIN + textwrap.dedent(body))
    return path


def test_out_is_resolved_before_a_script_that_changes_directory(tmp_path, monkeypatch):
    (tmp_path / "outputs" / "2026-01-01").mkdir(parents=True)
    path = script(tmp_path, """
        os.chdir(os.path.join(os.path.dirname(__file__), "outputs", "2026-01-01"))  # as Hydra does
        train(3)
    """)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(run_command, ["--out", "lr.json", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr.json").exists() and not (tmp_path / "outputs" / "2026-01-01" / "lr.json").exists()
    assert f"trajectory written to {tmp_path / 'lr.json'}" in result.output  # the real, absolute path
    assert load(tmp_path / "lr.json").optimizers[0].steps == 3


def test_group_names_that_look_like_markup_are_printed_as_text(tmp_path):
    path = script(tmp_path, """
        train(2, groups=lambda net: [{"params": [net.weight], "name": "emb[/]"},
                                     {"params": [net.bias], "name": "[no_decay]"}])
    """)
    out = tmp_path / "lr.json"
    result = CliRunner().invoke(run_command, ["--out", str(out), str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "lr-SGD/emb[/]" in result.output and "lr-SGD/[no_decay]" in result.output
    assert [g.name for g in load(out).optimizers[0].groups] == ["emb[/]", "[no_decay]"]


def test_trajectory_is_saved_before_the_report_is_rendered(tmp_path, monkeypatch):
    import lraudit.runtime.trajectory_report as tr

    def broken(*args, **kwargs):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(tr, "render_trajectory", broken)
    out = tmp_path / "lr.json"
    path = script(tmp_path, "train(4)\n")
    result = CliRunner().invoke(run_command, ["--out", str(out), str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output  # the script's status, not lraudit's trouble
    assert "internal error while printing the report" in result.output
    assert load(out).optimizers[0].steps == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_ends_normally_neither_reports_nor_overwrites(tmp_path):
    path = script(tmp_path, """
        pid = os.fork()
        if pid == 0:
            train(2, lr=0.5)  # the child trains a little and its script simply ends
        else:
            os.waitpid(pid, 0)
            train(5)
            print("parent done", flush=True)
    """)
    out = tmp_path / "lr.json"
    proc = subprocess.run([sys.executable, "-m", "lraudit", "run", "--out", str(out), str(path)], cwd=str(ROOT),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "parent done" in proc.stdout
    assert proc.stderr.count("lraudit run:") == 2, proc.stderr  # one title, one "trajectory written"
    assert proc.stderr.count("optimizer steps)") == 1, proc.stderr
    [opt] = load(out).optimizers
    assert opt.steps == 5 and opt.groups[0].lr == [0.1] * 5  # the parent's run, not the child's
    assert json.loads(out.read_text())["version"] == 2
