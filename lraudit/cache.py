"""``.lraudit_cache/``: per-file results keyed by content hash, lraudit version and selected rules.

What is cached is the raw output of the rules for one file's text (findings without their path, or
the parse error), before suppressions and per-file-ignores, so editing those never needs a re-parse.
One JSON file per (lraudit version + fingerprint of lraudit's own sources, Python's version, selected
rules) holds the entries of every file, keyed by path; an entry is valid while the file's content
hash is unchanged. Fix modes are not in the key because the entry holds findings, never fixes: the
engine analyses a file again whenever ``--fix``/``--diff`` could change it (an unsafe fix with
``--unsafe-fixes`` included). Every entry is validated when read: one of the wrong shape (valid JSON
or not) is a miss. Writes are atomic (temp file + ``os.replace``) and merge what concurrent runs
saved meanwhile, so two runs never corrupt the cache, and neither loses more than its own entries.
The directory carries a ``.gitignore`` and a ``CACHEDIR.TAG`` like ruff's.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence

import lraudit
from lraudit.atomic import replace_atomically
from lraudit.findings import Finding

CACHE_DIR_NAME = ".lraudit_cache"
_FORMAT = 2

_fingerprint: Optional[str] = None


def code_fingerprint() -> str:
    """lraudit's version plus the size and mtime of its own modules (a dev checkout changes it)."""
    global _fingerprint
    if _fingerprint is None:
        h = hashlib.blake2b(digest_size=12)
        h.update(lraudit.__version__.encode())
        pkg = Path(lraudit.__file__).parent
        for path in sorted(pkg.rglob("*.py")):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path.relative_to(pkg)}:{st.st_size}:{st.st_mtime_ns};".encode())
        _fingerprint = h.hexdigest()
    return _fingerprint


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def default_cache_dir(root: Path) -> Path:
    env = os.environ.get("LRAUDIT_CACHE_DIR")
    return Path(env) if env else Path(root) / CACHE_DIR_NAME


class Cache:
    """Load once, ``get``/``put`` per file, ``save`` once at the end of a run."""

    def __init__(self, directory: Path, rules: FrozenSet[str]):
        self.directory = Path(directory)
        key = hashlib.blake2b(digest_size=10)
        python = "%d.%d" % sys.version_info[:2]  # the prescan's parser is the running Python's
        key.update(f"{_FORMAT}|{lraudit.__version__}|{code_fingerprint()}|{python}|{','.join(sorted(rules))}".encode())
        self.file = self.directory / lraudit.__version__ / f"{key.hexdigest()}.json"
        self._entries: Dict[str, Any] = {}
        self._changed: Dict[str, list] = {}  # what this run put (merged over the file when saving)
        self._dirty = False
        self._entries = self._read()

    def _read(self) -> Dict[str, Any]:
        try:
            with open(self.file, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError, RecursionError):
            return {}
        if isinstance(data, dict) and data.get("format") == _FORMAT and isinstance(data.get("entries"), dict):
            return data["entries"]
        return {}

    def get(self, path: str, digest: str) -> Optional[Any]:
        """The value stored for ``path`` at this content ``digest``; None when absent or malformed."""
        entry = self._entries.get(path)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == digest and valid_value(entry[1])):
            return None
        return entry[1]

    def put(self, path: str, digest: str, value: Any) -> None:
        entry = self._entries.get(path)
        if entry is None or not isinstance(entry, list) or entry[:1] != [digest] or entry[1:] != [value]:
            self._entries[path] = self._changed[path] = [digest, value]
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            gitignore = self.directory / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text("# Automatically created by lraudit.\n*\n", encoding="utf-8")
                (self.directory / "CACHEDIR.TAG").write_text(
                    "Signature: 8a477f597d28d172789f06886806bc55\n# lraudit cache directory\n", encoding="utf-8"
                )
            self.file.parent.mkdir(parents=True, exist_ok=True)
            merged = self._read()  # entries another run saved since we loaded
            merged.update(self._changed)
            self._entries = merged
            payload = json.dumps({"format": _FORMAT, "entries": self._entries}, separators=(",", ":"))
            replace_atomically(str(self.file), lambda fh: fh.write(payload.encode("utf-8")))
        except OSError:
            return  # a read-only tree still gets checked, just not cached
        self._dirty = False
        self._changed = {}


def valid_value(value: Any) -> bool:
    """The shape the engine stores (:func:`findings_entry`): ``{"e": message}`` or ``{"f": [[line, column, end_line,
    end_column, rule, message, fixable, level], ...], "n"?: note, "r"?: {module path: content hash}}``,
    rules among the catalogue's (``level``: the finding's own severity or null; entries of 7 items,
    without it, are read too; ``r``: the other modules of the project the analysis read).
    """
    from lraudit import catalog

    if not isinstance(value, dict):
        return False
    if "e" in value:
        return isinstance(value["e"], str) and set(value) == {"e"}
    findings = value.get("f")
    if not isinstance(findings, list) or not set(value) <= {"f", "n", "r"}:
        return False
    if "n" in value and not isinstance(value["n"], str):
        return False
    reads = value.get("r", {})
    if not (isinstance(reads, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in reads.items())):
        return False
    for item in findings:
        if not (isinstance(item, list) and len(item) in (7, 8)):
            return False
        if len(item) == 8 and item[7] not in (None, catalog.ERROR, catalog.WARNING, catalog.INFO):
            return False
        line, column, end_line, end_column, rule, message, fixable = item[:7]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in (line, column, end_line, end_column)):
            return False
        if not (isinstance(rule, str) and rule in catalog.RULES and isinstance(message, str)
                and isinstance(fixable, bool)):
            return False
    return True


def findings_entry(findings: Sequence[Finding], note: Optional[str], reads: Dict[str, str]) -> Dict[str, Any]:
    """The entry of a file the rules ran on, in the shape :func:`valid_value` accepts (findings
    without their path; ``note`` and ``reads`` only when there are some)."""
    entry: Dict[str, Any] = {"f": [[f.line, f.column, f.end_line, f.end_column, f.rule, f.message, f.fixable,
                                    f.level] for f in findings]}
    if note:
        entry["n"] = note
    if reads:
        entry["r"] = reads
    return entry


def entry_findings(path: str, entry: Dict[str, Any]) -> List[Finding]:
    """The findings of a valid findings entry, located in ``path``."""
    return [Finding(path, v[0], v[1], v[2], v[3], v[4], v[5], bool(v[6]), v[7] if len(v) > 7 else None)
            for v in entry["f"]]
