"""Which files ``lraudit check PATHS`` looks at.

Directories are walked for ``.py``, ``.pyi`` and ``.ipynb`` files, skipping the default excludes
(``.git``, ``.venv``, ``build``, ``__pycache__``, ...), the user's ``exclude``/``extend-exclude``
globs, and what ``.gitignore`` files ignore (those of the walked directories, and of their parents up
to the git repository's root; ``respect-gitignore = false`` turns that off). Files named on the
command line are always checked whatever their suffix, as in ruff; with ``force_exclude``
(``--force-exclude``, or ``force-exclude = true``; the pre-commit hooks pass it, since pre-commit names
every file) ``exclude``/``extend-exclude`` apply to them too, to the file and to each of its parent
directories up to the configuration's directory. Symbolic links are followed; a link that
leads back into a directory being walked is reported once, not followed forever. A path that does not
exist is an error line, and the other paths are still checked.

Paths are reported as given: ``lraudit check src`` yields ``src/train.py``, ``lraudit check .``
yields ``train.py``.
"""
from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from lraudit.config import Settings, path_matches

SUFFIXES = (".py", ".pyi", ".ipynb")


@dataclass(frozen=True)
class SourceFile:
    path: str  # as reported (relative to what the user typed)
    explicit: bool = False  # named on the command line

    @property
    def is_notebook(self) -> bool:
        return self.path.endswith(".ipynb")


def _display(base: str, rel: str) -> str:
    joined = os.path.join(base, rel)
    return os.path.normpath(joined) if base in (".", "./") or base.startswith("./") else joined


def discover(paths: List[str], settings: Settings) -> Tuple[List[SourceFile], List[Dict[str, str]]]:
    """Files to check (sorted, each once) and error entries (``{"path", "message"}``)."""
    files: List[SourceFile] = []
    errors: List[Dict[str, str]] = []
    seen_files: Set[Tuple[int, int]] = set()

    def add(display: str, explicit: bool) -> None:
        try:
            st = os.stat(display)
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = (-1, hash(display))
        if key in seen_files:
            return
        seen_files.add(key)
        files.append(SourceFile(display, explicit))

    for arg in paths or ["."]:
        try:
            st = os.stat(arg)
        except FileNotFoundError:
            if os.path.islink(arg):
                errors.append({"path": arg, "message": "broken symbolic link"})
            else:
                errors.append({"path": arg, "message": "no such file or directory"})
            continue
        except OSError as exc:
            errors.append({"path": arg, "message": _os_message(exc)})
            continue
        if settings.force_exclude and force_excluded(arg, settings):
            continue  # a named file or directory the excludes cover (pre-commit names every file)
        if stat.S_ISDIR(st.st_mode):
            _walk(arg, settings, add, errors)
        else:
            add(arg, True)

    files.sort(key=lambda f: f.path)
    errors.sort(key=lambda e: e["path"])
    return files, errors


def force_excluded(path: str, settings: Settings) -> bool:
    """Whether an exclude pattern matches ``path`` or one of its parent directories (``third_party``
    excludes ``third_party/vendored.py``). Parents are followed up to the configuration's directory
    (exclusive) when the file lies below it, else as far as the path was written."""
    patterns = settings.exclude + settings.extend_exclude
    if not patterns:
        return False
    root = str(settings.root)
    absolute = os.path.abspath(path)
    candidates: List[str] = []
    if absolute.startswith(root.rstrip(os.sep) + os.sep):
        here = absolute
        while here != root and len(here) > len(root):
            candidates.append(here)
            here = os.path.dirname(here)
    else:
        here = os.path.normpath(path)
        while here and here not in (".", "..", os.sep) and os.path.basename(here) not in ("", ".", ".."):
            candidates.append(here)
            here = os.path.dirname(here)
    return any(path_matches(c, p, settings.root) for c in candidates for p in patterns)


def _os_message(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)


class _GitIgnore:
    """The patterns of one ``.gitignore`` (the common subset: globs, ``!``, trailing ``/``, anchors)."""

    def __init__(self, base: str, text: str):
        self.base = base
        self.rules: List[Tuple[str, bool, bool, bool]] = []  # pattern, negated, dir_only, anchored
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            if negated:
                line = line[1:]
            if line.startswith("\\"):
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line  # a leading or inner slash anchors it at the .gitignore's directory
            line = line.lstrip("/")
            if line.startswith("**/"):
                line, anchored = line[3:], "/" in line[3:]
            if line:
                self.rules.append((line, negated, dir_only, anchored))

    def match(self, path: str, is_dir: bool) -> Optional[bool]:
        """True: ignored, False: re-included by ``!``, None: no pattern of this file applies."""
        rel = os.path.relpath(path, self.base).replace(os.sep, "/")
        name = rel.rsplit("/", 1)[-1]
        verdict = None
        for pattern, negated, dir_only, anchored in self.rules:
            if dir_only and not is_dir:
                continue
            target = rel if anchored else name
            if fnmatch.fnmatchcase(target, pattern) or (anchored and fnmatch.fnmatchcase(rel, pattern + "/**")):
                verdict = not negated
        return verdict


def _load_gitignore(directory: str) -> Optional[_GitIgnore]:
    path = os.path.join(directory, ".gitignore")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return _GitIgnore(directory, fh.read())
    except OSError:
        return None


def _ancestor_gitignores(top: str) -> Tuple[_GitIgnore, ...]:
    """.gitignore files above ``top``, up to the enclosing git repository's root (outermost first)."""
    found: List[_GitIgnore] = []
    here = os.path.dirname(os.path.abspath(top))
    while True:
        gi = _load_gitignore(here)
        if gi is not None:
            found.append(gi)
        if os.path.exists(os.path.join(here, ".git")):
            return tuple(reversed(found))
        parent = os.path.dirname(here)
        if parent == here:
            return ()  # not inside a git repository: only the walked directories' own files count
        here = parent


def _walk(top: str, settings: Settings, add, errors: List[Dict[str, str]]) -> None:
    # Iterative DFS; `ancestors` holds the (dev, inode) of the directories on the current path, so that a
    # symlink pointing back up is a loop (reported), while two links to one sibling dir are both walked.
    try:
        st = os.stat(top)
    except OSError as exc:
        errors.append({"path": top, "message": _os_message(exc)})
        return
    Ignores = Tuple[_GitIgnore, ...]
    outer: Ignores = _ancestor_gitignores(top) if settings.respect_gitignore else ()
    if outer and _ignored(outer, os.path.abspath(top), True):
        # The user named an ignored directory (a package under a git-tracked ~/.pyenv, say):
        # what was asked for is checked; only the .gitignore files inside it still apply.
        outer = ()
    stack: List[Tuple[str, Tuple[Tuple[int, int], ...], Ignores]] = [(top, ((st.st_dev, st.st_ino),), outer)]
    while stack:
        directory, ancestors, ignores = stack.pop()
        if settings.respect_gitignore:
            own = _load_gitignore(directory)
            if own is not None:
                ignores = ignores + (own,)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            errors.append({"path": directory, "message": f"cannot list directory: {_os_message(exc)}"})
            continue
        subdirs = []
        for entry in entries:
            display = _display(directory, entry.name)
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if settings.is_excluded(display):
                continue
            if ignores and _ignored(ignores, display, is_dir):
                continue
            if is_dir:
                try:
                    est = os.stat(entry.path)
                except OSError as exc:
                    errors.append({"path": display, "message": _os_message(exc)})
                    continue
                key = (est.st_dev, est.st_ino)
                if key in ancestors:
                    errors.append({"path": display, "message": "symbolic link loop: not followed"})
                    continue
                subdirs.append((display, ancestors + (key,), ignores))
                continue
            if not entry.name.endswith(SUFFIXES):
                continue
            if entry.is_symlink():
                try:
                    os.stat(entry.path)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        errors.append({"path": display, "message": "symbolic link loop"})
                    else:
                        errors.append({"path": display, "message": "broken symbolic link"})
                    continue
            add(display, False)
        stack.extend(reversed(subdirs))


def _ignored(ignores, path: str, is_dir: bool) -> bool:
    verdict = False
    for gi in ignores:  # outer to inner: a deeper .gitignore has the last word
        v = gi.match(path, is_dir)
        if v is not None:
            verdict = v
    return verdict
