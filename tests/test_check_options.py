"""`lraudit check` for editors and CI: stdin (`-`, --stdin-filename, --fix to stdout), code frames,
--statistics, --show-settings and --add-noqa, through the real CLI and the real rules."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lraudit.cli import main

from test_engine import BUGGY, CLEAN, fake_rules  # noqa: F401,E402  (fake_rules: a pytest fixture)
from test_notebook import TRAINING, make_nb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "fixtures" / "examples" / "train_buggy.py"


def check(*args, input=None):
    return CliRunner().invoke(main, ["check", "--no-cache", *args], input=input)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml",
          "[tool.lraudit]\nextend-exclude = ['vendor']\n[tool.lraudit.per-file-ignores]\n'tests/**' = ['LR001']\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- stdin ----------------------------------------------------------------------------------------------


def test_stdin_is_checked_like_the_named_file(project):
    res = check("-", "--format", "json", input=BUGGY)
    assert res.exit_code == 1, res.output
    (f,) = json.loads(res.stdout)["findings"]
    assert (f["path"], f["line"], f["column"], f["rule"]) == ("-", 9, 5, "LR001")
    res = check("-", "--stdin-filename", "src/train.py", "--format", "concise", input=BUGGY)
    assert res.exit_code == 1 and res.stdout.startswith("src/train.py:9:5: LR001 ")
    # the file's per-file-ignores (from the config found from its directory, which need not exist)
    res = check("-", "--stdin-filename", "tests/unit/test_train.py", "--format", "json", input=BUGGY)
    assert res.exit_code == 0 and json.loads(res.stdout)["findings"] == []
    # the path alone also reads stdin, as in ruff
    assert check("--stdin-filename", "src/train.py", "--format", "json", input=BUGGY).exit_code == 1


def test_stdin_config_comes_from_the_filename_directory(tmp_path, monkeypatch):
    write(tmp_path / "proj" / "pyproject.toml", "[tool.lraudit]\nignore = ['LR001']\n")
    monkeypatch.chdir(tmp_path)
    assert check("-", "--stdin-filename", "proj/pkg/new.py", input=BUGGY).exit_code == 0
    assert check("-", "--stdin-filename", "elsewhere/new.py", input=BUGGY).exit_code == 1


def test_stdin_force_exclude(project):
    assert check("-", "--stdin-filename", "vendor/lib.py", input=BUGGY).exit_code == 1  # asked for: checked
    res = check("-", "--stdin-filename", "vendor/lib.py", "--force-exclude", "--format", "json", input=BUGGY)
    assert res.exit_code == 0 and json.loads(res.stdout)["findings"] == []
    res = check("-", "--stdin-filename", "vendor/lib.py", "--force-exclude", "--fix", input=BUGGY)
    assert res.exit_code == 0 and res.stdout == BUGGY  # echoed unchanged


def test_stdin_notebook(project):
    res = check("-", "--stdin-filename", "nb/train.ipynb", "--format", "concise", input=make_nb(*TRAINING))
    assert res.exit_code == 1 and res.stdout.startswith("nb/train.ipynb:cell 5:line 3:col 5: LR001 ")


def test_stdin_fix_prints_the_fixed_source(project):
    pair = ROOT / "fixtures" / "fix" / "LR008"
    source = next(pair.glob("*.in.py")).read_text(encoding="utf-8")
    expected = next(pair.glob("*.out.py")).read_text(encoding="utf-8")
    res = check("-", "--stdin-filename", "train.py", "--fix", input=source)
    assert res.stdout == expected
    assert "Fixed" in res.stderr and res.exit_code == 0
    # nothing to fix: the input comes back byte for byte, the findings go to stderr
    res = check("-", "--fix", input=BUGGY)
    assert res.stdout == BUGGY and res.exit_code == 1 and "LR001" in res.stderr


def test_stdin_errors(project):
    res = check("-", "other.py", input=BUGGY)
    assert res.exit_code == 2 and "cannot be combined" in res.stderr
    res = CliRunner().invoke(main, ["check", "-", "--format", "json"], input=b"x = '\xff'\n")
    assert res.exit_code == 2 and "cannot decode" in json.loads(res.stdout)["errors"][0]["message"]
    res = check("-", "--format", "json", input="optimizer.step(\n")
    assert res.exit_code == 2 and json.loads(res.stdout)["errors"][0]["path"] == "-"


# -- code frames ---------------------------------------------------------------------------------------


def test_code_frame_shows_the_line_the_caret_and_the_related_line(project):
    write(project / "train.py", BUGGY)
    res = check("train.py")
    lines = res.stdout.splitlines()
    assert lines[0].startswith("train.py:9:5: LR001 ") and "(line 13)" in lines[0]
    assert lines[1:9] == [
        "   |",
        " 9 |     scheduler.step()",
        "   |     ^^^^^^^^^^^^^^^^ LR001",
        " :",
        "13 |         optimizer.step()",
        "   |         ---------------- line 13",
        "   |",
        "",
    ]
    assert BUGGY.splitlines()[8] == "    scheduler.step()" and BUGGY.splitlines()[12] == "        optimizer.step()"
    # concise and quiet-less JSON carry no frame
    assert check("--format", "concise", "train.py").stdout.splitlines()[1] == ""


def test_related_line_underline_stops_before_a_trailing_comment(project):
    write(project / "train.py", BUGGY.replace("        optimizer.step()\n", "        optimizer.step()  # update\n"))
    lines = check("train.py").stdout.splitlines()
    assert lines[5:7] == ["13 |         optimizer.step()  # update", "   |         ---------------- line 13"]


def test_code_frame_keeps_tabs_aligned(tmp_path, monkeypatch, fake_rules):  # noqa: F811
    write(tmp_path / "t.py", "if x:\n\ty = BUG\n")
    monkeypatch.chdir(tmp_path)
    source_row, caret_row = check("t.py").stdout.splitlines()[2:4]
    assert source_row.startswith("2 | ") and caret_row.startswith("  | ")
    # however the terminal expands the tab, the caret sits under BUG
    assert caret_row.index("^^^ LR001") == source_row.index("BUG")


def test_sarif_related_location_for_a_module(project):
    write(project / "train.py", BUGGY)
    log = json.loads(check("--format", "sarif", "train.py").stdout)
    (result,) = log["runs"][0]["results"]
    (related,) = result["relatedLocations"]
    assert related["physicalLocation"]["region"] == {"startLine": 13} and related["message"]["text"] == "line 13"


# -- statistics and settings ---------------------------------------------------------------------------


def test_statistics_count_per_rule(tmp_path, monkeypatch):
    write(tmp_path / "a.py", EXAMPLE.read_text())
    write(tmp_path / "b.py", BUGGY)
    monkeypatch.chdir(tmp_path)
    findings = json.loads(check("--format", "json").stdout)["findings"]
    expected = {}
    for f in findings:
        expected[f["rule"]] = expected.get(f["rule"], 0) + 1
    assert expected == {"LR001": 2, "LR002": 1, "LR003": 1}
    res = check("--statistics", "--format", "json")
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    assert {r["code"]: r["count"] for r in rows} == expected and rows[0]["code"] == "LR001"
    text = check("--statistics").stdout.splitlines()
    assert text == ["2  LR001  scheduler-before-optimizer", "1  LR002  manual-lr-write-with-scheduler",
                    "1  LR003  plateau-step-without-metric"]
    assert check("--statistics", "--format", "sarif").exit_code == 2


def test_show_settings_says_where_each_value_came_from(project):
    res = check("--show-settings", "--format", "json", "--ignore", "LR002", "src")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    config = str(project / "pyproject.toml")
    assert data["config-file"] == {"value": config, "source": "found"}
    assert data["extend-exclude"] == {"value": ["vendor"], "source": config}
    assert data["per-file-ignores"] == {"value": {"tests/**": ["LR001"]}, "source": config}
    assert data["ignore"] == {"value": ["LR002"], "source": "command line (--ignore)"}
    assert "LR002" not in data["rules"]["value"] and "LR001" in data["rules"]["value"]
    assert data["respect-gitignore"]["source"] == "default" and data["exclude"]["source"] == "default"
    assert data["force-exclude"] == {"value": False, "source": "default"}
    from lraudit.show_settings import config_keys

    # every configuration key is shown (select/extend-select/ignore when given, and as `rules`)
    assert set(config_keys()) - {"select", "extend-select"} <= set(data)
    forced = json.loads(check("--show-settings", "--format", "json", "--force-exclude").stdout)
    assert forced["force-exclude"] == {"value": True, "source": "command line (--force-exclude)"}
    write(project / "tests" / "test_a.py", BUGGY)
    per_file = json.loads(check("--show-settings", "--format", "json", "tests/test_a.py").stdout)
    assert per_file["rules for tests/test_a.py"]["source"] == "per-file-ignores 'tests/**'"
    assert "LR001" not in per_file["rules for tests/test_a.py"]["value"]
    stdin = json.loads(check("-", "--stdin-filename", "vendor/x.py", "--show-settings", "--format", "json").stdout)
    assert stdin["paths"]["value"] == ["-"] and stdin["excluded: vendor/x.py"]["value"] is True
    text = check("--show-settings", "--isolated").stdout
    assert "config-file" in text and "[command line (--isolated)]" in text and "vendor" not in text


# -- --add-noqa ----------------------------------------------------------------------------------------


def test_add_noqa_suppresses_every_finding_and_is_idempotent(tmp_path, monkeypatch):
    target = write(tmp_path / "train.py", EXAMPLE.read_text())
    write(tmp_path / "other.py", BUGGY.replace("    scheduler.step()\n", "    scheduler.step()  # why: legacy\n"))
    monkeypatch.chdir(tmp_path)
    before = json.loads(check("--format", "json").stdout)["findings"]
    assert len(before) == 4
    res = check("--add-noqa")
    assert res.exit_code == 0, res.output
    assert res.stdout == "Added 4 suppressions to 2 files.\n"
    assert check().exit_code == 0  # every finding suppressed
    after = target.read_text()
    assert "        scheduler.step()  # expect: LR001 (stepped before the optimizer's first step)  # lraudit: ignore[LR001]\n" in after
    assert "    scheduler.step()  # why: legacy  # lraudit: ignore[LR001]\n" in (tmp_path / "other.py").read_text()
    # only comments were added: the code is the same code
    assert ast.dump(ast.parse(after)) == ast.dump(ast.parse(EXAMPLE.read_text()))
    again = check("--add-noqa")
    assert again.stdout == "Added 0 suppressions to 0 files.\n" and target.read_text() == after


def test_add_noqa_merges_with_an_existing_ignore(tmp_path, monkeypatch):
    source = BUGGY.replace("    scheduler.step()\n", "    scheduler.step()  # lraudit: ignore[LR004]\n")
    target = write(tmp_path / "t.py", source)
    monkeypatch.chdir(tmp_path)
    assert check("--add-noqa").exit_code == 0
    assert "    scheduler.step()  # lraudit: ignore[LR001, LR004]\n" in target.read_text()
    assert check("--report-unused-ignores", "--format", "json").exit_code == 1  # LR004 still unused, kept


MULTILINE = '''\
value = compute(
    1, BUG,
    2)
text = """
BUG inside a string
"""
z = BUG + \\
    1
w = 1  # lraudit: ignore[LR002] BUG
call(
    BUG)
'''


def test_add_noqa_never_breaks_code(tmp_path, monkeypatch, fake_rules):  # noqa: F811
    target = write(tmp_path / "m.py", MULTILINE)
    monkeypatch.chdir(tmp_path)
    res = check("--add-noqa")
    # the string's line and the backslash-continued line cannot hold a comment: reported, exit 1
    assert res.exit_code == 1, res.output
    assert "m.py: no place for a suppression comment on line 5" in res.stderr
    assert "m.py: no place for a suppression comment on line 7" in res.stderr
    new = target.read_text()
    ast.parse(new)
    assert new.splitlines() == [
        "value = compute(",
        "    1, BUG,  # lraudit: ignore[LR001]",
        "    2)",
        'text = """',
        "BUG inside a string",
        '"""',
        "z = BUG + \\",
        "    1",
        "w = 1  # lraudit: ignore[LR001, LR002] BUG",
        "call(",
        "    BUG)  # lraudit: ignore[LR001]",
    ]
    remaining = json.loads(check("--format", "json").stdout)["findings"]
    assert [f["line"] for f in remaining] == [5, 7]
    assert check("--add-noqa").stdout == "Added 0 suppressions to 0 files.\n" and target.read_text() == new


def test_add_noqa_in_a_notebook(tmp_path, monkeypatch):
    path = write(tmp_path / "train.ipynb", make_nb(*TRAINING))
    original = json.loads(path.read_text())
    monkeypatch.chdir(tmp_path)
    res = check("--add-noqa")
    assert res.exit_code == 0 and res.stdout == "Added 1 suppression to 1 file.\n", res.output
    new = json.loads(path.read_text())
    assert new["cells"][4]["source"][2] == "    scheduler.step()  # lraudit: ignore[LR001]\n"
    changed = [(a, b) for a, b in zip(make_nb(*TRAINING).splitlines(), path.read_text().splitlines()) if a != b]
    assert changed == [('    "    scheduler.step()\\n",', '    "    scheduler.step()  # lraudit: ignore[LR001]\\n",')]
    assert [c for i, c in enumerate(new["cells"]) if i != 4] == [c for i, c in enumerate(original["cells"]) if i != 4]
    assert check().exit_code == 0


def test_add_noqa_refuses_stdin_and_fix(project):
    assert check("-", "--add-noqa", input=BUGGY).exit_code == 2
    assert check("--add-noqa", "--fix").exit_code == 2


def test_add_noqa_keeps_encoding_and_line_endings(tmp_path, monkeypatch):
    source = "# -*- coding: latin-1 -*-\n# caf\xe9\n" + BUGGY
    data = source.replace("\n", "\r\n").encode("latin-1")
    target = tmp_path / "t.py"
    target.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert check("--add-noqa").exit_code == 0
    expected = data.replace(b"    scheduler.step()\r\n", b"    scheduler.step()  # lraudit: ignore[LR001]\r\n")
    assert target.read_bytes() == expected


def test_stdin_diff(project):
    pair = ROOT / "fixtures" / "fix" / "LR008"
    source = next(pair.glob("*.in.py")).read_text(encoding="utf-8")
    res = check("-", "--stdin-filename", "train.py", "--diff", input=source)
    assert res.exit_code == 1 and "--- a/train.py" in res.stdout and "+++ b/train.py" in res.stdout
    assert "get_last_lr()" in res.stdout


def test_add_noqa_never_writes_over_a_file_changed_since_the_check(tmp_path):
    from lraudit.add_noqa import add_noqa
    from lraudit.config import resolve_settings
    from lraudit.engine import check_paths

    target = write(tmp_path / "t.py", BUGGY)
    settings = resolve_settings([str(target)], isolated=True)
    result = check_paths([str(target)], settings, use_cache=False)
    assert [f.rule for f in result.findings] == ["LR001"]
    target.write_text(BUGGY + "# saved by an editor meanwhile\n")
    out = add_noqa(result, settings)
    assert out.files == [] and out.added == 0
    (error,) = out.errors
    assert "comments not written" in error["message"] and "changed since it was checked" in error["message"]
    assert target.read_text() == BUGGY + "# saved by an editor meanwhile\n"


def test_add_noqa_over_every_static_fixture(tmp_path, monkeypatch):
    """Every bad example of every rule: each finding gets a comment, every file keeps its exact AST
    (only comments were added), and nothing is left to report."""
    import shutil

    shutil.copytree(ROOT / "fixtures" / "static", tmp_path / "static")
    monkeypatch.chdir(tmp_path)
    before = json.loads(check("--format", "json", "static").stdout)
    assert before["errors"] == [] and len(before["findings"]) > 50
    originals = {p: p.read_text(encoding="utf-8") for p in (tmp_path / "static").rglob("*.py")}
    res = check("--add-noqa", "static")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"Added {len(before['findings'])} suppressions to ")
    after = json.loads(check("--format", "json", "static").stdout)
    assert after["findings"] == [] and after["errors"] == []
    changed = 0
    for path, old in originals.items():
        new = path.read_text(encoding="utf-8")
        if new != old:
            changed += 1
            assert ast.dump(ast.parse(new)) == ast.dump(ast.parse(old)), path
    assert changed == len({f["path"] for f in before["findings"]})
    # nothing left to report, so a second run has nothing to add (idempotence, shown on small files above)
