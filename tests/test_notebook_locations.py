"""Notebook findings in the coordinates each consumer reads: SARIF and GitHub annotate the raw
`.ipynb` file, so their region is the line of the JSON text that holds the reported call (checked by
reading that raw line); messages name other places as `cell N, line M`, like their own location."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from lraudit import notebook
from lraudit.cli import main

from test_notebook import TRAINING, make_nb  # noqa: E402
from test_reporters import SCHEMA  # noqa: E402


def run(*args):
    return CliRunner().invoke(main, ["check", "--no-cache", *args])


def raw_line(path, number):
    return path.read_text(encoding="utf-8").splitlines()[number - 1]


LAYOUTS = {
    "jupyter": lambda cells: make_nb(*cells, indent=1),  # one source line per JSON line
    "compact": lambda cells: make_nb(*cells, indent=None),  # the whole notebook on one line
    "string-source": lambda cells: json.dumps(
        {**json.loads(make_nb(*cells)), "cells": [
            {**c, "source": "".join(c["source"])} for c in json.loads(make_nb(*cells))["cells"]]},
        indent=2),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_sarif_region_is_the_raw_line_holding_the_call(tmp_path, monkeypatch, layout):
    cells = list(TRAINING)
    # escapes before the call on its line and in earlier lines must not shift the column
    cells[4] = ("code", cells[4][1].replace("    scheduler.step()", '    s = "é\\t\\"x\\""; scheduler.step()'))
    path = tmp_path / "train.ipynb"
    path.write_text(LAYOUTS[layout](cells), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    log = json.loads(run("--format", "sarif").stdout)
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    (result,) = log["runs"][0]["results"]
    region = result["locations"][0]["physicalLocation"]["region"]
    line = raw_line(path, region["startLine"])
    start, end = region["startColumn"] - 1, region["endColumn"] - 1
    assert line[start:end] == "scheduler.step()", (layout, region, line)
    assert result["properties"] == {"cell": 5}
    assert result["message"]["text"].startswith("cell 5:line 3: ")
    # the place the message names (the first optimizer.step()) is a related location, on its raw line
    (related,) = result["relatedLocations"]
    assert related["message"]["text"] == "cell 5, line 7"
    assert "optimizer.step()" in raw_line(path, related["physicalLocation"]["region"]["startLine"])

    gh = run("--format", "github").stdout
    head = gh.split("::")[1]
    props = dict(p.split("=", 1) for p in head.split(" ", 1)[1].split(","))
    gh_line = raw_line(path, int(props["line"]))
    assert gh_line[int(props["col"]) - 1:].startswith("scheduler.step()")


def test_messages_name_places_in_cell_coordinates(tmp_path, monkeypatch):
    (tmp_path / "train.ipynb").write_text(make_nb(*TRAINING))
    monkeypatch.chdir(tmp_path)
    for fmt in ("json", "sarif"):
        out = run("--format", fmt).stdout
        assert "(cell 5, line 7)" in out and "(line 1" not in out, out
    text = run().stdout
    assert text.startswith("train.ipynb:cell 5:line 3:col 5: LR001 ")
    assert "(cell 5, line 7)" in text.splitlines()[0]
    # the code frame shows both cell lines, numbered cell:line
    assert "5:3 |     scheduler.step()" in text and "5:7 |         optimizer.step()" in text


def test_map_message_rewrites_every_line_reference():
    nb = notebook.load(make_nb(*TRAINING))
    # joined lines 5 and 11 are cell 3 line 1 and cell 5 line 1
    assert nb.map_message("StepLR (line 7) and `opt` (line 11); baseline 3") == \
        "StepLR (cell 3, line 3) and `opt` (cell 5, line 1); baseline 3"
    # a place in another module keeps its own coordinates
    assert nb.map_message("stepped in `engine.py`, line 7 and engine.py:line 9") == \
        "stepped in `engine.py`, line 7 and engine.py:line 9"


def test_related_places_skip_other_files():
    from lraudit.report.locations import related_places

    assert related_places("StepLR (line 27) drives it; stepped in train_lib.py, line 40") == [(None, 27)]
    assert related_places("stepped at line 40 of `pkg/engine.py`; built (line 3)") == [(None, 3)]
    assert related_places("(cell 5, line 7) and (line 3)", cell=5) == [(5, 7)]


def test_unused_suppression_in_a_notebook_points_at_its_raw_line(tmp_path, monkeypatch):
    cells = list(TRAINING)
    cells[2] = ("code", cells[2][1].replace("lr=0.1)", "lr=0.1)  # lraudit: ignore[LR004]"))
    path = tmp_path / "train.ipynb"
    path.write_text(make_nb(*cells))
    monkeypatch.chdir(tmp_path)
    log = json.loads(run("--format", "sarif", "--report-unused-ignores").stdout)
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    (unused,) = [r for r in log["runs"][0]["results"] if r["ruleId"] == "unused-suppression"]
    region = unused["locations"][0]["physicalLocation"]["region"]
    assert raw_line(path, region["startLine"])[region["startColumn"] - 1:].startswith("# lraudit: ignore[LR004]")


def test_raw_positions_of_an_unreadable_text_fall_back_to_cells():
    assert notebook.raw_positions("{not json") == {}


def test_fixed_findings_of_a_notebook_are_in_cell_coordinates(tmp_path, monkeypatch):
    """`--diff`/`--fix` report what they fixed at the cell and line of the notebook, not at a line of
    the fixer's internal text (which has a boundary comment after each cell)."""
    source = (Path(__file__).resolve().parents[1] / "fixtures" / "fix" / "LR008" / "get_last_lr.in.py").read_text()
    (tmp_path / "fx.ipynb").write_text(make_nb(("markdown", "# t"), ("code", "import torch\n"), ("code", source)))
    monkeypatch.chdir(tmp_path)
    checked = json.loads(run("--format", "json", "fx.ipynb").stdout)
    before = [(f["cell"], f["line"], f["column"]) for f in checked["findings"]]
    data = json.loads(run("--format", "json", "--diff", "fx.ipynb").stdout)
    fixed = [(f["cell"], f["line"], f["column"]) for f in data["fixed"]]
    assert fixed == before == [(3, 14, 33), (3, 15, 36)]
    lines = source.splitlines()
    assert lines[13][32:].startswith("scheduler.get_lr()") and lines[14][35:].startswith("scheduler.get_lr()")


def test_locate_fixed_skips_the_boundary_lines():
    nb = notebook.load(make_nb(*TRAINING))
    # fix_source: cell 2 (4 lines) + boundary, cell 3 (4) + boundary, cell 4 (2) + boundary, cell 5
    assert nb._locate_fixed(1) == (2, 1) and nb._locate_fixed(6) == (3, 1) and nb._locate_fixed(14) == (5, 1)
    assert nb.map_message("(line 14)", nb._locate_fixed) == "(cell 5, line 1)"
