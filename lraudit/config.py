"""``[tool.lraudit]`` in ``pyproject.toml``, plus the command line's overrides.

The nearest ``pyproject.toml`` with a ``[tool.lraudit]`` table, searched from the checked paths upwards
(like ruff), is the configuration; ``--config PATH`` names one explicitly (a ``pyproject.toml``, or any
TOML file whose top level holds the same keys). Anything malformed is a :class:`ConfigError`, never
silently ignored: unknown keys, wrong types, unknown rule codes or prefixes, unknown severities.

Rule selection follows ruff: layers (the file, then the command line) are applied in order; a layer's
``select`` replaces what came before, ``extend-select`` adds, ``ignore`` removes, and within a layer the
most specific selector wins (``select = ["LR001"]`` with ``ignore = ["LR"]`` keeps LR001).
"""
from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from lraudit import catalog

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

SEVERITIES = ("error", "warning", "info")

#: Directory names never walked into unless named on the command line.
DEFAULT_EXCLUDE: Tuple[str, ...] = (
    ".bzr",
    ".direnv",
    ".eggs",
    ".git",
    ".git-rewrite",
    ".hg",
    ".ipynb_checkpoints",
    ".lraudit_cache",
    ".mypy_cache",
    ".nox",
    ".pants.d",
    ".pytest_cache",
    ".pytype",
    ".ruff_cache",
    ".svn",
    ".tox",
    ".venv",
    "__pypackages__",
    "__pycache__",
    "_build",
    "buck-out",
    "build",
    "dist",
    "node_modules",
    "site-packages",
    "venv",
)

_KEYS = (
    "select", "ignore", "extend-select", "per-file-ignores", "exclude", "extend-exclude", "severity",
    "respect-gitignore", "force-exclude", "max-file-size",
)

#: Files larger than this are not read (a note says so): a generated 6 MB module would cost a minute
#: and gigabytes in libcst, per worker. ``max-file-size`` in [tool.lraudit] changes it (0: no bound).
DEFAULT_MAX_FILE_SIZE = 1_000_000
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "KIB": 1024, "MB": 1000 ** 2, "MIB": 1024 ** 2, "GB": 1000 ** 3}


class ConfigError(Exception):
    """A configuration (file or command line) lraudit refuses to guess about; the CLI exits 2."""


@dataclass(frozen=True)
class Layer:
    """One source of rule selection (the config file or the command line)."""

    select: Optional[Tuple[str, ...]] = None
    extend_select: Tuple[str, ...] = ()
    ignore: Tuple[str, ...] = ()


@dataclass
class Config:
    """The parsed ``[tool.lraudit]`` table (all fields optional in the file)."""

    path: Optional[Path] = None  # the file it came from; None: defaults only
    select: Optional[Tuple[str, ...]] = None
    ignore: Tuple[str, ...] = ()
    extend_select: Tuple[str, ...] = ()
    per_file_ignores: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    exclude: Optional[Tuple[str, ...]] = None  # None: DEFAULT_EXCLUDE
    extend_exclude: Tuple[str, ...] = ()
    severity: Dict[str, str] = field(default_factory=dict)
    respect_gitignore: bool = True
    force_exclude: bool = False
    max_file_size: int = DEFAULT_MAX_FILE_SIZE

    @property
    def root(self) -> Path:
        """Directory that relative patterns (exclude, per-file-ignores) are anchored at."""
        return self.path.parent.resolve() if self.path is not None else Path.cwd().resolve()


@dataclass
class Settings:
    """Everything the engine needs, resolved from the config file and the command line."""

    rules: FrozenSet[str]  # enabled static rule codes
    root: Path
    exclude: Tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: Tuple[str, ...] = ()
    per_file_ignores: Dict[str, FrozenSet[str]] = field(default_factory=dict)
    severity: Dict[str, str] = field(default_factory=dict)
    config_path: Optional[Path] = None
    respect_gitignore: bool = True  # skip what .gitignore files of walked directories ignore
    force_exclude: bool = False  # excludes apply to files named on the command line too (ruff's)
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # bytes; larger files are noted, not read (0: no bound)

    def ignored_for(self, path: str) -> FrozenSet[str]:
        """Codes that ``per-file-ignores`` switches off for ``path``."""
        out: set = set()
        for pattern, codes in self.per_file_ignores.items():
            if path_matches(path, pattern, self.root):
                out |= codes
        return frozenset(out)

    def is_excluded(self, path: str) -> bool:
        """True when a pattern of ``exclude`` (default: DEFAULT_EXCLUDE) or ``extend-exclude`` matches."""
        return any(path_matches(path, p, self.root) for p in self.exclude + self.extend_exclude)



# --------------------------------------------------------------------------------------------------
# Selectors


def static_codes() -> Tuple[str, ...]:
    return tuple(code for code, rule in catalog.RULES.items() if rule.static)


def validate_selector(selector: str, where: str) -> str:
    """Normalise a code or prefix (``lr00`` -> ``LR00``); ConfigError when it matches no rule."""
    if not isinstance(selector, str) or not selector.strip():
        raise ConfigError(f"{where}: expected a rule code or prefix, got {selector!r}")
    sel = selector.strip().upper()
    if sel == "ALL":
        return sel
    if not catalog.matching(sel):
        raise ConfigError(f"{where}: unknown rule code or prefix {selector!r} (see `lraudit rules`)")
    return sel


def split_selectors(values: Iterable[str], where: str) -> Tuple[str, ...]:
    """``["LR001,LR002", "LR01"]`` -> validated ``("LR001", "LR002", "LR01")`` (CLI or file)."""
    out: List[str] = []
    for value in values:
        parts = [part for part in str(value).split(",") if part.strip()]
        if not parts:  # ``--select ""``: a usage error (as in ruff), never "run nothing, all passed"
            raise ConfigError(f"{where}: empty rule selector {value!r}; name codes or prefixes (see `lraudit rules`)")
        out.extend(validate_selector(part, where) for part in parts)
    return tuple(out)


def _specificity(selector: str) -> int:
    return 0 if selector == "ALL" else len(selector)


def _matches(selector: str, code: str) -> bool:
    return selector == "ALL" or code.startswith(selector)


def resolve_rules(layers: Sequence[Layer]) -> FrozenSet[str]:
    """The enabled static rule codes after applying ``layers`` in order (see module docstring)."""
    enabled = set(static_codes())
    for layer in layers:
        selects = (layer.select or ()) + layer.extend_select
        base = set() if layer.select is not None else set(enabled)
        for code in static_codes():
            best_select = max((_specificity(s) for s in selects if _matches(s, code)), default=-1)
            best_ignore = max((_specificity(s) for s in layer.ignore if _matches(s, code)), default=-1)
            if best_select > best_ignore:
                base.add(code)
            elif best_ignore >= 0:
                base.discard(code)
        enabled = base
    return frozenset(enabled)


def codes_of(selectors: Iterable[str]) -> FrozenSet[str]:
    """Every catalogue code matched by ``selectors`` (runtime-only codes included)."""
    out: set = set()
    for sel in selectors:
        out |= {rule.code for rule in catalog.matching(sel)}
    return frozenset(out)


# --------------------------------------------------------------------------------------------------
# Paths


def path_matches(path: str, pattern: str, root: Path) -> bool:
    """ruff-like glob match: against the basename, the path relative to ``root``, and the path itself.

    A pattern without ``/`` matches any file or directory of that name (``build``, ``*_pb2.py``); one
    with ``/`` is anchored at the configuration's directory (``scripts/*.py``, ``src/legacy/**``).
    """
    norm = path.replace(os.sep, "/")
    pat = pattern.replace(os.sep, "/").rstrip("/")
    if pat.startswith("./"):
        pat = pat[2:]
    name = norm.rstrip("/").rsplit("/", 1)[-1]
    if "/" not in pat:
        return fnmatch.fnmatchcase(name, pat)
    candidates = {norm}
    try:
        rel = os.path.relpath(os.path.abspath(path), str(root)).replace(os.sep, "/")
        if not rel.startswith("../"):
            candidates.add(rel)
    except ValueError:  # other drive on Windows
        pass
    for cand in candidates:
        if fnmatch.fnmatchcase(cand, pat) or (pat.endswith("/**") and fnmatch.fnmatchcase(cand, pat[:-3])):
            return True
        # a directory pattern matches everything below it
        if fnmatch.fnmatchcase(cand, pat + "/*"):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Files


def _str_list(table: Mapping, key: str, where: str) -> Tuple[str, ...]:
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings, got {value!r}")
    return tuple(value)


def parse_table(table: Mapping, where: str, path: Optional[Path] = None) -> Config:
    """A :class:`Config` from a ``[tool.lraudit]`` table; ConfigError on anything unexpected."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [tool.lraudit] must be a table")
    cfg = Config(path=path)
    for key in table:
        if key not in _KEYS:
            hint = ""
            alt = key.replace("_", "-")
            if alt in _KEYS:
                hint = f" (did you mean `{alt}`?)"
            raise ConfigError(f"{where}: unknown key `{key}` in [tool.lraudit]{hint}; known keys: {', '.join(_KEYS)}")
    if "select" in table:
        cfg.select = split_selectors(_str_list(table, "select", where), f"{where}: select")
    if "extend-select" in table:
        cfg.extend_select = split_selectors(_str_list(table, "extend-select", where), f"{where}: extend-select")
    if "ignore" in table:
        cfg.ignore = split_selectors(_str_list(table, "ignore", where), f"{where}: ignore")
    if "exclude" in table:
        cfg.exclude = _str_list(table, "exclude", where)
    if "extend-exclude" in table:
        cfg.extend_exclude = _str_list(table, "extend-exclude", where)
    if "per-file-ignores" in table:
        pfi = table["per-file-ignores"]
        if not isinstance(pfi, dict):
            raise ConfigError(f"{where}: `per-file-ignores` must be a table of glob = [codes]")
        for pattern, codes in pfi.items():
            if isinstance(codes, str):
                codes = [codes]
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise ConfigError(f"{where}: per-file-ignores[{pattern!r}] must be a list of rule codes")
            cfg.per_file_ignores[pattern] = split_selectors(codes, f"{where}: per-file-ignores[{pattern!r}]")
    if "respect-gitignore" in table:
        if not isinstance(table["respect-gitignore"], bool):
            raise ConfigError(f"{where}: `respect-gitignore` must be true or false")
        cfg.respect_gitignore = table["respect-gitignore"]
    if "force-exclude" in table:
        if not isinstance(table["force-exclude"], bool):
            raise ConfigError(f"{where}: `force-exclude` must be true or false")
        cfg.force_exclude = table["force-exclude"]
    if "max-file-size" in table:
        cfg.max_file_size = parse_size(table["max-file-size"], f"{where}: max-file-size")
    if "severity" in table:
        sev = table["severity"]
        if not isinstance(sev, dict):
            raise ConfigError(f"{where}: `severity` must be a table of code = \"error\" | \"warning\" | \"info\"")
        for selector, level in sev.items():
            sel = validate_selector(selector, f"{where}: severity")
            if not isinstance(level, str) or level.lower() not in SEVERITIES:
                raise ConfigError(
                    f"{where}: severity[{selector!r}] must be one of {', '.join(SEVERITIES)}, got {level!r}"
                )
            for code in sorted(codes_of([sel])):
                cfg.severity[code] = level.lower()
    return cfg


def parse_size(value, where: str) -> int:
    """Bytes from ``1000000``, ``"2MB"``, ``"512 KiB"``; ConfigError on anything else."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size in bytes (or a string such as \"2MB\"), got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{where}: a size cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        digits = text.rstrip("KMGIB")
        unit = text[len(digits):]
        try:
            number = float(digits)
        except ValueError:
            number = -1.0
        if number >= 0 and unit in _SIZE_UNITS:
            return int(number * _SIZE_UNITS[unit])
    raise ConfigError(f"{where}: expected a size in bytes (or a string such as \"2MB\"), got {value!r}")


def _toml(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid TOML: nested too deeply to read") from None


def load_config(path: Path) -> Config:
    """Parse one config file: ``pyproject.toml`` -> ``[tool.lraudit]``; other TOML -> its top level."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read config file: {exc}") from None
    data = _toml(text, where)
    if path.name == "pyproject.toml" or "tool" in data:
        table = data.get("tool", {}).get("lraudit", {}) if isinstance(data.get("tool"), dict) else {}
    else:
        table = data
    return parse_table(table, where, path)


def find_config(paths: Sequence[str]) -> Optional[Path]:
    """The nearest ``pyproject.toml`` holding ``[tool.lraudit]``, from the checked paths upwards."""
    existing = [os.path.abspath(p) for p in paths if os.path.exists(p)] or [os.getcwd()]
    try:
        start = os.path.commonpath(existing)
    except ValueError:
        start = existing[0]
    if os.path.isfile(start):
        start = os.path.dirname(start)
    cur = Path(start)
    for directory in (cur, *cur.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                raw = candidate.read_bytes()
            except OSError:
                continue
            if b"lraudit" not in raw:
                continue
            try:
                text = raw.decode("utf-8")
                data = tomllib.loads(text)
            except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
                # mentions lraudit but is broken (not UTF-8, not TOML): load_config reports it,
                # rather than every rule running as if there were no configuration
                return candidate
            if isinstance(data.get("tool"), dict) and "lraudit" in data["tool"]:
                return candidate
    return None


def resolve_settings(
    paths: Sequence[str] = (".",),
    *,
    config_path: Optional[str] = None,
    select: Optional[Iterable[str]] = None,
    ignore: Iterable[str] = (),
    extend_select: Iterable[str] = (),
    isolated: bool = False,
) -> Settings:
    """Settings for checking ``paths``: the config file (explicit or found) overlaid by CLI options."""
    if config_path is not None:
        cfg = load_config(Path(config_path))
    else:
        found = None if isolated else find_config(paths)
        cfg = load_config(found) if found is not None else Config()
    cli = Layer(
        select=split_selectors(select, "--select") if select is not None else None,
        extend_select=split_selectors(extend_select, "--extend-select"),
        ignore=split_selectors(ignore, "--ignore"),
    )
    file_layer = Layer(select=cfg.select, extend_select=cfg.extend_select, ignore=cfg.ignore)
    return Settings(
        rules=resolve_rules([file_layer, cli]),
        root=cfg.root,
        exclude=cfg.exclude if cfg.exclude is not None else DEFAULT_EXCLUDE,
        extend_exclude=cfg.extend_exclude,
        per_file_ignores={p: codes_of(c) for p, c in cfg.per_file_ignores.items()},
        severity=dict(cfg.severity),
        config_path=cfg.path,
        respect_gitignore=cfg.respect_gitignore,
        force_exclude=cfg.force_exclude,
        max_file_size=cfg.max_file_size,
    )
