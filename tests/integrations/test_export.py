"""`lraudit export`: CSV and TensorBoard (read back with tensorboard's own event reader), W&B offline.

Values are compared with what a pre-hook of the test's own saw each update use, never with lraudit's
own output.
"""
import csv
import json
import math
import sys
import types
import warnings

import pytest
from click.testing import CliRunner

from lraudit.cli_runtime import export_command

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as L  # noqa: E402

STEPS = 30


def audited_run(tmp_path):
    """Two optimizers: a one-group SGD with OneCycleLR (momentum cycles) and a two-group AdamW with a
    group added at update 10; returns the saved file and each update's values seen by a pre-hook."""
    from lraudit.runtime import audit

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    head = torch.nn.Linear(3, 1)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    adamw = torch.optim.AdamW([{"params": head.weight, "name": "decay"},
                               {"params": head.bias, "weight_decay": 0.0, "lr": 5e-4}], lr=1e-3)
    seen = {"lr-SGD": [], "lr-SGD-momentum": [], "lr-AdamW/decay": [], "lr-AdamW/pg2": [], "lr-AdamW/pg3": {}}

    def sgd_hook(opt, args, kwargs):
        seen["lr-SGD"].append(opt.param_groups[0]["lr"])
        seen["lr-SGD-momentum"].append(opt.param_groups[0]["momentum"])

    def adamw_hook(opt, args, kwargs):
        k = len(seen["lr-AdamW/decay"])
        seen["lr-AdamW/decay"].append(opt.param_groups[0]["lr"])
        seen["lr-AdamW/pg2"].append(opt.param_groups[1]["lr"])
        if len(opt.param_groups) > 2:
            seen["lr-AdamW/pg3"][k] = opt.param_groups[2]["lr"]

    sgd.register_step_pre_hook(sgd_hook)
    adamw.register_step_pre_hook(adamw_hook)
    x = torch.randn(8, 3)
    with warnings.catch_warnings(), audit([sgd, adamw]) as run:
        warnings.simplefilter("ignore")  # LR017 below, on purpose
        s1 = L.OneCycleLR(sgd, max_lr=0.5, total_steps=STEPS)
        s2 = L.CosineAnnealingLR(adamw, T_max=STEPS)
        for i in range(STEPS):
            for opt, module in ((sgd, net), (adamw, head)):
                opt.zero_grad()
                module(x).pow(2).mean().backward()
                opt.step()
            s1.step()
            s2.step()
            if i == 9:
                adamw.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 2e-3})
    # a group added under a built scheduler is LR017 (CosineAnnealingLR schedules it from its own LR)
    assert [f.rule for f in run.findings] == ["LR017"]
    return run.save(tmp_path / "lr.json"), seen


def test_csv_has_a_step_column_and_one_column_per_series(tmp_path):
    path, seen = audited_run(tmp_path)
    out = tmp_path / "lr.csv"
    result = CliRunner().invoke(export_command, [path, "--to", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["step", "lr-SGD", "lr-SGD-momentum", "lr-AdamW/decay", "lr-AdamW/pg2", "lr-AdamW/pg3"]
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(STEPS))
    for c, name in enumerate(rows[0][1:], start=1):
        column = [r[c] for r in body]
        if name == "lr-AdamW/pg3":  # added after update 9: empty cells before
            assert column[:10] == [""] * 10
            assert [float(v) for v in column[10:]] == [seen[name][k] for k in range(10, STEPS)]
        else:
            assert [float(v) for v in column] == seen[name], name  # repr round-trips floats exactly
    assert len(set(seen["lr-SGD-momentum"])) > 10


def test_tensorboard_scalars_read_back_with_tensorboards_event_reader(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path, seen = audited_run(tmp_path)
    logdir = tmp_path / "tb"
    result = CliRunner().invoke(export_command, [path, "--to", "tensorboard", "-o", str(logdir)])
    assert result.exit_code == 0, result.output
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted(seen)
    for name, values in seen.items():
        events = acc.Scalars(name)
        expected = sorted(values.items()) if isinstance(values, dict) else list(enumerate(values))
        assert [e.step for e in events] == [k for k, _ in expected], name
        # TensorBoard stores scalars as float32
        assert all(math.isclose(e.value, v, rel_tol=1e-6) for e, (_, v) in zip(events, expected)), name


def test_version_1_file_exports_too(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"version": 1, "optimizers": [{"name": "lr-SGD", "class": "SGD", "steps": 3,
                                                               "groups": [{"name": "pg1", "lr": [0.1, None, 0.2]}]}]}))
    result = CliRunner().invoke(export_command, [str(path), "--to", "csv"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v1.csv").read_text() == "step,lr-SGD\n0,0.1\n1,nan\n2,0.2\n"  # default output: next to it


def test_not_a_trajectory_exits_2_in_one_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    result = CliRunner().invoke(export_command, [str(path), "--to", "csv"])
    assert result.exit_code == 2 and "not a trajectory" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()


def test_wandb_without_wandb_names_the_package(tmp_path, monkeypatch):
    path, _ = audited_run(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)
    result = CliRunner().invoke(export_command, [path, "--to", "wandb"])
    assert result.exit_code == 2 and "needs wandb: pip install wandb" in result.output


def test_wandb_offline_run_gets_every_step(tmp_path, monkeypatch):
    """wandb is not installed here: a stand-in module records the calls the export makes."""
    path, seen = audited_run(tmp_path)
    calls = {"init": None, "log": [], "finished": False}

    class FakeRun:
        def log(self, row, step):
            calls["log"].append((step, row))

        def finish(self):
            calls["finished"] = True

    fake = types.SimpleNamespace(init=lambda **kw: calls.__setitem__("init", kw) or FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    result = CliRunner().invoke(export_command, [path, "--to", "wandb", "-o", str(tmp_path / "wb")])
    assert result.exit_code == 0, result.output
    assert calls["init"]["mode"] == "offline" and calls["finished"]
    assert [s for s, _ in calls["log"]] == list(range(STEPS))
    assert [row["lr-SGD"] for _, row in calls["log"]] == seen["lr-SGD"]
    assert "lr-AdamW/pg3" not in calls["log"][9][1] and calls["log"][10][1]["lr-AdamW/pg3"] == seen["lr-AdamW/pg3"][10]


def test_export_needs_no_torch(tmp_path):
    import subprocess

    from .conftest import ROOT, step_trajectory

    path = tmp_path / "lr.json"
    path.write_text(json.dumps(step_trajectory()))
    code = (
        "import sys\n"
        "from lraudit.cli import main\n"
        "for target in ('csv', 'tensorboard'):\n"
        "    try:\n"
        "        main(['export', sys.argv[1], '--to', target])\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True, timeout=120)
    assert (tmp_path / "lr.csv").read_text().splitlines()[0] == "step,lr-SGD,lr-AdamW/backbone,lr-AdamW/head"
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "lr-tensorboard").iterdir())
