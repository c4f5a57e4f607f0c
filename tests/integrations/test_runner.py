"""`lraudit run`: training scripts under the audit, however they end."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from lraudit.cli_runtime import run_command
from lraudit.runtime import trajectory_file

from .conftest import ROOT, SCRIPTS


def lraudit_run(*args):
    return CliRunner().invoke(run_command, [str(a) for a in args], catch_exceptions=False)


def saved(path):
    """The trajectory file read back (version 2), every series expanded to one value per step."""
    raw = json.loads(path.read_text())
    assert raw["version"] == 2
    record = trajectory_file.read(raw)
    return {"optimizers": [{"name": o.name, "class": o.cls, "steps": o.steps,
                            "groups": [{"name": g.name, "lr": g.lr} for g in o.groups]} for o in record.optimizers],
            "findings": record.findings}


def test_clean_script_argv_report_and_trajectory(tmp_path):
    out = tmp_path / "lr.json"
    argv_before, path_before = sys.argv[:], sys.path[:]
    result = lraudit_run("--out", out, SCRIPTS / "train_small.py", "--steps", "8", "--lr", "0.2")
    assert result.exit_code == 0, result.output
    assert f"argv=['{SCRIPTS / 'train_small.py'}', '--steps', '8', '--lr', '0.2']" in result.output
    assert "lraudit run:" in result.output and "finished" in result.output
    assert "lr-SGD (SGD, 8 optimizer steps)" in result.output and "No findings." in result.output
    data = saved(out)
    [opt] = data["optimizers"]
    assert (opt["name"], opt["class"], opt["steps"]) == ("lr-SGD", "SGD", 8)
    assert opt["groups"][0]["lr"] == [0.2] * 4 + [0.1] * 4
    assert data["findings"] == []
    assert (sys.argv, sys.path) == (argv_before, path_before)


def test_script_exit_status_is_passed_through(tmp_path):
    result = lraudit_run(SCRIPTS / "train_small.py", "--steps", "2", "--exit-code", "3")
    assert result.exit_code == 3
    assert "exited with status 3" in result.output


def test_options_after_the_script_belong_to_the_script():
    result = lraudit_run(SCRIPTS / "train_small.py", "--help")
    assert result.exit_code == 0
    assert "--per-epoch" in result.output  # the script's argparse help, not lraudit's


def test_strict_exits_1_on_findings(tmp_path):
    out = tmp_path / "lr.json"
    result = lraudit_run("--out", out, SCRIPTS / "train_manual_write.py")
    assert result.exit_code == 0, result.output
    assert "LR002" in result.output
    assert "LR002" in {f["rule"] for f in saved(out)["findings"]}
    result = lraudit_run("--strict", SCRIPTS / "train_manual_write.py")
    assert result.exit_code == 1
    assert lraudit_run("--strict", SCRIPTS / "train_small.py", "--steps", "4").exit_code == 0


def test_expect_scheduler_modes(tmp_path):
    # train_small.py steps StepLR once every 4 optimizer steps (a per-epoch schedule): "scheduler"
    # replays it where it was stepped (silent), "scheduler-per-step" once per optimizer step (LR015);
    # --strict makes that the exit status.
    result = lraudit_run("--strict", "--expect", "scheduler-per-step", SCRIPTS / "train_small.py", "--steps", "8")
    assert result.exit_code == 1
    assert "LR015" in result.output
    result = lraudit_run("--strict", "--expect", "scheduler", SCRIPTS / "train_small.py", "--steps", "8")
    assert result.exit_code == 0, result.output
    assert "LR015" not in result.output


def test_crash_midway_saves_the_trajectory_up_to_the_crash(tmp_path):
    out = tmp_path / "lr.json"
    result = lraudit_run("--out", out, SCRIPTS / "train_crash.py", "--crash-at", "5")
    assert result.exit_code == 1
    assert "RuntimeError: CUDA out of memory (simulated) at step 5" in result.output
    assert 'train_crash.py", line' in result.output and "runpy" not in result.output
    assert "exited with status 1" in result.output
    lrs = saved(out)["optimizers"][0]["groups"][0]["lr"]
    assert lrs == pytest.approx([0.1 * 0.9 ** i for i in range(5)], rel=1e-12)


def test_keyboard_interrupt_in_process(tmp_path):
    out = tmp_path / "lr.json"
    result = lraudit_run("--out", out, SCRIPTS / "train_interrupt.py", "--stop-at", "3")
    assert result.exit_code == 130
    assert "KeyboardInterrupt" in result.output and "was interrupted" in result.output
    assert saved(out)["optimizers"][0]["steps"] == 3


def test_real_sigint_in_a_subprocess(tmp_path):
    out, ready = tmp_path / "lr.json", tmp_path / "ready"
    proc = subprocess.Popen(  # the real CLI, as a shell runs it
        [sys.executable, "-m", "lraudit", "run", "--out", str(out), str(SCRIPTS / "train_interrupt.py"), "--wait",
         "--stop-at", "4", "--ready", str(ready)],
        cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate(timeout=5)[0] if proc.poll() is not None else "no ready file"
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "was interrupted" in output and f"trajectory written to {out}" in output
    assert saved(out)["optimizers"][0]["steps"] >= 4


def test_module_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(SCRIPTS)
    out = tmp_path / "lr.json"
    result = lraudit_run("--out", out, "-m", "smalltrain", "5")
    assert result.exit_code == 0, result.output
    assert "smalltrain argv: [" in result.output and "__main__.py', '5']" in result.output
    [opt] = saved(out)["optimizers"]
    assert (opt["name"], opt["steps"]) == ("lr-Adam", 5)


def test_missing_script():
    result = lraudit_run("no_such_script.py")
    assert result.exit_code == 2 and "no such script" in result.output


def test_missing_module(monkeypatch):
    monkeypatch.chdir(SCRIPTS)
    result = lraudit_run("-m", "no_such_module_here")
    assert result.exit_code == 2 and "no module named no_such_module_here" in result.output
