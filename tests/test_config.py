"""[tool.lraudit] discovery, parsing, rule selection, and their errors (exit 2 through the CLI)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lraudit.cli import main
from lraudit.config import (
    ConfigError,
    Layer,
    find_config,
    load_config,
    path_matches,
    resolve_rules,
    resolve_settings,
    static_codes,
)

from test_engine import BUGGY  # noqa: E402  (tests dir is on sys.path under pytest)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nearest_pyproject_with_table_is_found(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.lraudit]\nignore = ['LR004']\n")
    write(tmp_path / "pkg" / "pyproject.toml", "[project]\nname = 'pkg'\n")  # no [tool.lraudit]: skipped
    target = write(tmp_path / "pkg" / "src" / "train.py", "x = 1\n")
    assert find_config([str(target)]) == tmp_path / "pyproject.toml"
    write(tmp_path / "pkg" / "pyproject.toml", "[tool.lraudit]\nselect = ['LR001']\n")
    assert find_config([str(target)]) == tmp_path / "pkg" / "pyproject.toml"
    assert resolve_settings([str(target)]).rules == frozenset({"LR001"})


def test_no_config_means_every_static_rule(tmp_path):
    s = resolve_settings([str(tmp_path)], isolated=True)
    assert s.rules == frozenset(static_codes())
    assert "LR015" not in s.rules  # runtime-only


@pytest.mark.parametrize(
    "layers, expected",
    [
        ([Layer(select=("LR00",))], {f"LR00{i}" for i in range(1, 10)}),
        ([Layer(select=("LR001",), ignore=("LR",))], {"LR001"}),  # more specific select wins
        ([Layer(select=("LR",), ignore=("LR001",))], set(static_codes()) - {"LR001"}),
        ([Layer(select=("LR001",)), Layer(extend_select=("LR002",))], {"LR001", "LR002"}),
        ([Layer(select=("LR001",)), Layer(select=("LR003",))], {"LR003"}),  # CLI select replaces
        ([Layer(ignore=("LR001",)), Layer(extend_select=("LR001",))], set(static_codes())),
        ([Layer(select=("ALL",), ignore=("LR01",))], {c for c in static_codes() if not c.startswith("LR01")}),
    ],
)
def test_rule_selection_follows_ruff(layers, expected):
    assert resolve_rules(layers) == frozenset(expected)


def test_cli_overrides_file(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.lraudit]\nselect = ['LR001', 'LR002']\nextend-select = ['LR003']\n")
    assert resolve_settings([str(tmp_path)]).rules == {"LR001", "LR002", "LR003"}
    assert resolve_settings([str(tmp_path)], select=["LR004"]).rules == {"LR004"}  # replaces all of it
    assert resolve_settings([str(tmp_path)], ignore=["lr001,LR003"]).rules == {"LR002"}


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("select = ['LR999']", "unknown rule code or prefix 'LR999'"),
        ("select = 'LR001'", "`select` must be a list of strings"),
        ("per_file_ignores = {}", "did you mean `per-file-ignores`"),
        ("colour = true", "unknown key `colour`"),
        ("per-file-ignores = {'a.py' = ['XX1']}", "unknown rule code or prefix 'XX1'"),
        ("severity = {LR001 = 'fatal'}", "must be one of error, warning, info"),
        ("select = [", "invalid TOML"),
    ],
)
def test_malformed_config_is_a_clear_error(tmp_path, body, fragment):
    cfg = write(tmp_path / "pyproject.toml", f"[tool.lraudit]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert fragment in str(info.value) and str(cfg) in str(info.value)


def test_malformed_config_exits_2_through_cli(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml", "[tool.lraudit]\nignore = ['LR9']\n")
    write(tmp_path / "t.py", BUGGY)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "t.py", "--no-cache"])
    assert res.exit_code == 2
    assert "unknown rule code or prefix 'LR9'" in res.stderr
    res = CliRunner().invoke(main, ["check", "t.py", "--isolated", "--select", "NOPE1", "--no-cache"])
    assert res.exit_code == 2 and "--select" in res.stderr


def test_explicit_config_file(tmp_path, monkeypatch):
    write(tmp_path / "lraudit.toml", "select = ['LR003']\n")
    write(tmp_path / "t.py", BUGGY)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "t.py", "--config", "lraudit.toml", "--no-cache", "--format", "json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["check", "t.py", "--config", "missing.toml"])
    assert res.exit_code == 2 and "config file not found" in res.stderr


def test_severity_override_reaches_reports(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml", "[tool.lraudit.severity]\nLR001 = 'warning'\n")
    write(tmp_path / "t.py", BUGGY)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"])
    data = json.loads(res.stdout)
    assert [(f["rule"], f["severity"]) for f in data["findings"]] == [("LR001", "warning")]
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "github"])
    assert res.stdout.startswith("::warning file=t.py,line=9,endLine=9,col=5,endColumn=")
    assert ",title=LR001::" in res.stdout.splitlines()[0]


def test_per_file_ignores_and_excludes_from_config(tmp_path, monkeypatch):
    write(
        tmp_path / "pyproject.toml",
        "[tool.lraudit]\nextend-exclude = ['generated', 'scripts/old_*.py']\n"
        "[tool.lraudit.per-file-ignores]\n'tests/**' = ['LR0']\n",
    )
    for rel in ("a.py", "generated/b.py", "scripts/old_c.py", "scripts/d.py", "tests/unit/e.py"):
        write(tmp_path / rel, BUGGY)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"])
    data = json.loads(res.stdout)
    assert sorted({f["path"] for f in data["findings"]}) == ["a.py", "scripts/d.py"]
    assert data["files_checked"] == 3
    # a named file is checked as asked (ruff's rule); --force-exclude applies the patterns to it too
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", "scripts/old_c.py"])
    assert json.loads(res.stdout)["files_checked"] == 1
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", "--force-exclude", "scripts/old_c.py"])
    assert json.loads(res.stdout)["files_checked"] == 0


def test_exclude_replaces_defaults(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml", "[tool.lraudit]\nexclude = ['vendor']\n")
    write(tmp_path / "build" / "a.py", BUGGY)
    write(tmp_path / "vendor" / "b.py", BUGGY)
    monkeypatch.chdir(tmp_path)
    data = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"]).stdout)
    assert [f["path"] for f in data["findings"]] == ["build/a.py"]


@pytest.mark.parametrize(
    "path, pattern, expected",
    [
        ("src/x_pb2.py", "*_pb2.py", True),
        ("a/build", "build", True),
        ("src/legacy/old.py", "src/legacy", True),
        ("src/legacy/old.py", "src/legacy/**", True),
        ("other/src/legacy/old.py", "src/legacy", False),
        ("train.py", "test_*.py", False),
    ],
)
def test_path_matches(tmp_path, monkeypatch, path, pattern, expected):
    monkeypatch.chdir(tmp_path)
    assert path_matches(path, pattern, tmp_path) is expected


def test_gitignore_is_respected(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".gitignore", "# generated\n/out/\n*_gen.py\nlogs/\n!keep_gen.py\n")
    write(tmp_path / "src" / ".gitignore", "scratch.py\n")
    for rel in ("a.py", "out/b.py", "src/c_gen.py", "src/keep_gen.py", "src/scratch.py", "src/logs/d.py",
                "src/out/e.py"):
        write(tmp_path / rel, BUGGY)
    monkeypatch.chdir(tmp_path)
    data = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"]).stdout)
    assert sorted({f["path"] for f in data["findings"]}) == ["a.py", "src/keep_gen.py", "src/out/e.py"]
    monkeypatch.chdir(tmp_path / "src")  # the parent .gitignore still applies below the repo root
    data = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"]).stdout)
    assert sorted({f["path"] for f in data["findings"]}) == ["keep_gen.py", "out/e.py"]
    write(tmp_path / "src" / "pyproject.toml", "[tool.lraudit]\nrespect-gitignore = false\n")
    data = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"]).stdout)
    assert len(data["findings"]) == 5
