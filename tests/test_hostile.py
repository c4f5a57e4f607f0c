"""Hostile and huge input (issue 13): one defect per test, each reproduced from the issue's report.

Crashes, hangs and signals run ``lraudit check`` in a subprocess (the segfault input would take the
test process down otherwise). No test asserts a wall-clock time: cost is checked in work units.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lraudit import checks, file_analysis
from lraudit.analysis import budget as budget_module
from lraudit.cache import Cache
from lraudit.config import ConfigError, resolve_settings
from lraudit.engine import check_paths, check_text, exit_status

ROOT = Path(__file__).resolve().parents[1]

HEADER = (
    "import torch\n"
    "from torch.optim import lr_scheduler\n"
    "opt = torch.optim.SGD([], lr=0.1)\n"
    "sched = lr_scheduler.StepLR(opt, 1)\n"
)
# LR001 on line 6 (scheduler stepped before the optimizer): what every "other file" must still report.
BUGGY = HEADER + "for epoch in range(3):\n    sched.step()\n    opt.step()\n"
# LR008 (`get_lr()`, a safe fix) on line 8.
FIXABLE = HEADER + "for epoch in range(3):\n    opt.step()\n    sched.step()\n    print(sched.get_lr())\n"
NESTED_PARENS = HEADER + "x = " + "(" * 1300 + "1" + ")" * 1300 + "\n"


def lraudit(*args, cwd, timeout=120, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    env.pop("CI", None)
    return subprocess.run([sys.executable, "-m", "lraudit", *args], cwd=str(cwd), env=env, capture_output=True,
                          timeout=timeout, **kw)


def settings(tmp_path, **kw):
    return resolve_settings([str(tmp_path)], isolated=True, **kw)


def check(tmp_path, *paths, **kw):
    kw.setdefault("use_cache", False)
    return check_paths([str(p) for p in paths] or [str(tmp_path)], settings(tmp_path), **kw)


def rules_of(result):
    return sorted((Path(f.path).name, f.line, f.rule) for f in result.findings)


# -- 1. a crash never loses the run ----------------------------------------------------------------


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_nested_parentheses_that_crash_libcst_are_one_error_line(tmp_path, jobs):
    (tmp_path / "paren.py").write_text(NESTED_PARENS)
    (tmp_path / "train.py").write_text(BUGGY)
    for i in range(8):  # enough files for the pool with -j 2
        (tmp_path / f"other{i}.py").write_text(BUGGY)
    proc = lraudit("check", "--no-cache", "-j", jobs, "--format", "json", ".", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert [e["path"] for e in data["errors"]] == ["paren.py"]
    assert "too many nested parentheses" in data["errors"][0]["message"]
    assert sorted({f["path"] for f in data["findings"]}) == sorted([f"other{i}.py" for i in range(8)] + ["train.py"])
    assert data["files_checked"] == 9


_CRASHING_POOL = """
import os, signal, sys
from lraudit import engine, worker_pool
from lraudit.config import resolve_settings
real = worker_pool._worker
def worker(args):
    if "CRASH_THE_WORKER" in args[0].text:
        os.kill(os.getpid(), signal.SIGSEGV)
    return real(args)
worker_pool._worker = worker
settings = resolve_settings(["."], isolated=True)
result = engine.check_paths(["."], settings, jobs=2, use_cache=False)
print(len(result.findings), result.files_checked)
for e in result.errors:
    print("ERROR", e["path"], e["message"])
"""


def test_a_worker_that_dies_costs_one_error_line_and_the_pool_goes_on(tmp_path):
    for i in range(40):
        (tmp_path / f"f{i:02}.py").write_text(BUGGY)
    (tmp_path / "f17.py").write_text(BUGGY + "# CRASH_THE_WORKER\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _CRASHING_POOL], cwd=str(tmp_path), env=env, capture_output=True,
                          timeout=300, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "39 39"
    assert len(lines) == 2 and lines[1].startswith("ERROR f17.py internal error in lraudit: the analysis of this file "
                                                   "crashed its process (SIGSEGV)")


def test_an_unexpected_exception_outside_the_rules_is_one_error_line(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text(BUGGY)
    (tmp_path / "b.py").write_text(BUGGY)
    real = file_analysis._analyse_here

    def broken(job, rules, unsafe):
        if job.path.endswith("a.py"):
            raise KeyError("cells")
        return real(job, rules, unsafe)

    monkeypatch.setattr(file_analysis, "_analyse_here", broken)
    result = check(tmp_path)
    assert result.errors == [{"path": str(tmp_path / "a.py"), "message": "internal error in lraudit: KeyError: 'cells'"}]
    assert rules_of(result) == [("b.py", 6, "LR001")]


_POOL_THAT_NEVER_STARTS = """
from lraudit import engine, worker_pool
from lraudit.config import resolve_settings
def init(mark_dir):
    raise OSError("no worker can start here")
worker_pool._pool_init = init
settings = resolve_settings(["."], isolated=True)
result = engine.check_paths(["."], settings, jobs=2, use_cache=False)
print(len(result.findings), result.files_checked, len(result.errors))
"""


def test_a_pool_whose_workers_cannot_start_falls_back_to_this_process(tmp_path):
    for i in range(40):
        (tmp_path / f"f{i:02}.py").write_text(BUGGY)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _POOL_THAT_NEVER_STARTS], cwd=str(tmp_path), env=env,
                          capture_output=True, timeout=300, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["40", "40", "0"]


MALFORMED_NOTEBOOKS = {
    "metadata_string": {"cells": [{"cell_type": "code", "source": ["import torch\n"]}], "metadata": "python"},
    "kernelspec_string": {"cells": [{"cell_type": "code", "source": ["import torch\n"]}],
                          "metadata": {"kernelspec": "python3"}},
    "null_in_source": {"cells": [{"cell_type": "code", "source": ["import torch\n", None]}], "metadata": {}},
}


@pytest.mark.parametrize("name", sorted(MALFORMED_NOTEBOOKS) + ["deeply_nested"])
def test_malformed_notebook_is_one_error_line_even_with_exit_zero(tmp_path, name):
    if name == "deeply_nested":
        text = '{"cells": [], "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    else:
        text = json.dumps(MALFORMED_NOTEBOOKS[name])
    (tmp_path / "bad.ipynb").write_text(text)
    (tmp_path / "train.py").write_text(BUGGY)
    proc = lraudit("check", "--no-cache", "--exit-zero", ".", cwd=tmp_path)
    out = proc.stdout.decode()
    assert proc.returncode == 2, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert [ln for ln in out.splitlines() if ln.startswith("error:")] == [
        ln for ln in out.splitlines() if ln.startswith("error: bad.ipynb: ")]
    assert len([ln for ln in out.splitlines() if ln.startswith("error:")]) == 1
    assert "train.py:6:5: LR001" in out


# -- 2. no hang on what is not a regular file ------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_named_pipe_walked_or_named_is_an_error_line_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "train.py").write_text(BUGGY)
    for args in ([".", "--format", "json"], ["pipe.py", "train.py", "--format", "json"]):
        proc = lraudit("check", "--no-cache", *args, cwd=tmp_path, timeout=60)
        data = json.loads(proc.stdout)
        assert proc.returncode == 2
        assert data["errors"] == [{"path": "pipe.py", "message": "not a regular file (a named pipe), not read"}]
        assert [f["path"] for f in data["findings"]] == ["train.py"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_an_error_line_not_gigabytes(tmp_path):
    (tmp_path / "train.py").write_text(BUGGY)
    proc = lraudit("check", "--no-cache", "/dev/zero", "train.py", cwd=tmp_path, timeout=60)
    out = proc.stdout.decode()
    assert proc.returncode == 2
    assert "error: /dev/zero: not a regular file (a device), not read" in out
    assert "train.py:6:5: LR001" in out


# -- 3. near-linear cost, bounded in work units ----------------------------------------------------


def _unittest_module(n: int) -> str:
    """torch's own scheduler tests in shape: one optimizer, one scheduler per test (385 s at 400)."""
    out = [HEADER, "import unittest\n\n\nclass TestLR(unittest.TestCase):\n"]
    for i in range(n):
        out.append(f"    def test_{i}(self):\n"
                   f"        scheduler = lr_scheduler.StepLR(opt, step_size={i + 1})\n"
                   f"        for epoch in range(3):\n"
                   f"            opt.step()\n"
                   f"            scheduler.step()\n")
    return "".join(out)


def _work_for(source: str, monkeypatch) -> int:
    spent = []
    real = budget_module.WorkBudget.spend

    def spend(self, units, what="rules"):
        spent.append(units)
        return real(self, units, what)

    monkeypatch.setattr(budget_module.WorkBudget, "spend", spend)
    assert checks.analyse_source(source, "t.py").cut_short is None
    return sum(spent)


def test_scheduler_pairs_grow_linearly_with_tests_of_one_optimizer(monkeypatch):
    # Each test's scheduler is stepped in its own entry point: no pair to compare at all (the pairing
    # compared every scheduler with every other in every entry point: 385 s at 400 tests).
    small, large = _work_for(_unittest_module(50), monkeypatch), _work_for(_unittest_module(200), monkeypatch)
    assert large <= 4 * small + 10


def test_rules_past_their_work_budget_are_cut_short_with_a_note(tmp_path, monkeypatch):
    # 12 schedulers of one optimizer stepped together: LR011 pairs them (the one pairwise rule).
    monkeypatch.setattr(budget_module.WorkBudget.__init__, "__defaults__", (30,))
    many = HEADER + "".join(f"s{i} = lr_scheduler.ExponentialLR(opt, 0.9)\n" for i in range(12))
    many += "for epoch in range(3):\n    opt.step()\n" + "".join(f"    s{i}.step()\n" for i in range(12))
    (tmp_path / "many.py").write_text(many)
    result = check_paths([str(tmp_path)], settings(tmp_path, select=["LR011"]), use_cache=False)
    assert [n["path"] for n in result.notes] == [str(tmp_path / "many.py")]
    assert result.notes[0]["message"] == ("analysis cut short: the rules exceeded the analysis budget of 30 work "
                                          "units (stopped in LR011); findings of this file may be incomplete")
    assert len(result.findings) == 11  # what was found before the bound stands: s1..s11 each pair with s0
    assert exit_status(result) == 1  # the note never changes the exit status
    monkeypatch.setattr(budget_module.WorkBudget.__init__, "__defaults__", (budget_module.MAX_RULE_WORK,))
    unbounded = check_paths([str(tmp_path)], settings(tmp_path, select=["LR011"]), use_cache=False)
    assert unbounded.notes == [] and len(unbounded.findings) == 11


def test_interpretation_budget_is_a_note_not_silence(tmp_path, monkeypatch):
    from lraudit.analysis import interpreter

    monkeypatch.setattr(interpreter, "MAX_STATEMENTS", 5)
    (tmp_path / "train.py").write_text(BUGGY + "".join(f"x{i} = {i}\n" for i in range(20)))
    result = check(tmp_path)
    assert result.findings == [] and result.errors == []
    assert len(result.notes) == 1 and "interpretation budget" in result.notes[0]["message"]
    assert exit_status(result) == 0


def test_expression_python_rejects_never_reaches_libcst(monkeypatch):
    # A 10 KB sum CPython refuses (recursion in its parser): reported from ast, libcst never parses it.
    monkeypatch.setattr(checks, "parse", lambda source: pytest.fail("libcst parsed a file Python refuses"))
    result = check_text(HEADER + "x = " + "+".join("1" for _ in range(5000)) + "\n", "t.py",
                        resolve_settings(["."], isolated=True))
    assert len(result.errors) == 1 and "Python refuses this code" in result.errors[0]["message"]


# -- 4. fixes never lose data ----------------------------------------------------------------------


def test_fix_is_not_written_over_an_edit_made_meanwhile(tmp_path, monkeypatch):
    path = tmp_path / "train.py"
    path.write_text(FIXABLE)
    real = file_analysis.analyse

    def analyse_then_user_saves(job, rules, unsafe):
        raw = real(job, rules, unsafe)
        path.write_text(FIXABLE + "# the user's edit\n")
        return raw

    monkeypatch.setattr(file_analysis, "analyse", analyse_then_user_saves)
    result = check(tmp_path, fix=True)
    assert path.read_text() == FIXABLE + "# the user's edit\n"
    assert result.fixed == [] and rules_of(result) == [("train.py", 8, "LR008")]
    assert result.errors == [{"path": str(path), "message": "fix not written: the file changed since it was read "
                                                            "(edited meanwhile?); run lraudit again"}]


def test_read_only_file_keeps_its_finding_and_says_why(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(FIXABLE)
    os.chmod(path, 0o444)
    result = check(tmp_path, fix=True)
    assert path.read_text() == FIXABLE
    assert result.fixed == [] and rules_of(result) == [("train.py", 8, "LR008")]
    assert result.errors == [{"path": str(path), "message": "fix not written: the file is read-only"}]


def test_report_is_never_written_over_an_input(tmp_path):
    (tmp_path / "t.py").write_text(BUGGY)
    proc = lraudit("check", "-o", "t.py", "t.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to write the report over it" in proc.stderr.decode()
    assert (tmp_path / "t.py").read_text() == BUGGY
    proc = lraudit("check", "-o", "report.py", ".", cwd=tmp_path)  # would be discovered and checked
    assert proc.returncode == 2 and not (tmp_path / "report.py").exists()


def test_fix_keeps_hard_links(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(FIXABLE)
    os.link(path, tmp_path / "link.py")
    inode = path.stat().st_ino
    check(tmp_path, path, fix=True)
    assert path.stat().st_ino == inode
    assert (tmp_path / "link.py").read_text() == path.read_text() == FIXABLE.replace("get_lr()", "get_last_lr()")


@pytest.mark.parametrize("eol", ["\r", "\r\n"])
def test_fix_keeps_line_endings_and_the_final_one(tmp_path, eol):
    path = tmp_path / "train.py"
    path.write_bytes(FIXABLE.replace("\n", eol).encode())
    result = check(tmp_path, fix=True)
    assert len(result.fixed) == 1
    assert path.read_bytes() == FIXABLE.replace("get_lr()", "get_last_lr()").replace("\n", eol).encode()


def test_notebook_fix_touches_only_the_fixed_cell(tmp_path):
    cells = [
        '  {\r\n   "cell_type": "markdown",\r\n   "metadata": {},\r\n   "source": ["caf\\u00e9"]\r\n  }',
        '  {\r\n   "cell_type": "code",\r\n   "execution_count": null,\r\n   "metadata": {},\r\n   "outputs": [],\r\n'
        '   "source": [\r\n' + ",\r\n".join("    " + json.dumps(line) for line in FIXABLE.splitlines(True))
        + "\r\n   ]\r\n  }",
        '  {\r\n   "cell_type": "code",\r\n   "metadata": {},\r\n   "outputs": [],\r\n   "source": ["x = \'\\u00e9\'"]\r\n  }',
    ]
    text = '{\r\n "cells": [\r\n' + ",\r\n".join(cells) + '\r\n ],\r\n "metadata": {"a":  1},\r\n "nbformat": 4\r\n}\r\n'
    path = tmp_path / "nb.ipynb"
    path.write_bytes(text.encode())
    result = check(tmp_path, fix=True)
    assert len(result.fixed) == 1
    assert path.read_bytes() == text.replace("sched.get_lr()", "sched.get_last_lr()").encode()


# -- 5. no silent half-analysis; memory bounded ----------------------------------------------------


def test_file_over_the_size_bound_is_a_note_in_every_format(tmp_path):
    (tmp_path / "big.py").write_text("x = 1\n" * 200_000)  # 1.2 MB
    (tmp_path / "train.py").write_text(BUGGY.replace("    sched.step()\n    opt.step()\n", "    opt.step()\n"
                                                     "    sched.step()\n"))
    proc = lraudit("check", "--no-cache", ".", cwd=tmp_path)
    assert proc.returncode == 0
    assert "note: big.py: not analysed: 1.2 MB is over the size bound of 1.0 MB" in proc.stdout.decode()
    assert "1 file not fully analysed" in proc.stdout.decode()
    data = json.loads(lraudit("check", "--no-cache", "--format", "json", ".", cwd=tmp_path).stdout)
    assert [n["path"] for n in data["notes"]] == ["big.py"] and data["errors"] == []
    sarif = json.loads(lraudit("check", "--no-cache", "--format", "sarif", ".", cwd=tmp_path).stdout)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["level"] for n in notes] == ["note"] and "size bound" in notes[0]["message"]["text"]
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is True
    (tmp_path / "pyproject.toml").write_text('[tool.lraudit]\nmax-file-size = "2MB"\n')
    data = json.loads(lraudit("check", "--no-cache", "--format", "json", ".", cwd=tmp_path).stdout)
    assert "notes" not in data and data["files_checked"] == 2


def test_oversized_file_is_never_read(tmp_path, monkeypatch):
    (tmp_path / "big.py").write_text("x = 1\n" * 200_000)
    read = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: read.append(n) or real(fd, n))
    result = check(tmp_path)
    assert read == [] and len(result.notes) == 1


# -- 6. valid code however deep Python accepts it ----------------------------------------------------


@pytest.mark.parametrize("shape", ["elif", "strings", "calls"])
def test_deep_valid_code_is_analysed(tmp_path, shape):
    if shape == "elif":
        body = "if epoch == 0:\n        pass\n" + "".join(f"    elif epoch == {i}:\n        pass\n" for i in range(1, 325))
    elif shape == "strings":
        body = "name = (\n" + "".join(f"        'part{i}'\n" for i in range(324)) + "    )\n"
    else:
        body = "y = " + "f(" * 143 + "1" + ")" * 143 + "\n"
    source = BUGGY + "    " + body
    (tmp_path / "deep.py").write_text(source)
    result = check(tmp_path)
    assert result.errors == [] and result.notes == []
    assert rules_of(result) == [("deep.py", 6, "LR001")]


def test_code_beyond_libcsts_parser_is_a_note_not_a_syntax_error(tmp_path):
    (tmp_path / "strings.py").write_text(HEADER + "x = (\n" + "".join(f"    's{i}'\n" for i in range(5000)) + ")\n")
    result = check(tmp_path)
    assert result.errors == []
    assert len(result.notes) == 1 and "Python accepts this file but libcst's parser does not" in result.notes[0]["message"]


# -- 7. cache -----------------------------------------------------------------------------------------


def test_cache_of_a_plain_run_does_not_hide_unsafe_fixes(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(BUGGY)
    cache_dir = tmp_path / ".cache"
    plain = check(tmp_path, path, use_cache=True, cache_dir=str(cache_dir))
    assert rules_of(plain) == [("train.py", 6, "LR001")]
    diff = check(tmp_path, path, use_cache=True, cache_dir=str(cache_dir), diff=True, unsafe_fixes=True)
    assert len(diff.diffs) == 1
    fixed = check(tmp_path, path, use_cache=True, cache_dir=str(cache_dir), fix=True, unsafe_fixes=True)
    assert [f.rule for f in fixed.fixed] == ["LR001"] and fixed.findings == []
    assert path.read_text() != BUGGY


@pytest.mark.parametrize("entry", [
    ["DIGEST", {"f": [[1, 2]]}], ["DIGEST", {"f": "x"}], ["DIGEST", {"e": 3}], ["DIGEST", []], "nonsense",
    ["DIGEST", {"f": [[1, 1, 1, 1, "LR999", "m", False]]}], ["DIGEST", {"f": [[1, 1, 1, 1, "LR001", "m", False]],
                                                                        "n": 5}],
])
def test_a_cache_entry_of_the_wrong_shape_is_a_miss(tmp_path, entry):
    path = tmp_path / "train.py"
    path.write_text(BUGGY)
    cache_dir = tmp_path / ".cache"
    check(tmp_path, path, use_cache=True, cache_dir=str(cache_dir))
    cache = Cache(cache_dir, settings(tmp_path).rules)
    data = json.loads(cache.file.read_text())
    (key, (digest, _)), = data["entries"].items()
    data["entries"][key] = [digest if x == "DIGEST" else x for x in entry] if isinstance(entry, list) else entry
    cache.file.write_text(json.dumps(data))
    for _ in range(2):
        result = check(tmp_path, path, use_cache=True, cache_dir=str(cache_dir))
        assert rules_of(result) == [("train.py", 6, "LR001")] and result.errors == []


def test_concurrent_runs_merge_their_cache_entries(tmp_path):
    rules = settings(tmp_path).rules
    first, second = Cache(tmp_path, rules), Cache(tmp_path, rules)
    first.put("/a.py", "d1", {"f": []})
    second.put("/b.py", "d2", {"e": "syntax error"})
    first.save()
    second.save()
    merged = Cache(tmp_path, rules)
    assert merged.get("/a.py", "d1") == {"f": []} and merged.get("/b.py", "d2") == {"e": "syntax error"}


# -- 9. config and CLI ---------------------------------------------------------------------------------


def test_non_utf8_pyproject_found_during_discovery_is_an_error(tmp_path):
    (tmp_path / "pyproject.toml").write_bytes('[tool.lraudit]\nselect = ["LR002"]\n# caf\xe9\n'.encode("latin-1"))
    (tmp_path / "train.py").write_text(BUGGY)
    proc = lraudit("check", "--no-cache", ".", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().startswith("lraudit: error: ") and "pyproject.toml" in proc.stderr.decode()
    assert len(proc.stderr.decode().splitlines()) == 1


def test_deeply_nested_toml_is_one_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.lraudit]\nselect = " + "[" * 5000 + "]" * 5000 + "\n")
    proc = lraudit("check", "--no-cache", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [f"lraudit: error: {tmp_path / 'pyproject.toml'}: invalid TOML: nested "
                                                 "too deeply to read"]


def test_empty_select_is_a_usage_error(tmp_path):
    (tmp_path / "train.py").write_text(BUGGY)
    proc = lraudit("check", "--select", "", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "empty rule selector" in proc.stderr.decode()
    with pytest.raises(ConfigError):
        resolve_settings(["."], isolated=True, select=[","])


def test_unclosed_suppression_suppresses_nothing_and_is_reported(tmp_path):
    (tmp_path / "train.py").write_text(BUGGY.replace("    sched.step()\n", "    sched.step()  # lraudit: ignore[LR001\n"))
    result = check(tmp_path, report_unused_ignores=True)
    assert rules_of(result) == [("train.py", 6, "LR001")]
    assert [u.message for u in result.unused_ignores] == [
        "malformed suppression (unclosed `[`): it suppresses nothing (`# lraudit: ignore[LR001`)"]


@pytest.mark.parametrize("bad_line, where", [
    ("x = 1\u00a0+ 2\n", "line 5, column 6: invalid non-printable character U+00A0"),
    ("if x:\n\ty = 1\n        z = 2\n", "line 7, column"),
])
def test_tokenizer_errors_are_reported_where_they_are(tmp_path, bad_line, where):
    (tmp_path / "t.py").write_text(HEADER + bad_line)
    result = check(tmp_path)
    assert len(result.errors) == 1 and where in result.errors[0]["message"]


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse non-UTF-8 names")
def test_undecodable_file_name_keeps_json_valid_utf8(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/caf\xe9.py"
    with open(name, "w") as fh:
        fh.write(BUGGY)
    for fmt in ("json", "sarif", "text"):
        proc = lraudit("check", "--no-cache", "--format", fmt, ".", cwd=tmp_path)
        assert proc.returncode == 1
        text = proc.stdout.decode("utf-8")  # strict: raises on invalid UTF-8
        if fmt == "json":
            assert json.loads(text)["findings"][0]["path"] == "caf\udce9.py"
        elif fmt == "text":
            assert text.startswith("caf\\xe9.py:6:5: LR001")


def test_deleted_working_directory_is_one_clear_line(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); from lraudit.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", script, "check"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "lraudit: error: the current directory no longer exists (deleted?); cd somewhere that does"]


def _children(pid: int):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _gone(pids, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for p in pids:
            try:
                with open(f"/proc/{p}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    alive.append(p)
            except OSError:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the worker processes")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_and_terminate_end_the_worker_pool(tmp_path, sig, code):
    slow = _unittest_module(150)  # about a second of analysis per file: minutes for the whole tree
    for i in range(64):
        (tmp_path / f"t{i:02}.py").write_text(slow + f"# {i}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, "-m", "lraudit", "check", "--no-cache", "-j", "2", "."],
                            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        workers = [p for p in _children(proc.pid)]
    assert workers, "the pool never started"
    time.sleep(0.5)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test is about
        proc.kill()
        pytest.fail("lraudit did not stop after the signal")
    assert proc.returncode == code, err.decode()
    assert "Traceback" not in err.decode()
    if sig == signal.SIGINT:
        assert err.decode().strip().splitlines()[-1] == "lraudit: interrupted"
    assert _gone(workers), "worker processes left behind"
