"""The real pre-commit flow: `pre-commit try-repo` of this working tree against a temporary git repo.

The hook repo is a fresh git repo holding a copy of the working tree's package files (try-repo on the
development checkout itself would miss uncommitted files). pre-commit builds the hook environment
from it with pip, exactly as users get it: lraudit's core dependencies only, no torch.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_engine import BUGGY, CLEAN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _pre_commit() -> list:
    exe = shutil.which("pre-commit")
    if exe:
        return [exe]
    try:
        import pre_commit  # noqa: F401
    except ImportError:
        pytest.skip("pre-commit is not installed")
    return [sys.executable, "-m", "pre_commit"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=cwd, check=True, capture_output=True,
    )


def make_hook_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "lraudit", dest / "lraudit", ignore=ignore)
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "hooks")
    return dest


def test_hook_fails_on_buggy_script_then_passes(tmp_path):
    cmd = _pre_commit()
    hooks = make_hook_repo(tmp_path / "hooks")
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    (project / "train.py").write_text(BUGGY)
    (project / "notes.txt").write_text("scheduler.step() before optimizer.step()\n")
    git(project, "add", "-A")
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pc-home"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PRE_COMMIT", None)

    def try_repo():
        return subprocess.run(
            [*cmd, "try-repo", str(hooks), "lraudit", "--all-files", "--color", "never"],
            cwd=project, env=env, capture_output=True, text=True, timeout=300,
        )

    first = try_repo()
    out = first.stdout + first.stderr
    assert first.returncode == 1, out
    assert "train.py:9:5: LR001" in out and "Failed" in out

    # fixed script, and the hook installed the way users configure it (repo + rev), so that its
    # environment stays in PRE_COMMIT_HOME for inspection
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hooks, capture_output=True, text=True).stdout.strip()
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hooks}\n  rev: {rev}\n  hooks:\n  - id: lraudit\n"
    )
    (project / "train.py").write_text(CLEAN)
    git(project, "add", "-A")
    second = subprocess.run(
        [*cmd, "run", "--all-files", "--color", "never"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Passed" in second.stdout

    envs = list((tmp_path / "pc-home").glob("repo*/py_env-*"))
    assert envs, "pre-commit made no python environment"
    site = list(envs[0].glob("lib/python*/site-packages"))
    assert site and (site[0] / "libcst").is_dir() and not (site[0] / "torch").exists()
