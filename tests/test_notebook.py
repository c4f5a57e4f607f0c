"""Jupyter notebooks: IPython syntax neutralised, locations mapped to cells, fixes per cell."""
from __future__ import annotations

import json

import libcst
import pytest
from click.testing import CliRunner

from lraudit import notebook
from lraudit.cli import main

from test_engine import fake_fixer, fake_rules  # noqa: F401,E402  (pytest fixtures)
from test_reporters import SCHEMA  # noqa: E402


def make_nb(*cells, language="python", indent=1):
    data = {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True),
             **({"execution_count": None, "outputs": []} if kind == "code" else {})}
            for kind, src in cells
        ],
        "metadata": {"kernelspec": {"language": language, "name": "k"}, "language_info": {"name": language}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


TRAINING = [
    ("markdown", "# Training\nSome text about `scheduler.step()`.\n"),
    ("code", "%matplotlib inline\n!pip install torch\nimport torch\nfrom torch.optim.lr_scheduler import StepLR\n"),
    ("code", "model = torch.nn.Linear(2, 2)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
             "scheduler = StepLR(optimizer, step_size=10)\nfiles = !ls\n"),
    ("code", "%%bash\necho not python (\n"),
    ("code", "for epoch in range(10):\n    %time x = 1\n    scheduler.step()\n    for batch in range(5):\n"
             "        loss = model(torch.randn(1, 2)).sum()\n        loss.backward()\n        optimizer.step()"),
]


def test_neutralise_keeps_line_count_and_parses():
    src = "%load_ext autoreload\nx = !ls -l\nif x:\n    !echo hi \\\n      there\n    y = 1\nmodel?\n"
    out = notebook.neutralise(src)
    assert out.count("\n") == src.count("\n")
    libcst.parse_module(out)
    assert notebook.neutralise("%%bash\nls (\n") == "\n\n"
    assert notebook.neutralise("%%time\nx = 1\n") == "pass\nx = 1\n"


def test_locate_counts_every_cell():
    nb = notebook.load(make_nb(*TRAINING))
    libcst.parse_module(nb.source)
    assert nb.locate(1) == (2, 1)
    assert nb.locate(5) == (3, 1)
    assert nb.locate(11) == (5, 1)


@pytest.fixture
def nb_project(tmp_path, monkeypatch):
    (tmp_path / "train.ipynb").write_text(make_nb(*TRAINING))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_text_location(nb_project):
    res = CliRunner().invoke(main, ["check", "--no-cache"])
    assert res.exit_code == 1, res.output
    assert res.stdout.startswith("train.ipynb:cell 5:line 3:col 5: LR001 ")


def test_json_and_sarif_locations(nb_project):
    data = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"]).stdout)
    (f,) = data["findings"]
    assert (f["path"], f["cell"], f["line"], f["column"], f["rule"]) == ("train.ipynb", 5, 3, 5, "LR001")
    log = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "sarif"]).stdout)
    import jsonschema

    jsonschema.Draft4Validator(SCHEMA).validate(log)
    (r,) = log["runs"][0]["results"]
    assert r["properties"] == {"cell": 5} and r["message"]["text"].startswith("cell 5:line 3: ")
    gh = CliRunner().invoke(main, ["check", "--no-cache", "--format", "github"]).stdout
    assert gh.startswith("::error file=train.ipynb,line=51,col=10,title=LR001::cell 5:line 3:col 5: ")


def test_suppression_in_a_cell(nb_project):
    cells = list(TRAINING)
    cells[4] = ("code", cells[4][1].replace("scheduler.step()", "scheduler.step()  # lraudit: ignore[LR001]"))
    (nb_project / "train.ipynb").write_text(make_nb(*cells))
    assert CliRunner().invoke(main, ["check", "--no-cache"]).exit_code == 0


def test_syntax_error_located_in_cell(nb_project):
    (nb_project / "bad.ipynb").write_text(make_nb(("markdown", "x"), ("code", "optimizer = 1\n"), ("code", "def f(:\n")))
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", "bad.ipynb"])
    assert res.exit_code == 2
    assert "cell 3:line 1" in json.loads(res.stdout)["errors"][0]["message"]


def test_invalid_and_foreign_notebooks(nb_project):
    (nb_project / "broken.ipynb").write_text("{not json")
    (nb_project / "r.ipynb").write_text(make_nb(("code", "optimizer <- 1; optimizer.step(\n"), language="R"))
    data = json.loads(CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"]).stdout)
    assert [e["path"] for e in data["errors"]] == ["broken.ipynb"]
    assert "invalid notebook JSON" in data["errors"][0]["message"]
    assert data["files_checked"] == 2  # train.ipynb and the R notebook (nothing to check in it)


def test_fix_rewrites_only_affected_cells(tmp_path, fake_rules, fake_fixer, monkeypatch):  # noqa: F811
    original = make_nb(
        ("markdown", "BUG in prose stays\n"),
        ("code", "%matplotlib inline\nx = 1  # BUG\n!ls"),
        ("code", "y = 2  \n"),
        ("code", "z = 3\n"),
    )
    path = tmp_path / "n.ipynb"
    path.write_text(original)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["check", "--no-cache", "--diff", "n.ipynb"])
    assert res.exit_code == 1 and "--- a/n.ipynb:cell 2" in res.stdout and "+x = 1  # OK" in res.stdout
    assert path.read_text() == original
    res = CliRunner().invoke(main, ["check", "--no-cache", "--fix", "n.ipynb"])
    assert res.exit_code == 0, res.output
    new = json.loads(path.read_text())
    old = json.loads(original)
    assert new["cells"][1]["source"] == ["%matplotlib inline\n", "x = 1  # OK\n", "!ls"]
    assert [c for i, c in enumerate(new["cells"]) if i != 1] == [c for i, c in enumerate(old["cells"]) if i != 1]
    # serialised as Jupyter does: only the changed line differs
    changed = [(a, b) for a, b in zip(original.splitlines(), path.read_text().splitlines()) if a != b]
    assert changed == [('    "x = 1  # BUG\\n",', '    "x = 1  # OK\\n",')]
