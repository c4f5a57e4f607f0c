"""Bad input: one clear error line each, every other file still checked, exit 2."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from lraudit.cli import main

from test_engine import BUGGY  # noqa: E402

PEP695 = """\
import torch

def make[T: torch.optim.Optimizer](opt: T) -> T:
    return opt

type Schedulers = list[torch.optim.lr_scheduler.LRScheduler]
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    (tmp_path / "good.py").write_text(BUGGY)
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "broken.py").write_text("optimizer = torch.optim.SGD(\n    params\n")
    (tmp_path / "latin.py").write_bytes(b"optimizer = 1  # caf\xe9\n")
    (tmp_path / "binary.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00optimizer")
    (tmp_path / "modern.py").write_text(PEP695)
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "self.py").symlink_to(tmp_path / "self.py")
    for skipped in (".git", ".venv", "build", "node_modules", "__pycache__"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.py").write_text("def f(:\n  optimizer\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "also_good.py").write_text(BUGGY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_bad_input_reported_others_checked(tree):
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", ".", "missing.py"])
    assert res.exit_code == 2
    data = json.loads(res.stdout)
    errors = {e["path"]: e["message"] for e in data["errors"]}
    assert set(errors) == {"broken.py", "latin.py", "binary.py", "loop", "self.py", "missing.py"}
    assert errors["broken.py"].startswith("syntax error at line")
    assert errors["latin.py"] == "cannot decode as utf-8: invalid byte 0xe9 on line 1"
    assert "binary" in errors["binary.py"]
    assert "symbolic link loop" in errors["loop"] and "symbolic link loop" in errors["self.py"]
    assert errors["missing.py"] == "no such file or directory"
    # good.py, empty.py, modern.py (3.12 syntax parses on any Python), sub/also_good.py
    assert data["files_checked"] == 4
    assert sorted({f["path"] for f in data["findings"]}) == ["good.py", "sub/also_good.py"]


def test_text_report_names_each_error_once(tree):
    res = CliRunner().invoke(main, ["check", "--no-cache", "missing_dir"])
    assert res.exit_code == 2
    assert res.stdout.count("error: missing_dir: no such file or directory") == 1


def test_excluded_dirs_are_still_checked_when_named(tree):
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", "build"])
    data = json.loads(res.stdout)
    assert res.exit_code == 2 and [e["path"] for e in data["errors"]] == [os.path.join("build", "x.py")]


def test_empty_and_modern_files_alone_are_clean(tree):
    res = CliRunner().invoke(main, ["check", "--no-cache", "empty.py", "modern.py"])
    assert res.exit_code == 0, res.output
    assert "All checks passed! (2 files checked)" in res.stdout


def test_unreadable_file(tree):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    (tree / "secret.py").write_text("optimizer = 1\n")
    os.chmod(tree / "secret.py", 0)
    res = CliRunner().invoke(main, ["check", "--no-cache", "secret.py"])
    assert res.exit_code == 2 and "cannot read" in res.stdout


def test_a_directory_ignored_by_an_outer_gitignore_is_checked_when_named(tmp_path):
    """Like site-packages inside a git-tracked ~/.pyenv: naming the directory means checking it."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/versions\n", encoding="utf-8")
    package = tmp_path / "versions" / "lib" / "pkg"
    package.mkdir(parents=True)
    (package / "train.py").write_text("x = 1\n", encoding="utf-8")
    (package / ".gitignore").write_text("skipped.py\n", encoding="utf-8")
    (package / "skipped.py").write_text("x = 2\n", encoding="utf-8")
    from lraudit.config import resolve_settings
    from lraudit.discovery import discover

    files, errors = discover([str(package)], resolve_settings([str(package)], isolated=True))
    assert [f.path for f in files] == [str(package / "train.py")] and errors == []
