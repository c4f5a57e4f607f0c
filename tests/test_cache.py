"""The result cache: hits skip the rules, any change of content, rules or version misses."""
from __future__ import annotations

import json

from click.testing import CliRunner

from lraudit import cache as cache_mod
from lraudit.cli import main
from lraudit.config import resolve_settings
from lraudit.engine import check_paths

from test_engine import BUGGY, CLEAN, fake_rules  # noqa: F401,E402


def run(tmp_path, **kw):
    s = resolve_settings([str(tmp_path)], isolated=True, **kw)
    return check_paths([str(tmp_path / "src")], s, cache_dir=str(tmp_path / "cache"))


def test_warm_run_skips_rules_and_gives_same_result(tmp_path, fake_rules):  # noqa: F811
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1  # BUG\n")
    (tmp_path / "src" / "b.py").write_text("SYNTAX\n")
    cold = run(tmp_path)
    assert len(fake_rules) == 2
    warm = run(tmp_path)
    assert len(fake_rules) == 2  # nothing re-checked
    assert warm.findings == cold.findings and warm.errors == cold.errors
    assert warm.files_checked == cold.files_checked == 1

    (tmp_path / "src" / "a.py").write_text("x = 1\ny = 2  # BUG\n")
    changed = run(tmp_path)
    assert len(fake_rules) == 3 and [f.line for f in changed.findings] == [2]

    run(tmp_path, select=["LR001"])  # other rules: another cache key
    assert len(fake_rules) == 5


def test_suppressions_apply_on_cached_results(tmp_path, fake_rules):  # noqa: F811
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1  # BUG\n")
    assert len(run(tmp_path).findings) == 1
    s = resolve_settings([str(tmp_path)], isolated=True, ignore=["LR001"])
    assert check_paths([str(tmp_path / "src")], s, cache_dir=str(tmp_path / "cache")).findings == []


def test_version_is_part_of_the_key(tmp_path, fake_rules, monkeypatch):  # noqa: F811
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1  # BUG\n")
    run(tmp_path)
    monkeypatch.setattr(cache_mod, "_fingerprint", "another-build")
    run(tmp_path)
    assert len(fake_rules) == 2


def test_corrupt_cache_is_ignored(tmp_path, fake_rules):  # noqa: F811
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1  # BUG\n")
    run(tmp_path)
    for f in (tmp_path / "cache").rglob("*.json"):
        f.write_text("{garbage")
    assert len(run(tmp_path).findings) == 1
    assert len(fake_rules) == 2


def test_cli_cache_dir_and_no_cache(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.lraudit]\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "t.py").write_text(BUGGY)
    (tmp_path / "pkg" / "ok.py").write_text(CLEAN)
    monkeypatch.chdir(tmp_path / "pkg")
    res = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json"])
    assert not (tmp_path / ".lraudit_cache").exists()
    cold = json.loads(res.stdout)
    res = CliRunner().invoke(main, ["check", "--format", "json"])
    cache_dir = tmp_path / ".lraudit_cache"  # beside the config, like ruff's
    assert (cache_dir / ".gitignore").read_text().strip().endswith("*")
    assert (cache_dir / "CACHEDIR.TAG").exists()
    warm = json.loads(CliRunner().invoke(main, ["check", "--format", "json"]).stdout)
    assert cold == json.loads(res.stdout) == warm
    assert warm["findings"][0]["path"] == "t.py"
