"""Renderers through the real CLI: text, json (the contract), sarif (schema-validated), github."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from lraudit import catalog
from lraudit.cli import main
from lraudit.results import CheckResult
from lraudit.findings import Finding
from lraudit.notebook import NotebookFinding
from lraudit.report import render
from lraudit.suppressions import UnusedIgnore

from test_engine import BUGGY  # noqa: E402

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
MESSAGE_START = "`scheduler.step()`"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BUGGY)
    (tmp_path / "src" / "broken.py").write_text("optimizer.step(\n")
    (tmp_path / "ok.py").write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(*args):
    return CliRunner().invoke(main, ["check", "--no-cache", *args])


def test_text_lines_are_ruff_like_and_plain_off_terminal(project):
    res = check()
    assert res.exit_code == 2
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"src/train.py:9:5: LR001 {MESSAGE_START}")
    assert "error: src/broken.py: syntax error at line" in res.stdout
    assert "Found 1 finding in 1 file" in res.stdout
    assert "\x1b[" not in res.stdout


def test_text_colours_only_when_asked(project):
    assert "\x1b[" in check("--color").stdout
    quiet = check("-q").stdout
    assert "Found" not in quiet and quiet.splitlines()[0].startswith("src/train.py:9:5: LR001")


def test_text_all_clear(project):
    res = check("ok.py")
    assert res.exit_code == 0 and "All checks passed! (1 file checked)" in res.stdout


def test_json_contract_exactly(project):
    res = check("--format", "json")
    data = json.loads(res.stdout)
    assert list(data) == ["version", "files_checked", "findings", "errors"]
    assert data["version"] == 1 and data["files_checked"] == 2
    (finding,) = data["findings"]
    assert list(finding) == [
        "path", "line", "column", "end_line", "end_column", "rule", "name", "severity", "message", "fixable"
    ]
    assert finding["path"] == "src/train.py" and (finding["line"], finding["column"]) == (9, 5)
    assert finding["rule"] == "LR001" and finding["name"] == "scheduler-before-optimizer"
    assert finding["severity"] == "error" and isinstance(finding["fixable"], bool)
    assert [list(e) for e in data["errors"]] == [["path", "message"]]
    assert data["errors"][0]["path"] == "src/broken.py"


def _validate(log):
    jsonschema.Draft4Validator(SCHEMA).validate(log)


def test_sarif_validates_against_official_schema(project):
    res = check("--format", "sarif", "--report-unused-ignores")
    log = json.loads(res.stdout)
    _validate(log)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [c for c, r in catalog.RULES.items() if r.static]
    assert rules[0]["helpUri"] == catalog.RULES["LR001"].help_uri
    (result,) = run["results"]
    assert result["ruleId"] == "LR001" and rules[result["ruleIndex"]]["id"] == "LR001"
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "src/train.py", "uriBaseId": "%SRCROOT%"}
    assert (loc["region"]["startLine"], loc["region"]["startColumn"]) == (9, 5)
    assert run["invocations"][0]["executionSuccessful"] is False
    assert run["invocations"][0]["toolExecutionNotifications"][0]["level"] == "error"


def test_sarif_edge_cases_validate():
    result = CheckResult(
        files_checked=2,
        findings=[
            NotebookFinding("nb dir/n.ipynb", 4, 1, 4, 9, "LR004", "partial", cell=3),
            Finding("/abs/p.py", 1, 1, 1, 1, "LR003", "m"),
        ],
        unused_ignores=[UnusedIgnore("a.py", 2, 8, "# lraudit: ignore", ())],
        report_unused_ignores=True,
        severity={"LR004": "info"},
    )
    log = json.loads(render(result, "sarif"))
    _validate(log)
    res = log["runs"][0]["results"]
    assert res[0]["properties"] == {"cell": 3} and res[0]["level"] == "note"
    assert res[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "nb%20dir/n.ipynb"
    assert res[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "file:///abs/p.py"
    assert res[2]["ruleId"] == "unused-suppression"


def test_github_annotations(project):
    res = check("--format", "github")
    lines = res.stdout.splitlines()
    assert lines[0].startswith("::error file=src/train.py,line=9,endLine=9,col=5,endColumn=")
    assert f",title=LR001::{MESSAGE_START}" in lines[0]
    assert lines[1].startswith("::error file=src/broken.py,title=lraudit::syntax error")


def test_github_escaping():
    result = CheckResult(findings=[Finding("a,b:c.py", 1, 2, 1, 3, "LR004", "50% of\ngroups")])
    out = render(result, "github")
    assert out == "::warning file=a%2Cb%3Ac.py,line=1,endLine=1,col=2,endColumn=3,title=LR004::50%25 of%0Agroups\n"


def test_github_ranges_over_several_lines_have_no_columns():
    result = CheckResult(findings=[Finding("t.py", 3, 5, 6, 2, "LR004", "m"), Finding("t.py", 9, 5, 9, 21, "LR001", "m")])
    out = render(result, "github").splitlines()
    assert out[0] == "::warning file=t.py,line=3,endLine=6,title=LR004::m"
    assert out[1] == "::error file=t.py,line=9,endLine=9,col=5,endColumn=21,title=LR001::m"


def test_output_file(project):
    res = check("--format", "json", "--output-file", "report.json", "src/train.py")
    assert res.exit_code == 1 and res.stdout == ""
    assert json.loads(Path("report.json").read_text())["findings"][0]["rule"] == "LR001"
