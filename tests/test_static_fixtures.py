"""Every static fixture is compared exactly with its inline ``# expect: LRxxx`` markers: a missing
finding and an extra finding both fail. Adding a fixture never means editing this file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lraudit.checks import check_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MARKER = re.compile(r"#\s*expect:\s*(LR\d{3}(?:\s*,\s*LR\d{3})*)")


def expected_findings(source: str):
    expected = set()
    for number, line in enumerate(source.splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            expected.update((number, code.strip()) for code in match.group(1).split(","))
    return expected


# Static fixtures, and the bundled examples of the README's quick start.
FILES = sorted((FIXTURES / "static").rglob("*.py")) + sorted((FIXTURES / "examples").rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(FIXTURES)) for p in FILES])
def test_fixture_findings_match_markers(path: Path):
    source = path.read_text(encoding="utf-8")
    findings = check_source(source, str(path))
    actual = {(f.line, f.rule) for f in findings}
    expected = expected_findings(source)
    missing = sorted(expected - actual)
    extra = sorted((f.line, f.rule, f.message) for f in findings if (f.line, f.rule) not in expected)
    assert not missing and not extra, f"missing={missing}\nextra={extra}"


def test_every_static_rule_has_a_firing_fixture():
    from lraudit.checks import RULES

    marked = set()
    for path in FILES:
        marked.update(code for _, code in expected_findings(path.read_text(encoding="utf-8")))
    assert {rule.code for rule in RULES} <= marked
