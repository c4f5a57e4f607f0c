"""Fixture projects (``fixtures/projects/<name>/``): several modules each, in their real layout, with
inline ``# expect: LRxxx`` markers compared exactly, checked two ways:

- the whole tree (``lraudit check fixtures/projects/<name>``): every marker of every file, nothing
  else; a file whose first line says ``# expect-error`` must be reported as an error;
- each entry file named alone (what pre-commit passes): exactly that file's markers, no error (its
  imports are read, never reported on).

Bad projects must also need the project: checked as a single module, the entry file misses at least
one of its markers (the recall comes from reading the other modules). Adding a project never means
editing this file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lraudit.checks import check_source
from lraudit.config import resolve_settings
from lraudit.engine import check_paths

PROJECTS = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
MARKER = re.compile(r"#\s*expect:\s*(LR\d{3}(?:\s*,\s*LR\d{3})*)")
NAMES = sorted(p.name for p in PROJECTS.iterdir() if p.is_dir())


def _markers(path: Path):
    found = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            found.update((number, code.strip()) for code in match.group(1).split(","))
    return found


def _sources(project: Path):
    return sorted(project.rglob("*.py"))


def _entries(project: Path):
    """Files that are run, not imported: a ``__main__`` guard or a ``main``/``train`` function."""
    return [p for p in _sources(project) if "__name__" in p.read_text(encoding="utf-8")
            or re.search(r"^def (main|train)\b", p.read_text(encoding="utf-8"), re.M)]


def _check(paths):
    settings = resolve_settings([str(p) for p in paths], isolated=True)
    return check_paths([str(p) for p in paths], settings, use_cache=False, jobs=1)


@pytest.mark.parametrize("name", NAMES)
def test_whole_tree_matches_markers(name):
    project = PROJECTS / name
    result = _check([project])
    actual = {(Path(f.path).resolve(), f.line, f.rule) for f in result.findings}
    expected = {(p.resolve(), line, rule) for p in _sources(project) for line, rule in _markers(p)}
    missing = sorted(expected - actual)
    extra = sorted((f.path, f.line, f.rule, f.message) for f in result.findings
                   if (Path(f.path).resolve(), f.line, f.rule) not in expected)
    assert not missing and not extra, f"missing={missing}\nextra={extra}"
    broken = {p.resolve() for p in _sources(project) if p.read_text(encoding="utf-8").startswith("# expect-error")}
    assert {Path(e["path"]).resolve() for e in result.errors} == broken


@pytest.mark.parametrize("name", NAMES)
def test_entry_file_alone_matches_its_markers(name):
    project = PROJECTS / name
    entries = _entries(project)
    assert entries, "a fixture project needs an entry file"
    for entry in entries:
        result = _check([entry])
        assert result.errors == [] and result.files_checked == 1
        actual = {(f.line, f.rule) for f in result.findings}
        assert actual == _markers(entry), f"{entry.relative_to(PROJECTS)}: {[f.message for f in result.findings]}"


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("_bad")] + ["cycle_broken"])
def test_bad_projects_need_the_project(name):
    """The entry's findings come from the other modules: alone, the module misses some of them."""
    for entry in _entries(PROJECTS / name):
        alone = {(f.line, f.rule) for f in check_source(entry.read_text(encoding="utf-8"), str(entry), project=False)}
        assert _markers(entry) - alone, f"{entry.name} finds everything alone: not a project fixture"


def test_every_project_has_a_good_twin_that_is_clean():
    bad = {n[:-4] for n in NAMES if n.endswith("_bad")}
    good = {n[:-5] for n in NAMES if n.endswith("_good")}
    assert bad and bad == good
    for name in good:
        assert not any(_markers(p) for p in _sources(PROJECTS / f"{name}_good"))
