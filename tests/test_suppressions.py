"""Inline suppressions: placement, codes, noqa habits, strings, and --report-unused-ignores."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lraudit.cli import main
from lraudit.findings import Finding
from lraudit.suppressions import Suppressions

from test_engine import BUGGY  # noqa: E402


def f(line, rule="LR001"):
    return Finding("a.py", line, 1, line, 2, rule, "m")


@pytest.mark.parametrize(
    "comment, rule, suppressed",
    [
        ("# lraudit: ignore[LR001]", "LR001", True),
        ("# lraudit: ignore[LR002, LR001]", "LR001", True),
        ("# lraudit: ignore[LR002]", "LR001", False),
        ("# lraudit: ignore", "LR004", True),
        ("#lraudit:ignore[lr00]", "LR003", True),  # case-insensitive, prefix
        ("# noqa: LR001", "LR001", True),
        ("# noqa:LR001,E501", "LR001", True),
        ("# noqa: E501", "LR001", False),  # another tool's code only
        ("# noqa", "LR001", True),
        ("# type: ignore  # lraudit: ignore[LR001]", "LR001", True),
        ("# lraudit: ignored", "LR001", False),
    ],
)
def test_directive_forms(comment, rule, suppressed):
    sup = Suppressions(f"x = 1  {comment}\n")
    kept, gone = sup.filter([f(1, rule)])
    assert (gone == [f(1, rule)]) is suppressed


def test_first_line_of_multiline_statement():
    src = "y = foo(  # lraudit: ignore[LR004]\n    a,\n    b)\nz = 1\n"
    sup = Suppressions(src)
    kept, gone = sup.filter([f(2, "LR004"), f(3, "LR004"), f(4, "LR004")])
    assert [x.line for x in gone] == [2, 3] and [x.line for x in kept] == [4]


def test_directive_on_another_line_does_not_apply():
    sup = Suppressions("# lraudit: ignore\nx = 1\n")
    assert sup.filter([f(2)])[0] == [f(2)]


def test_text_in_strings_is_not_a_directive():
    src = 's = "# lraudit: ignore"\nt = """\n# noqa\n"""\n'
    sup = Suppressions(src)
    assert sup.filter([f(1), f(3)])[0] == [f(1), f(3)]


def test_tokenizer_fallback_for_newer_syntax():
    src = 'x = f"{d["k"]}"  # lraudit: ignore[LR001]\n'  # valid only on 3.12+
    sup = Suppressions(src)
    assert sup.filter([f(1)])[1] == [f(1)]


def test_unused():
    src = (
        "a = 1  # lraudit: ignore[LR001]\n"
        "b = 1  # lraudit: ignore[LR001,LR002]\n"
        "c = 1  # lraudit: ignore\n"
        "d = 1  # noqa: E501\n"
        "e = 1  # noqa\n"
        "g = 1  # noqa: LR003\n"
        "h = 1  # lraudit: ignore[LR010]\n"  # rule not run: unknown whether it is needed
        "i = 1  # lraudit: ignore[LR999]\n"
    )
    sup = Suppressions(src)
    sup.filter([f(1), f(2)])
    unused = sup.unused("a.py", frozenset({"LR001", "LR002", "LR003"}))
    assert [(u.line, u.codes) for u in unused] == [(2, ("LR002",)), (3, ()), (6, ("LR003",)), (8, ("LR999",))]
    assert "unused suppression of LR002" in unused[0].message


SUPPRESSED = BUGGY.replace("    scheduler.step()\n", "    scheduler.step()  # lraudit: ignore[LR001]\n", 1)


def _check(tmp_path, monkeypatch, text, *args):
    (tmp_path / "t.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, ["check", "t.py", "--no-cache", *args])


def test_cli_suppression_end_to_end(tmp_path, monkeypatch):
    assert _check(tmp_path, monkeypatch, BUGGY).exit_code == 1
    res = _check(tmp_path, monkeypatch, SUPPRESSED)
    assert res.exit_code == 0 and "All checks passed" in res.stdout
    noqa = BUGGY.replace("    scheduler.step()\n", "    scheduler.step()  # noqa: LR001\n", 1)
    assert _check(tmp_path, monkeypatch, noqa).exit_code == 0


def test_cli_report_unused_ignores(tmp_path, monkeypatch):
    text = SUPPRESSED + "optimizer.zero_grad()  # lraudit: ignore[LR002]\n"
    res = _check(tmp_path, monkeypatch, text)
    assert res.exit_code == 0
    res = _check(tmp_path, monkeypatch, text, "--report-unused-ignores")
    assert res.exit_code == 1
    assert "t.py:14:24: unused suppression of LR002" in res.stdout
    res = _check(tmp_path, monkeypatch, text, "--report-unused-ignores", "--format", "json")
    data = json.loads(res.stdout)
    assert data["findings"] == [] and [u["line"] for u in data["unused_ignores"]] == [14]
