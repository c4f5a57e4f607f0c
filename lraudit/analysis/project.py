"""The project layer: which file of the checked project an import names, and each module's summary
and parsed tree, read on demand and at most once.

Resolution (DESIGN.md section 3, "The project model"):

- relative imports (``from .engine import train_one_epoch``, ``from ..utils import x``) against the
  importing module's own folder;
- absolute imports (``from engine import ...``, ``import utils.scheduler``) against the importing
  module's folder and each of its ancestors up to the *project root*, and the ``src/`` folder of
  each (``src/`` layouts). The root is the nearest folder holding ``pyproject.toml``, ``setup.py``,
  ``setup.cfg`` or ``.git``; without one, the current folder when the file lies under it (where the
  command was given), else the folder holding the outermost package around the file. A script
  under ``tools/`` or ``scripts/`` that does ``sys.path.insert(0, ...)`` to import its project is
  covered by the ancestors.
- a dotted name is split at its longest prefix that is a module file (``pkg/engine.py`` or
  ``pkg/engine/__init__.py``); the rest are attributes. A name a package's ``__init__.py`` only
  re-exports (``from .scheduler import WarmupLR``) is followed to where it is defined.

Nothing is read eagerly: a module is summarised (``ast``) when the interpreter first meets a call
into it, and parsed by libcst only when its summary says the called definition can matter. Missing
modules, modules that do not decode or parse, and import cycles leave the name unknown, silently.

Bounds (per checked file): ``MAX_MODULES`` modules summarised, ``MAX_PARSED`` parsed by libcst,
``MAX_HOPS`` re-export hops per name; calls are inlined at most ``interpreter.MAX_DEPTH`` deep. When
a bound is hit, further names stay unknown and ``Project.bounded`` says so. Every file read is
recorded with its content hash (``Project.reads``): a cached result stays valid only while they are
unchanged.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tokenize
from collections import OrderedDict
from functools import lru_cache
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import libcst as cst

from lraudit.analysis.prescan import _is_known
from lraudit.analysis.summaries import Summary, summarise

ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
MAX_MODULES = 64  # modules summarised per checked file
MAX_PARSED = 24  # of which parsed by libcst
MAX_HOPS = 6  # re-export hops when following one name
MAX_ANCESTORS = 12  # folders searched above a module when no root marker is found sooner

# Libraries whose names are never looked up among the project's files (a project may hold a folder
# named like one, but its code imports the real one).
_EXTERNAL_HEADS = frozenset({
    "torch", "transformers", "accelerate", "lightning", "pytorch_lightning", "timm", "diffusers",
    "numpy", "os", "sys", "math", "typing", "collections", "functools", "itertools", "logging",
    "deepspeed", "apex", "bitsandbytes", "torchvision", "tensorflow", "jax", "re", "json", "time",
})

# Parsed modules and summaries shared by every checked file of one process, keyed by content.
_SUMMARIES: "OrderedDict[str, Optional[Summary]]" = OrderedDict()
_TREES: "OrderedDict[str, Optional[cst.Module]]" = OrderedDict()
_CACHE_SIZE = 256


def _remember(table: OrderedDict, key: str, value) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _CACHE_SIZE:
        table.popitem(last=False)


@dataclass
class ModuleFile:
    path: str  # absolute, normalised
    source: str
    digest: str
    summary: Optional[Summary]


def digest_of(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def find_root(directory: str) -> str:
    """The project root for a module in ``directory`` (see the module docstring)."""
    return _find_root(directory, os.path.abspath(os.getcwd()))


@lru_cache(maxsize=4096)
def _find_root(directory: str, cwd: str) -> str:
    current = directory
    for _ in range(64):
        if any(os.path.exists(os.path.join(current, marker)) for marker in ROOT_MARKERS):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if directory == cwd or directory.startswith(cwd + os.sep):
        return cwd
    # Checked from elsewhere (an unpacked wheel): the folder holding the outermost package around it.
    current = directory
    while os.path.isfile(os.path.join(current, "__init__.py")) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    return current


class Project:
    """The project seen from one checked file (``home``, an absolute path)."""

    def __init__(self, home: str) -> None:
        self.home = os.path.normpath(os.path.abspath(home))
        self.root = find_root(os.path.dirname(self.home))
        self.reads: Dict[str, str] = {}  # path -> content hash of every module read
        self._files: Dict[str, Optional[ModuleFile]] = {}
        self._trees: Dict[str, Optional[cst.Module]] = {}
        self._state = {"parsed": 0, "bounded": False}  # shared with siblings: one budget per checked file

    @property
    def bounded(self) -> bool:
        """A bound was hit: some names stayed unknown."""
        return self._state["bounded"]

    def sibling(self, path: str) -> "Project":
        """The same project seen from another of its modules, sharing what was read and the bounds."""
        other = Project.__new__(Project)
        other.__dict__.update(self.__dict__)
        other.home = path
        return other

    # ------------------------------------------------------------------ files
    def module_file(self, path: str) -> Optional[ModuleFile]:
        """Source, hash and summary of a module file (None: unreadable, or a bound was hit)."""
        if path in self._files:
            return self._files[path]
        if len(self._files) >= MAX_MODULES:
            self._state["bounded"] = True
            return None
        found: Optional[ModuleFile] = None
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            data = None
        if data is not None:
            digest = digest_of(data)
            self.reads[path] = digest
            source = _decode(data)
            if source is not None:
                if digest in _SUMMARIES:
                    summary = _SUMMARIES[digest]
                else:
                    summary = summarise(source)
                    _remember(_SUMMARIES, digest, summary)
                if summary is not None:
                    found = ModuleFile(path, source, digest, summary)
        self._files[path] = found
        return found

    def tree(self, module: ModuleFile) -> Optional[cst.Module]:
        """The libcst tree of a module (None: it does not parse, or a bound was hit)."""
        if module.path in self._trees:
            return self._trees[module.path]
        tree: Optional[cst.Module] = None
        if module.digest in _TREES:
            tree = _TREES[module.digest]
        elif self._state["parsed"] >= MAX_PARSED:
            self._state["bounded"] = True
            return None
        else:
            self._state["parsed"] += 1
            try:
                tree = cst.parse_module(module.source)
            except Exception:  # noqa: BLE001 - a module that does not parse is unknown
                tree = None
            _remember(_TREES, module.digest, tree)
        self._trees[module.path] = tree
        return tree

    # ------------------------------------------------------------------ names
    def search_folders(self, origin: str) -> List[str]:
        """Folders an absolute import of the module at ``origin`` is resolved against, nearest first."""
        folders: List[str] = []
        current = os.path.dirname(origin)
        for _ in range(MAX_ANCESTORS):
            folders.append(current)
            src = os.path.join(current, "src")
            if os.path.isdir(src):
                folders.append(src)
            if current == self.root or not current.startswith(self.root):
                break
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        return folders

    def locate(self, qualname: str, origin: str) -> Optional[Tuple[str, List[str]]]:
        """(module file, remaining attribute names) for a qualified name as the module at ``origin``
        imports it, or None when no file of the project holds it."""
        level = len(qualname) - len(qualname.lstrip("."))
        parts = [p for p in qualname[level:].split(".") if p]
        if level:
            folder = os.path.dirname(origin)
            for _ in range(level - 1):
                folder = os.path.dirname(folder)
            # ``from . import engine``: the package itself, then its submodule
            found = _longest_module(folder, parts)
            if found is None and not parts:
                init = os.path.join(folder, "__init__.py")
                return (init, []) if os.path.isfile(init) else None
            return found
        if not parts or parts[0] in _EXTERNAL_HEADS:
            return None
        for folder in self.search_folders(origin):
            found = _longest_module(folder, parts)
            if found is not None:
                return found
        return None

    def definition(self, qualname: str, origin: str) -> Optional[Tuple[ModuleFile, str, List[str]]]:
        """Where a qualified name is defined: (module, top-level name, attribute names after it),
        following re-exports; None when unknown. A name that is a module itself gives name ''."""
        seen = set()
        for _ in range(MAX_HOPS):
            located = self.locate(qualname, origin)
            if located is None:
                return None
            path, rest = located
            if (path, tuple(rest)) in seen:
                return None  # an import cycle: unknown
            seen.add((path, tuple(rest)))
            module = self.module_file(path)
            if module is None or module.summary is None:
                return None
            if not rest:
                return module, "", []
            name, after = rest[0], rest[1:]
            summary = module.summary
            if name in summary.functions or name in summary.classes or name in summary.tables:
                return module, name, after
            imported = summary.imports.get(name)
            if imported is None:
                return None
            qualname = ".".join([imported] + after) if after else imported
            origin = path
        self._state["bounded"] = True
        return None


    # ------------------------------------------------------------------ classes, from summaries alone
    def _class(self, qualname: str, origin: str):
        found = self.definition(qualname, origin)
        if found is None:
            return None
        module, name, after = found
        cls = module.summary.classes.get(name) if name and not after else None
        return (module, cls) if cls is not None else None

    def ancestors(self, qualname: str, origin: str, depth: int = 0):
        """Qualified names of the ancestors of a class of the project (its bases, theirs, ...),
        read from summaries only: nothing is parsed by libcst to know what a class extends."""
        found = self._class(qualname, origin) if depth <= 4 else None
        if found is None:
            return
        module, cls = found
        for base in cls.bases:
            if base in module.summary.classes:  # a class of the same module
                base = _local_qualname(module.path, base)
            yield base
            yield from self.ancestors(base, module.path, depth + 1)

    def constructs(self, module: ModuleFile, name: str) -> bool:
        """``Summary.constructs`` across the project: a factory or table of known optimizers or
        schedulers, or a class with a known one among its ancestors however many bases away (in
        this module or in others; bounded and cycle-safe as ``ancestors`` is)."""
        summary = module.summary
        if summary.constructs(name):
            return True
        if name not in summary.classes:
            return False
        return any(_is_known(a) for a in self.ancestors(_local_qualname(module.path, name), module.path))

    def class_has_method(self, qualname: str, origin: str, method: str, depth: int = 0) -> bool:
        """Whether a class of the project (or one of its project bases) defines ``method``."""
        found = self._class(qualname, origin) if depth <= 4 else None
        if found is None:
            return False
        module, cls = found
        if method in cls.methods:
            return True
        return any(self.class_has_method(_local_qualname(module.path, b) if b in module.summary.classes else b,
                                         module.path, method, depth + 1) for b in cls.bases)


def _local_qualname(path: str, name: str) -> str:
    """A name of the module at ``path`` written as a relative import from that very module."""
    module = os.path.splitext(os.path.basename(path))[0]
    return f".{name}" if module == "__init__" else f".{module}.{name}"


def open_project(path: Optional[str]) -> Optional[Project]:
    """The project of a checked file at ``path`` (it need not exist: stdin with a file name), or None
    when its folder does not exist (a made-up name: the module is analysed alone)."""
    if not path or path == "-":
        return None
    folder = os.path.dirname(os.path.abspath(path))
    return Project(path) if os.path.isdir(folder) else None


def imports_project_constructions(scan, project: Project) -> bool:
    """Whether a module that references no known optimizer or scheduler itself calls a name of its
    project that builds one (a factory, a scheduler subclass, a table of scheduler classes): then
    its own loop may misuse what it gets, and it is worth analysing. Reads only the modules of the
    names it calls (and of the modules it imports whole, ``import utils; utils.build(...)``)."""
    wanted = {name for name in scan.called if _CONSTRUCTION_NAME.search(name)}
    if not wanted:
        return False  # nothing it calls is named like a factory of optimizers or schedulers
    for local, qualified in scan.imports.aliases.items():
        if local not in wanted:
            located = project.locate(qualified, project.home)
            if located is None or located[1]:
                continue  # not a module of the project imported whole
        found = project.definition(qualified, project.home)
        if found is None:
            continue
        module, name, _ = found
        summary = module.summary
        if name:
            if local in wanted and project.constructs(module, name):
                return True
        elif any(n in wanted and project.constructs(module, n) for n in list(summary.functions) + list(summary.classes)):
            return True
    return False


# The names a module that references no optimizer or scheduler itself must call for the gate above to
# read the modules they come from: factories and scheduler classes are named so in real code
# (build_optimizer, get_lr_scheduler, create_scheduler, WarmupCosineLR, SCHEDULERS, PolyLRScheduler).
# Reading costs an ``ast`` parse per module: a file calling only ``is_torch_available()`` reads none.
_CONSTRUCTION_NAME = re.compile(r"(?i)optim|sched|warm|lr(?![a-z])|(?<![a-z])lr|param_group")


def _longest_module(folder: str, parts: List[str]) -> Optional[Tuple[str, List[str]]]:
    """The longest prefix of ``parts`` that is a module under ``folder``: (file, the rest)."""
    best = None
    current = folder
    for index, part in enumerate(parts):
        package = os.path.join(current, part)
        init = os.path.join(package, "__init__.py")
        if os.path.isdir(package):  # a package (or a namespace package) wins over a module file
            if os.path.isfile(init):
                best = (os.path.normpath(init), parts[index + 1:])
            current = package
            continue
        if os.path.isfile(package + ".py"):
            best = (os.path.normpath(package + ".py"), parts[index + 1:])
        break  # a module file has no submodules
    return best


def _decode(data: bytes) -> Optional[str]:
    """A module's text per PEP 263, or None (NUL bytes, undecodable: unknown, silently)."""
    if b"\x00" in data:
        return None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return None


_CURRENT: Dict[Tuple[str, int, int], str] = {}  # (path, size, mtime) -> content hash, per process


def unchanged(reads: Dict[str, str]) -> bool:
    """Whether every module a cached result read still has the content it had (each file hashed at
    most once per process while its size and mtime stay the same)."""
    for path, digest in reads.items():
        try:
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns)
            current = _CURRENT.get(key)
            if current is None:
                with open(path, "rb") as handle:
                    current = _CURRENT[key] = digest_of(handle.read())
        except OSError:
            return False
        if current != digest:
            return False
    return True
