"""`--force-exclude` as ruff has it: a file named on the command line is checked as asked, unless
--force-exclude (or `force-exclude = true`) makes exclude/extend-exclude apply to it and its parents;
and the real pre-commit flow, whose hooks pass the flag, skips a vendored folder the config excludes."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from lraudit.cli import main
from lraudit.config import resolve_settings
from lraudit.discovery import discover, force_excluded

from test_engine import BUGGY, CLEAN  # noqa: E402
from test_precommit import _pre_commit, git, make_hook_repo  # noqa: E402


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def vendored(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml",
          "[tool.lraudit]\nextend-exclude = ['third_party', 'scripts/legacy_*.py']\n")
    for rel in ("train.py", "third_party/vendored.py", "third_party/deep/er.py", "scripts/legacy_a.py",
                "scripts/b.py", "build/gen.py"):
        write(tmp_path / rel, BUGGY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


NAMED = ["train.py", "third_party/vendored.py", "third_party/deep/er.py", "scripts/legacy_a.py",
         "scripts/b.py", "build/gen.py"]


def checked(args):
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", *args])
    return sorted({f["path"] for f in json.loads(res.stdout)["findings"]})


def test_named_files_are_checked_without_the_flag(vendored):
    assert checked(NAMED) == sorted(NAMED)
    assert checked([]) == ["scripts/b.py", "train.py"]  # walking applies every exclude


def test_force_exclude_applies_excludes_and_parents(vendored):
    assert checked(["--force-exclude", *NAMED]) == ["scripts/b.py", "train.py"]
    # absolute paths and ./ prefixes are the same files
    assert checked(["--force-exclude", str(vendored / "third_party" / "vendored.py"), "./build/gen.py"]) == []


def test_force_exclude_covers_named_directories(vendored):
    assert checked(["third_party"]) == ["third_party/deep/er.py", "third_party/vendored.py"]
    assert checked(["--force-exclude", "third_party", "third_party/deep", "."]) == ["scripts/b.py", "train.py"]


def test_force_exclude_from_config(vendored):
    text = (vendored / "pyproject.toml").read_text()
    (vendored / "pyproject.toml").write_text(text + "force-exclude = true\n")
    assert checked(NAMED) == ["scripts/b.py", "train.py"]
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", "third_party/vendored.py"])
    assert res.exit_code == 0 and json.loads(res.stdout)["files_checked"] == 0


def test_force_exclude_stops_at_the_config_directory(tmp_path):
    # the project itself lives in a directory named like a default exclude: its files are not excluded
    project = tmp_path / "build"
    write(project / "pyproject.toml", "[tool.lraudit]\nignore = []\n")
    target = write(project / "src" / "train.py", BUGGY)
    settings = resolve_settings([str(target)])
    assert not force_excluded(str(target), settings)
    assert force_excluded(str(write(project / "src" / "venv" / "x.py", BUGGY)), settings)
    settings.force_exclude = True
    files, errors = discover([str(target)], settings)
    assert [f.path for f in files] == [str(target)] and errors == []


def test_per_file_ignores_apply_to_named_files(vendored):
    write(vendored / "pyproject.toml", "[tool.lraudit.per-file-ignores]\n'scripts/**' = ['LR001']\n")
    assert checked(["scripts/b.py", "train.py"]) == ["train.py"]


def test_precommit_hook_skips_the_excluded_vendored_folder(tmp_path):
    """README's own example: extend-exclude = ["third_party"]; pre-commit names every file."""
    cmd = _pre_commit()
    hooks = make_hook_repo(tmp_path / "hooks")
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    write(project / "pyproject.toml", '[tool.lraudit]\nextend-exclude = ["third_party"]\n')
    write(project / "third_party" / "vendored.py", BUGGY)
    write(project / "train.py", CLEAN)
    git(project, "add", "-A")
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pc-home"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PRE_COMMIT", None)

    def try_repo():
        return subprocess.run(
            [*cmd, "try-repo", str(hooks), "lraudit", "--all-files", "--color", "never", "--verbose"],
            cwd=project, env=env, capture_output=True, text=True, timeout=300,
        )

    first = try_repo()
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert "Passed" in out and "vendored.py" not in out
    # the same hook still fails on a bug outside the excluded folder
    write(project / "train.py", BUGGY)
    git(project, "add", "-A")
    second = try_repo()
    out = second.stdout + second.stderr
    assert second.returncode == 1, out
    assert "train.py:9:5: LR001" in out and "vendored.py" not in out
