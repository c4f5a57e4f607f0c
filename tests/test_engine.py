"""The static pipeline (lraudit.engine) without the CLI: decoding, prefilter, errors, fixes, pool."""
from __future__ import annotations

import os
import sys
import types

import pytest

from lraudit import checks, file_analysis, worker_pool
from lraudit.config import resolve_settings
from lraudit.engine import CheckResult, check_paths, check_text, exit_status
from lraudit.file_reading import DecodeError, decode_source
from lraudit.fix_apply import write_atomic
from lraudit.findings import Finding

BUGGY = """\
import torch
from torch.optim.lr_scheduler import StepLR

model = torch.nn.Linear(2, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = StepLR(optimizer, step_size=10)

for epoch in range(10):
    scheduler.step()
    for batch in range(5):
        loss = model(torch.randn(1, 2)).sum()
        loss.backward()
        optimizer.step()
"""
CLEAN = BUGGY.replace("    scheduler.step()\n", "") + "    scheduler.step()\n"


@pytest.fixture
def fake_rules(monkeypatch):
    """check_source replaced: one LR001 finding on every line holding `BUG` (records its calls)."""
    calls = []

    def fake(source, path, select=None, reads=None):
        calls.append(path)
        if "SYNTAX" in source:
            raise checks.SourceParseError("syntax error: bad thing", 2, 3)
        if "CRASH" in source:
            raise ValueError("boom")
        out = []
        for number, line in enumerate(source.splitlines(), 1):
            col = line.find("BUG")
            if col >= 0 and (select is None or "LR001" in select):
                out.append(Finding(path, number, col + 1, number, col + 4, "LR001", "bug here", fixable=True))
        return out

    monkeypatch.setattr(checks, "analyse_source", lambda *a, **kw: checks.SourceAnalysis(fake(*a, **kw)))
    monkeypatch.setattr(file_analysis, "_prefilter_fn", lambda text: True)
    return calls


def settings(tmp_path, **kw):
    return resolve_settings([str(tmp_path)], isolated=True, **kw)


def run(tmp_path, *paths, **kw):
    opts = {k: kw.pop(k) for k in list(kw) if k in ("select", "ignore", "extend_select")}
    return check_paths([str(p) for p in paths] or [str(tmp_path)], settings(tmp_path, **opts), use_cache=False, **kw)


# -- decoding ------------------------------------------------------------------------------------------


def test_decode_pep263_cookie_and_bom():
    assert decode_source("# -*- coding: latin-1 -*-\nx = 'é'\n".encode("latin-1")).text.endswith("'é'\n")
    bom = decode_source(b"\xef\xbb\xbfx = 1\n")
    assert bom.text == "x = 1\n" and bom.encoding == "utf-8-sig"
    assert decode_source(b"x = 1\r\n").text == "x = 1\r\n"  # no newline translation


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"x = 1\n\x00\x01\x02", "binary"),
        (b"x = 1\ny = '\xff'\n", "line 2"),
        (b"# coding: no-such-codec\nx = 1\n", "encoding"),
    ],
)
def test_decode_errors_are_clear(data, fragment):
    with pytest.raises(DecodeError) as info:
        decode_source(data)
    assert fragment in str(info.value)


def test_write_atomic_keeps_encoding_line_endings_and_mode(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes("# coding: latin-1\r\nx = 'é'\r\n".encode("latin-1"))
    os.chmod(path, 0o754)
    write_atomic(str(path), "# coding: latin-1\r\nx = 'è'\r\n", "latin-1")
    assert path.read_bytes() == "# coding: latin-1\r\nx = 'è'\r\n".encode("latin-1")
    assert (path.stat().st_mode & 0o777) == 0o754
    assert [p.name for p in tmp_path.iterdir()] == ["a.py"]  # no temp file left behind


# -- pipeline -----------------------------------------------------------------------------------------


def test_findings_errors_and_files_checked(tmp_path, fake_rules):
    (tmp_path / "a.py").write_text("x = 1  # BUG\n")
    (tmp_path / "b.py").write_text("x = 1\nSYNTAX\n")
    (tmp_path / "c.py").write_text("CRASH\n")
    (tmp_path / "d.py").write_text("fine\n")
    result = run(tmp_path)
    assert result.files_checked == 2
    assert [(os.path.basename(f.path), f.line, f.column, f.rule) for f in result.findings] == [("a.py", 1, 10, "LR001")]
    errors = {os.path.basename(e["path"]): e["message"] for e in result.errors}
    assert errors["b.py"] == "syntax error at line 2, column 3: bad thing"
    assert errors["c.py"].startswith("internal error in lraudit: ValueError: boom")
    assert exit_status(result) == 2


def test_exit_status():
    f = Finding("a.py", 1, 1, 1, 2, "LR001", "m")
    assert exit_status(CheckResult()) == 0
    assert exit_status(CheckResult(findings=[f])) == 1
    assert exit_status(CheckResult(findings=[f]), exit_zero=True) == 0
    assert exit_status(CheckResult(findings=[f], errors=[{"path": "x", "message": "y"}]), exit_zero=True) == 2


def test_prefilter_skips_parse_but_counts_file(tmp_path, fake_rules, monkeypatch):
    monkeypatch.setattr(file_analysis, "_prefilter_fn", lambda text: b"optim" in text)
    (tmp_path / "a.py").write_text("import os  # BUG\n")
    (tmp_path / "b.py").write_text("optimizer = 1  # BUG\n")
    result = run(tmp_path)
    assert result.files_checked == 2
    assert [os.path.basename(p) for p in fake_rules] == ["b.py"]
    assert len(result.findings) == 1


def test_real_prefilter_is_used(tmp_path):
    from lraudit.analysis import may_contain_findings

    file_analysis._prefilter_fn = None
    assert file_analysis.prefilter(b"import optim") == may_contain_findings(b"import optim")


def test_selection_and_per_file_ignores(tmp_path, fake_rules):
    (tmp_path / "pyproject.toml").write_text('[tool.lraudit]\nper-file-ignores = {"legacy_*.py" = ["LR001"]}\n')
    (tmp_path / "legacy_train.py").write_text("BUG\n")
    (tmp_path / "train.py").write_text("BUG\n")
    s = resolve_settings([str(tmp_path)])
    result = check_paths([str(tmp_path)], s, use_cache=False)
    assert [os.path.basename(f.path) for f in result.findings] == ["train.py"]
    s = resolve_settings([str(tmp_path)], ignore=["LR0"])
    assert check_paths([str(tmp_path)], s, use_cache=False).findings == []


def test_paths_reported_as_given(tmp_path, fake_rules, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.py").write_text("BUG\n")
    monkeypatch.chdir(tmp_path)
    s = resolve_settings(["."], isolated=True)
    assert [f.path for f in check_paths(["."], s, use_cache=False).findings] == ["src/t.py"]
    assert [f.path for f in check_paths(["src"], s, use_cache=False).findings] == ["src/t.py"]
    assert [f.path for f in check_paths(["src/t.py"], s, use_cache=False).findings] == ["src/t.py"]


def test_check_text_api(fake_rules, tmp_path):
    s = settings(tmp_path)
    result = check_text("a = 1\nb = 2  # BUG\n", "mem.py", s)
    assert [(f.path, f.line) for f in result.findings] == [("mem.py", 2)]
    assert result.files_checked == 1


def test_real_rules_end_to_end(tmp_path):
    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "clean.py").write_text(CLEAN)
    result = run(tmp_path)
    assert [(os.path.basename(f.path), f.line, f.column, f.rule) for f in result.findings] == [("buggy.py", 9, 5, "LR001")]
    assert result.errors == [] and result.files_checked == 2


def test_parallel_pool_gives_same_result_as_serial(tmp_path):
    for i in range(24):
        (tmp_path / f"m{i:02d}.py").write_text(BUGGY if i % 3 == 0 else CLEAN)
    (tmp_path / "broken.py").write_text("optimizer.step(\n")
    serial = run(tmp_path, jobs=1)
    parallel = run(tmp_path, jobs=2)
    assert len(serial.findings) == 8
    assert parallel.findings == serial.findings
    assert parallel.errors == serial.errors and len(serial.errors) == 1
    assert parallel.files_checked == serial.files_checked == 24


# -- fixes --------------------------------------------------------------------------------------------


class _FixResult:
    def __init__(self, source, fixed):
        self.source = source
        self.fixed = fixed


@pytest.fixture
def fake_fixer(monkeypatch):
    """lraudit.fix replaced: turns `BUG` into `OK` for rules in ``select``; records its calls."""
    calls = []
    module = types.ModuleType("lraudit.fix")

    def fix_source(source, path, select, unsafe):
        calls.append((path, tuple(select), unsafe))
        if "BREAKME" in source:
            return _FixResult(source.replace("BUG", "SYNTAX"), [])
        if "LR001" not in select:
            return _FixResult(source, [])
        n = source.count("BUG")
        return _FixResult(source.replace("BUG", "OK"), [Finding(path, 1, 1, 1, 2, "LR001", "fixed")] * n)

    module.fix_source = fix_source
    monkeypatch.setitem(sys.modules, "lraudit.fix", module)
    return calls


def test_fix_writes_atomically_and_reports_remaining(tmp_path, fake_rules, fake_fixer):
    path = tmp_path / "a.py"
    path.write_bytes(b"x = 1  # BUG\r\ny = 2\r\n")
    result = run(tmp_path, fix=True)
    assert path.read_bytes() == b"x = 1  # OK\r\ny = 2\r\n"
    assert result.findings == [] and len(result.fixed) == 1
    assert exit_status(result) == 0


def test_diff_does_not_write(tmp_path, fake_rules, fake_fixer):
    path = tmp_path / "a.py"
    path.write_text("x = 1  # BUG\n")
    result = run(tmp_path, diff=True)
    assert path.read_text() == "x = 1  # BUG\n"
    assert "-x = 1  # BUG" in result.diffs[0] and "+x = 1  # OK" in result.diffs[0]
    assert exit_status(result, diff=True) == 1


def test_fix_that_does_not_parse_is_refused(tmp_path, fake_rules, fake_fixer):
    path = tmp_path / "a.py"
    path.write_text("x = 1  # BUG BREAKME\n")
    result = run(tmp_path, fix=True)
    assert path.read_text() == "x = 1  # BUG BREAKME\n"
    assert "fix refused" in result.errors[0]["message"]
    assert len(result.findings) == 1


def test_fix_skips_rules_suppressed_in_the_file(tmp_path, fake_rules, fake_fixer):
    path = tmp_path / "a.py"
    path.write_text("x = 1  # BUG\ny = 2  # BUG  # lraudit: ignore[LR001]\n")
    result = run(tmp_path, fix=True)
    assert path.read_text() == "x = 1  # BUG\ny = 2  # BUG  # lraudit: ignore[LR001]\n"
    assert [f.line for f in result.findings] == [1]


def test_fix_flags_without_fixer_module(tmp_path, fake_rules, monkeypatch):
    monkeypatch.setitem(sys.modules, "lraudit.fix", None)  # import fails like a missing module
    (tmp_path / "a.py").write_text("BUG\n")
    result = run(tmp_path, fix=True)
    assert result.fix_available is False
    assert len(result.findings) == 1 and (tmp_path / "a.py").read_text() == "BUG\n"


def test_pool_under_forkserver_and_progress(tmp_path, monkeypatch):
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver here")
    monkeypatch.setattr(worker_pool, "_mp_context", lambda: multiprocessing.get_context("forkserver"))
    for i in range(16):
        (tmp_path / f"m{i:02d}.py").write_text(BUGGY)
    seen = []
    result = run(tmp_path, jobs=2, progress=lambda done, total: seen.append((done, total)))
    assert len(result.findings) == 16 and result.errors == []
    assert seen[-1] == (16, 16) and len(seen) == 16
