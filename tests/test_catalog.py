"""The catalogue is the single source of truth: rendered copies (rules/ pages, the README table,
`lraudit explain`) must match it, and both halves' rules must exist in it."""
from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from lraudit import catalog
from lraudit.checks import RULES as STATIC_RULES

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ("## What it does", "## Why is this bad?", "## Example", "## Use instead", "## Runtime detection",
            "## Fix safety", "## References")


def test_rule_pages_are_rendered_from_the_catalogue():
    for rule in catalog.RULES.values():
        page = ROOT / "rules" / f"{rule.code}.md"
        assert page.read_text(encoding="utf-8") == catalog.render_page(rule), (
            f"{page} is stale: run `python -m lraudit.catalog`")
    pages = {p.stem for p in (ROOT / "rules").glob("LR*.md")}
    assert pages == set(catalog.RULES)


def test_readme_rule_table_is_rendered_from_the_catalogue():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split(catalog.README_TABLE_START, 1)[1].split(catalog.README_TABLE_END, 1)[0]
    assert table.strip() == catalog.render_table().strip(), "README table is stale: run `python -m lraudit.catalog`"


def test_every_page_has_the_standard_headings():
    for rule in catalog.RULES.values():
        page = catalog.render_page(rule)
        for heading in HEADINGS:
            assert heading in page, (rule.code, heading)


def test_codes_are_sequential_and_names_unique():
    codes = list(catalog.RULES)
    assert codes == [f"LR{n:03d}" for n in range(1, len(codes) + 1)]
    assert len({r.name for r in catalog.RULES.values()}) == len(codes)


def test_every_static_rule_is_catalogued_as_static():
    for rule in STATIC_RULES:
        assert catalog.RULES[rule.code].static, rule.code


def test_lookup_by_code_name_and_prefix():
    assert catalog.get("lr001").name == "scheduler-before-optimizer"
    assert catalog.get("scheduler-before-optimizer").code == "LR001"
    assert [r.code for r in catalog.matching("LR01")] == [f"LR01{n}" for n in range(10)]


def test_explain_prints_the_page():
    from lraudit.cli import main

    result = CliRunner().invoke(main, ["explain", "LR002"])
    assert result.exit_code == 0
    assert "manual-lr-write-with-scheduler" in result.output
    assert "Why is this bad?" in result.output


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_command = next(b for b in blocks if "pytest" in b).strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()
