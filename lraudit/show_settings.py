"""``lraudit check --show-settings``: the resolved configuration, and where each value came from.

For each file named (or ``--stdin-filename``), the rules that apply to it after ``per-file-ignores``
and whether an exclude covers it. Sources are ``default``, the configuration file (``pyproject.toml`` and its path), the command line
(the option's name) or the environment (``LRAUDIT_CACHE_DIR``). Rule selection lists the selectors of
each layer in the order they apply (defaults, file, command line), then the rules that result.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from lraudit.config import _KEYS, Settings, path_matches, tomllib

Row = Tuple[str, object, str]  # key, value, source


def config_keys():
    """Every key ``[tool.lraudit]`` accepts."""
    return _KEYS


def _file_keys(path: Optional[Path]) -> Dict[str, object]:
    """The keys set in the configuration file (empty without one)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    if Path(path).name == "pyproject.toml" or "tool" in data:
        table = data.get("tool", {}).get("lraudit", {}) if isinstance(data.get("tool"), dict) else {}
    else:
        table = data
    return table if isinstance(table, dict) else {}


def settings_rows(
    settings: Settings,
    *,
    targets: Sequence[str],
    cli: Dict[str, object],
    cache_dir: Optional[str] = None,
    no_cache: bool = False,
    files: Sequence[str] = (),
) -> List[Row]:
    """(key, value, source) rows; ``cli`` holds the command-line options that were given; ``files``
    (the named files, or stdin's filename) get a row of the rules that apply to each."""
    from lraudit.cache import default_cache_dir
    from lraudit.discovery import force_excluded

    file_keys = _file_keys(settings.config_path)
    where = str(settings.config_path) if settings.config_path is not None else ""

    def source(key: str, option: Optional[str] = None) -> str:
        if option and cli.get(option):
            return f"command line ({option})"
        if key in file_keys:
            return where
        return "default"

    rows: List[Row] = [
        ("paths", list(targets), "command line" if cli.get("paths") else "default"),
        ("config-file", where or None, "command line (--config)" if cli.get("--config") else
         ("command line (--isolated)" if cli.get("--isolated") else ("found" if where else "none found"))),
        ("root", str(settings.root), "the config file's directory" if where else "the current directory"),
    ]
    for key in ("select", "extend-select", "ignore"):
        if key in file_keys:
            rows.append((key, list(file_keys[key]), where))
    for option in ("--select", "--extend-select", "--ignore"):
        if cli.get(option):
            rows.append((option.lstrip("-"), list(cli[option]), f"command line ({option})"))
    selected_by = [row for row in rows if row[0] in ("select", "extend-select", "ignore")]
    rows.append(("rules", sorted(settings.rules),
                 "the selectors above, file then command line" if selected_by else "default: every static rule"))
    rows.append(("exclude", list(settings.exclude), source("exclude")))
    rows.append(("extend-exclude", list(settings.extend_exclude), source("extend-exclude")))
    rows.append(("per-file-ignores", {p: sorted(c) for p, c in settings.per_file_ignores.items()},
                 source("per-file-ignores")))
    rows.append(("severity", dict(sorted(settings.severity.items())), source("severity")))
    rows.append(("respect-gitignore", settings.respect_gitignore, source("respect-gitignore")))
    rows.append(("force-exclude", bool(getattr(settings, "force_exclude", False)),
                 source("force-exclude", "--force-exclude")))
    shown = {row[0] for row in rows}
    for key in config_keys():  # keys added to the config later show up too, with their source
        if key not in shown and key not in ("select", "extend-select", "ignore"):
            rows.append((key, getattr(settings, key.replace("-", "_"), None), source(key)))
    for path in files:
        patterns = [p for p in settings.per_file_ignores if path_matches(path, p, settings.root)]
        rows.append((f"rules for {path}", sorted(settings.rules - settings.ignored_for(path)),
                     "per-file-ignores " + ", ".join(repr(p) for p in patterns) if patterns else "the rules above"))
        if force_excluded(path, settings):
            rows.append((f"excluded: {path}", True, "checked only when named without --force-exclude"
                         if not settings.force_exclude else "not checked (force-exclude)"))
    if no_cache:
        rows.append(("cache-dir", None, "command line (--no-cache)"))
    elif cache_dir is not None:
        rows.append(("cache-dir", cache_dir, "command line (--cache-dir)"))
    else:
        env = os.environ.get("LRAUDIT_CACHE_DIR")
        rows.append(("cache-dir", str(default_cache_dir(settings.root)),
                     "environment (LRAUDIT_CACHE_DIR)" if env else "default"))
    return rows


def render_settings(rows: List[Row], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2) + "\n"
    width = max(len(k) for k, _, _ in rows)
    out = []
    for key, value, src in rows:
        shown = json.dumps(value) if not isinstance(value, str) else value
        out.append(f"{key:<{width}}  {shown}  [{src}]")
    return "\n".join(out) + "\n"
