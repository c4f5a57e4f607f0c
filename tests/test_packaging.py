"""The distribution users install: `python -m build` of a copy of the tree gives a torch-lraudit wheel
whose metadata, extras and console script are right, and whose `lraudit` command runs.

Built without network (`--no-isolation`: the test extra brings setuptools and build), from a copy of
the package files so the working tree gets no build/ or *.egg-info.
"""
from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lraudit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.2.0"

pytest.importorskip("build", reason="the `build` package (test extra) is not installed")
pytest.importorskip("setuptools", reason="setuptools (test extra) is not installed")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    shutil.copytree(ROOT / "lraudit", src / "lraudit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"), str(src)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list((work / "dist").glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _dist_info(whl: Path, name: str) -> str:
    with zipfile.ZipFile(whl) as zf:
        (member,) = [n for n in zf.namelist() if n.endswith(".dist-info/" + name)]
        return zf.read(member).decode("utf-8")


def test_version_has_one_source():
    assert lraudit.__version__ == VERSION
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "torch-lraudit"
    assert "version" not in project and "version" in project["dynamic"], "the version lives in lraudit/__init__.py"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## \[?(\d+\.\d+\.\d+)", changelog, re.M)
    assert first and first.group(1) == VERSION, "CHANGELOG's newest entry is the package version"


def test_wheel_name_and_metadata(wheel):
    assert re.fullmatch(rf"torch_lraudit-{re.escape(VERSION)}-py3-none-any\.whl", wheel.name), wheel.name
    meta = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "torch-lraudit"
    assert meta["Version"] == VERSION
    assert meta["Requires-Python"] == ">=3.9"
    requires = meta.get_all("Requires-Dist")
    core = sorted(r.split(">")[0].split(";")[0].strip() for r in requires if "extra ==" not in r)
    assert core == ["click", "libcst", "rich", "tomli"], "the core needs no torch"
    extras = {}
    for req in requires:
        m = re.search(r'extra == "([^"]+)"', req)
        if m:
            extras.setdefault(m.group(1), []).append(re.split(r"[<>=;\[ ]", req)[0])
    assert sorted(meta.get_all("Provides-Extra")) == sorted(
        ["runtime", "lightning", "transformers", "plot", "tensorboard", "test", "dev"]
    )
    assert extras["runtime"] == ["torch"]
    assert set(extras["lightning"]) == {"torch", "lightning"}
    assert set(extras["transformers"]) == {"torch", "transformers", "accelerate"}
    assert extras["plot"] == ["matplotlib"]
    assert extras["tensorboard"] == ["tensorboard"]  # lraudit export --to tensorboard, no torch needed
    assert any(r.startswith("torch-lraudit[test]") for r in requires if 'extra == "dev"' in r)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Changelog", "Issues"} <= set(urls)
    assert any(c.startswith("Programming Language :: Python :: 3.9") for c in meta.get_all("Classifier"))


def test_wheel_entry_points_and_package(wheel):
    entry_points = _dist_info(wheel, "entry_points.txt")
    assert re.search(r"^\[console_scripts\]\nlraudit = lraudit\.cli:main$", entry_points, re.M), entry_points
    assert re.search(r"^\[pytest11\]\nlraudit = lraudit\.integrations\.pytest_plugin$", entry_points, re.M)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "lraudit/__init__.py" in names and "lraudit/cli.py" in names
    assert not any(n.startswith(("tests/", "fixtures/", "bench/")) for n in names)


def test_installed_console_script_runs(wheel, tmp_path):
    """pip installs the wheel (no deps: they are this environment's) and its `lraudit` script runs."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    script = target / "bin" / "lraudit"
    assert script.is_file()
    env = dict(os.environ, PYTHONPATH=str(target))
    version = subprocess.run([sys.executable, str(script), "--version"], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"lraudit, version {VERSION}", version
    where = subprocess.run([sys.executable, "-c", "import lraudit; print(lraudit.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.stdout.strip().startswith(str(target)), "the installed wheel, not the checkout, was imported"
