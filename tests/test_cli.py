"""The click CLI: check's options and exit statuses, rules, explain, runtime command registration."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import lraudit
from lraudit import catalog
from lraudit import cli as cli_mod
from lraudit.cli import main

from test_engine import BUGGY, CLEAN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PLATEAU = """\
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

model = torch.nn.Linear(2, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = ReduceLROnPlateau(optimizer)
for epoch in range(3):
    optimizer.step()
    scheduler.step()
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "plateau.py").write_text(PLATEAU)
    (tmp_path / "clean.py").write_text(CLEAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(*args):
    return CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", *args])


def rules_of(res):
    return sorted((f["path"], f["rule"]) for f in json.loads(res.stdout)["findings"])


def test_exit_statuses(project):
    assert check("clean.py").exit_code == 0
    assert check("buggy.py").exit_code == 1
    assert check("buggy.py", "--exit-zero").exit_code == 0
    assert check("buggy.py", "nope.py", "--exit-zero").exit_code == 2
    assert CliRunner().invoke(main, ["check", "--format", "xml"]).exit_code == 2  # usage error


def test_default_path_is_cwd(project):
    assert rules_of(check()) == [("buggy.py", "LR001"), ("plateau.py", "LR003")]


def test_select_ignore_by_code_and_prefix(project):
    assert rules_of(check("--select", "LR003")) == [("plateau.py", "LR003")]
    assert rules_of(check("--select", "LR00", "--ignore", "LR001")) == [("plateau.py", "LR003")]
    assert rules_of(check("--select", "LR001,LR003", "--ignore", "LR00")) == rules_of(check())  # specific wins
    assert rules_of(check("--ignore", "lr001")) == [("plateau.py", "LR003")]
    assert rules_of(check("--select", "LR001", "--extend-select", "LR003")) == [
        ("buggy.py", "LR001"), ("plateau.py", "LR003")
    ]


def test_jobs_option(project):
    for i in range(20):
        (project / f"copy{i}.py").write_text(BUGGY)
    one = check("--jobs", "1")
    two = check("--jobs", "2")
    assert one.exit_code == two.exit_code == 1
    assert json.loads(one.stdout) == json.loads(two.stdout)
    assert CliRunner().invoke(main, ["check", "--jobs", "0"]).exit_code == 2


def test_fix_and_diff_flags_exist(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "lraudit.fix", None)  # as if fix.py were not written yet
    res = CliRunner().invoke(main, ["check", "--no-cache", "--fix", "buggy.py"])
    assert res.exit_code == 1 and "no fixes available" in res.stderr
    res = CliRunner().invoke(main, ["check", "--no-cache", "--diff", "--unsafe-fixes", "buggy.py"])
    assert res.exit_code == 0 and "No fixes available" in res.stdout
    assert (project / "buggy.py").read_text() == BUGGY


def test_rules_command():
    res = CliRunner().invoke(main, ["rules"])
    assert res.exit_code == 0
    assert [line.split()[0] for line in res.stdout.splitlines()] == list(catalog.RULES)
    data = json.loads(CliRunner().invoke(main, ["rules", "--format", "json"]).stdout)
    assert data[0]["code"] == "LR001" and data[0]["help_uri"] == catalog.RULES["LR001"].help_uri


def test_explain_command():
    res = CliRunner().invoke(main, ["explain", "lr002"])
    assert res.exit_code == 0 and res.stdout == catalog.render_page(catalog.RULES["LR002"])
    assert CliRunner().invoke(main, ["explain", "plateau-step-without-metric"]).stdout.startswith("# LR003")
    res = CliRunner().invoke(main, ["explain", "LR999"])
    assert res.exit_code == 2 and "unknown rule" in res.stderr


def test_version():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and lraudit.__version__ in res.stdout


@pytest.fixture
def fresh_group(monkeypatch):
    """Forget registered runtime commands so each test sees registration afresh."""
    monkeypatch.setattr(cli_mod._Group, "_runtime_loaded", False)
    saved = dict(main.commands)
    for name in ("run", "report"):
        main.commands.pop(name, None)
    yield
    main.commands.clear()
    main.commands.update(saved)


def test_runtime_commands_registered_when_present(fresh_group, monkeypatch):
    module = types.ModuleType("lraudit.cli_runtime")

    @click.command("run")
    def run_command():
        click.echo("ran")

    @click.command("report")
    def report_command():
        click.echo("reported")

    module.run_command, module.report_command = run_command, report_command
    monkeypatch.setitem(sys.modules, "lraudit.cli_runtime", module)
    assert CliRunner().invoke(main, ["run"]).stdout == "ran\n"
    assert CliRunner().invoke(main, ["report"]).stdout == "reported\n"


def test_check_works_when_runtime_cli_missing_or_broken(fresh_group, monkeypatch, project):
    monkeypatch.setitem(sys.modules, "lraudit.cli_runtime", None)  # missing
    assert check("buggy.py").exit_code == 1
    assert "check" in CliRunner().invoke(main, ["--help"]).stdout

    class Broken(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError("torch exploded")

    monkeypatch.setattr(cli_mod._Group, "_runtime_loaded", False)
    monkeypatch.setitem(sys.modules, "lraudit.cli_runtime", Broken("lraudit.cli_runtime"))
    assert check("buggy.py").exit_code == 1
    res = CliRunner().invoke(main, ["run", "x.py"])
    assert res.exit_code == 2 and "could not be loaded" in res.stderr


def test_python_dash_m(project):
    proc = subprocess.run(
        [sys.executable, "-m", "lraudit", "check", "--no-cache", "buggy.py"],
        capture_output=True, text=True, cwd=project, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout.startswith("buggy.py:9:5: LR001 ")


@pytest.mark.parametrize("rule", ["LR001", "LR007", "LR008"])
def test_fix_through_the_cli_writes_the_expected_file(tmp_path, monkeypatch, rule):
    """--fix applies safe fixes; LR001's move (unsafe) only with --unsafe-fixes."""
    pair = ROOT / "fixtures" / "fix" / rule
    source = next(pair.glob("*.in.py"))
    expected = source.with_name(source.name.replace(".in.py", ".out.py")).read_text(encoding="utf-8")
    target = tmp_path / "train.py"
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    unsafe = catalog.RULES[rule].fix == catalog.FIX_UNSAFE
    flags = ["check", "--no-cache", "--fix", "train.py"]
    if unsafe:
        CliRunner().invoke(main, flags)
        assert target.read_text(encoding="utf-8") == source.read_text(encoding="utf-8"), "unsafe fix applied"
        flags.insert(3, "--unsafe-fixes")
    result = CliRunner().invoke(main, flags)
    assert target.read_text(encoding="utf-8") == expected, result.output
    assert "Fixed" in result.output
