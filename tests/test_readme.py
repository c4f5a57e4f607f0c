"""The README says what the code does: its quick start and the linting section's snippets run as
written, the install names are the distribution's, the options table matches `lraudit check --help`,
and CI runs the README's own test command."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lraudit
from lraudit.config import load_config
from lraudit.suppressions import Suppressions

from test_engine import BUGGY  # noqa: E402
from test_notebook import TRAINING, make_nb  # noqa: E402
from test_reporters import SCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CHECK = README[README.index("<!-- section:check -->"): README.index("<!-- /section:check -->")]

QUICK_LINT = "python3 -m pip install . && lraudit check fixtures/examples/train_buggy.py"
TEST_COMMAND = "python -m pip install 'torch==2.13.0' && python -m pip install -e '.[test]' && python -m pytest -q"


def blocks(text: str, lang: str):
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def lraudit_cmd(line: str) -> list:
    """A README command line `lraudit ...` as this checkout's `python -m lraudit ...`."""
    words = shlex.split(line, comments=True)
    assert words[0] == "lraudit", line
    return [sys.executable, "-m", "lraudit", *words[1:]]


def run(args, cwd, stdin=None):
    return subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), LRAUDIT_CACHE_DIR=str(Path(cwd) / ".c")))


def test_quick_start_is_at_the_top_and_uses_a_virtual_environment():
    head = "\n".join(README.splitlines()[:40])
    assert QUICK_LINT in head and TEST_COMMAND in head
    first = blocks(head, "bash")[0].splitlines()
    assert first[0].startswith("python3 -m venv .venv && . .venv/bin/activate")
    assert first[1] == QUICK_LINT
    assert "lraudit rules" in head and "lraudit explain LR001" in head


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in ci.splitlines()


def test_quick_start_lint_reports_the_fixture_expectations():
    """The bundled example's own `# expect:` markers are the independent truth."""
    example = ROOT / "fixtures" / "examples" / "train_buggy.py"
    expected = sorted((n, m.group(1)) for n, line in enumerate(example.read_text().splitlines(), 1)
                      for m in [re.search(r"# expect: (LR\d{3})", line)] if m)
    assert len(expected) == 3
    proc = run(lraudit_cmd(QUICK_LINT.split(" && ")[1]) + ["--format", "json", "--no-cache"], ROOT)
    assert proc.returncode == 1, proc.stderr
    found = sorted((f["line"], f["rule"]) for f in json.loads(proc.stdout)["findings"])
    assert found == expected


def test_rules_and_explain_work_as_described(tmp_path):
    rules = run([sys.executable, "-m", "lraudit", "rules"], tmp_path)
    assert rules.returncode == 0 and rules.stdout.startswith("LR001")
    explain = run([sys.executable, "-m", "lraudit", "explain", "LR001"], tmp_path)
    assert explain.returncode == 0
    assert explain.stdout == (ROOT / "rules" / "LR001.md").read_text(encoding="utf-8")


def _pyproject_extras():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_every_pip_install_names_torch_lraudit():
    extras = _pyproject_extras()
    assert not re.search(r"pip install\s+'?lraudit\b", README), "`lraudit` on PyPI is another package"
    named = re.findall(r"pip install '?torch-lraudit(?:\[(\w+)\])?", README)
    assert named, "the README says how to install the distribution"
    for extra in named:
        assert not extra or extra in extras, extra
    install = README[README.index("## Install"):]
    install = install[: install.index("\n## ", 5)]
    listed = set(re.findall(r"`(\w+)` \(", install))
    assert listed == extras - {"dev"}, "the Install section lists every extra of pyproject.toml"


def test_check_section_commands_run(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BUGGY)
    (tmp_path / "train.py").write_text(BUGGY)
    (tmp_path / "nb.ipynb").write_text(make_nb(*TRAINING))
    commands = [ln for ln in blocks(CHECK, "bash")[0].splitlines() if ln.strip()]
    assert len(commands) == 4
    for line in commands:
        words = shlex.split(line, comments=True)
        stdin = None
        if "<" in words:
            at = words.index("<")
            stdin = (tmp_path / words[at + 1]).read_text()
            words = words[:at]
        proc = run(lraudit_cmd(shlex.join(words)), tmp_path, stdin=stdin)
        assert proc.returncode == 1, (line, proc.stdout, proc.stderr)  # each finds the planted bug
        assert "LR001" in proc.stdout
    words = shlex.split(commands[3], comments=True)
    stdin_run = run(lraudit_cmd(shlex.join(words[: words.index("<")])) + ["--format", "concise"],
                    tmp_path, stdin=BUGGY)
    assert stdin_run.stdout.startswith("src/train.py:9:5: LR001 ")


def test_code_frame_example_is_what_check_prints(tmp_path):
    (tmp_path / "train.py").write_text(BUGGY)
    (example,) = blocks(CHECK, "text")
    proc = run([sys.executable, "-m", "lraudit", "check", "--no-cache", "train.py"], tmp_path)
    printed = proc.stdout.splitlines()
    shown = example.splitlines()
    assert shown[0].endswith(": ...")  # the message is abridged in the README
    assert printed[0].startswith(shown[0][: -len(" ...")])
    assert printed[1: len(shown)] == shown[1:]


def test_options_table_matches_check_help():
    from lraudit.cli import check

    table = [ln for ln in CHECK.splitlines() if ln.startswith("| `")]
    first_column = " ".join(ln.split(" | ")[0] for ln in table)
    documented = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", " ".join(re.findall(r"`([^`]*)`", first_column))))
    options = set()
    for param in check.params:
        options.update(o for o in getattr(param, "opts", []) + getattr(param, "secondary_opts", []) if o.startswith("-"))
    options.discard("--help")
    options.discard("-h")
    assert options - documented == set(), "options missing from the README table"
    assert documented - options - {"-"} == set(), "README documents options that do not exist"
    formats = re.search(r"`--format ([a-z\\|]+)`", CHECK).group(1).replace("\\", "").split("|")
    assert tuple(formats) == check.params[[p.name for p in check.params].index("fmt")].type.choices


def test_toml_example_is_a_valid_config(tmp_path):
    (toml,) = blocks(CHECK, "toml")
    path = tmp_path / "pyproject.toml"
    path.write_text(toml)
    cfg = load_config(path)
    assert cfg.extend_exclude == ("third_party", "scripts/legacy_*.py") and cfg.force_exclude is False


def test_json_example_has_the_real_keys(tmp_path):
    (example,) = blocks(CHECK, "json")
    shown = json.loads(example.replace('"message": "..."', '"message": "m"').replace("...", ""))
    (tmp_path / "train.py").write_text(BUGGY)
    (tmp_path / "broken.py").write_text("optimizer.step(\n")
    real = json.loads(run([sys.executable, "-m", "lraudit", "check", "--no-cache", "--format", "json"], tmp_path).stdout)
    assert set(shown) == set(real)
    assert set(shown["findings"][0]) == set(real["findings"][0])
    assert set(shown["errors"][0]) == set(real["errors"][0])


def test_suppression_examples_are_directives():
    (example,) = [b for b in blocks(CHECK, "python") if "lraudit: ignore" in b]
    sup = Suppressions(example)
    kinds = {line: [(d.kind, d.codes) for d in ds] for line, ds in sup.directives.items()}
    assert kinds[1] == [("lraudit", ("LR001",))]
    assert kinds[2] == [("lraudit", ("LR002", "LR004"))]
    assert kinds[3] == [("lraudit", None)]
    assert kinds[4] == [("noqa", ("LR007",))] or kinds[4][0] == ("noqa", ("LR007",))


def test_precommit_snippet_pins_this_release():
    snippet = next(b for b in blocks(CHECK, "yaml") if "repos:" in b)
    config = yaml.safe_load(snippet)
    (repo,) = config["repos"]
    assert repo["rev"] == f"v{lraudit.__version__}"
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert [h["id"] for h in repo["hooks"]] == ["lraudit"] and "lraudit-fix" in hooks
    assert all("--force-exclude" in h["entry"] for h in hooks.values())
    assert "autoupdate --freeze" in CHECK


def test_github_actions_workflow_installs_the_release_and_writes_valid_sarif(tmp_path):
    workflow = yaml.safe_load(next(b for b in blocks(CHECK, "yaml") if "jobs:" in b))
    runs = [step["run"] for step in workflow["jobs"]["lraudit"]["steps"] if "run" in step]
    assert runs[0] == f"pip install 'torch-lraudit=={lraudit.__version__}'"
    (tmp_path / "train.py").write_text(BUGGY)
    proc = run(lraudit_cmd(runs[1]), tmp_path)
    assert proc.returncode == 1, proc.stderr
    import jsonschema

    log = json.loads((tmp_path / "lraudit.sarif").read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["LR001"]


def test_programmatic_use_line_runs(tmp_path, monkeypatch):
    line = CHECK[CHECK.index("Programmatic use:"):]
    imports = re.search(r"`(from lraudit\.config import [^`]+)`", line).group(1)
    call = re.search(r"`(check_paths\(paths, resolve_settings\(paths\)\))`", line).group(1)
    (tmp_path / "train.py").write_text(BUGGY)
    monkeypatch.chdir(tmp_path)
    scope: dict = {"paths": ["train.py"]}
    exec(imports, scope)
    result = eval(call, scope)
    assert [(f.path, f.line, f.rule) for f in result.findings] == [("train.py", 9, "LR001")]
    assert result.errors == [] and result.files_checked == 1


def test_main_help_and_readme_name_the_same_commands_and_install():
    from click.testing import CliRunner

    from lraudit.cli import main

    text = CliRunner().invoke(main, ["--help"]).stdout
    commands = re.findall(r"^  (\w+)\s{2,}\S", text.split("Commands:")[1], re.M)
    assert {"check", "rules", "explain", "run", "report"} <= set(commands)
    for command in commands:
        assert f"lraudit {command}" in README, command
    assert "pip install 'torch-lraudit[runtime]'" in " ".join(text.split()) and \
        "pip install 'torch-lraudit[runtime]'" in README
