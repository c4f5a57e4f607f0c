"""The trajectory file (DESIGN.md section 4): version 2 written, versions 1 and 2 read.

Torch-free and rich-free: ``lraudit report`` and ``lraudit export`` read saved files anywhere.

Version 1 stores every step: ``{"version": 1, "optimizers": [{"name": "lr-SGD", "class": "SGD",
"steps": N, "groups": [{"name": "pg1", "lr": [0.1, 0.1, ...]}]}], "findings": [...]}``, a non-finite
LR as ``null``.

Version 2 has the same shape and stores each series as *runs*: a number is the value of one step,
``[value, count]`` the value of ``count`` consecutive steps (count >= 2); ``"nan"``, ``"inf"`` and
``"-inf"`` stand for non-finite values (``null`` is read as NaN). A group may instead say
``"same_as": j`` (an earlier group of the same optimizer with identical values from the same step),
and ``"start": k`` when it was added at update k (``add_param_group``; 0 when absent). Groups whose
momentum or betas a scheduler changed carry ``"momentum"`` or ``"beta1"``/``"beta2"`` in the same
encoding, aligned with ``"lr"``. 100k steps x 8 groups at a constant LR take well under a kilobyte.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from lraudit.atomic import replace_atomically
from lraudit.catalog import ERROR, INFO, WARNING
from lraudit.runtime.series import series_name

VERSION = 2
READABLE = (1, 2)
PARAM_KEYS = ("momentum", "beta1", "beta2")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_LEVELS = (ERROR, WARNING, INFO)


class TrajectoryError(ValueError):
    """The file is not a trajectory lraudit can read (missing, not JSON, wrong shape or version)."""


# --------------------------------------------------------------------------------------------------
# Encoding


def encode_value(v: float) -> Union[float, str]:
    if math.isfinite(v):
        return v
    return "nan" if v != v else ("inf" if v > 0 else "-inf")


def encode_runs(runs: Iterable[Tuple[float, int]]) -> list:
    """``(value, count)`` pairs to version 2's list; adjacent equal runs are merged."""
    out: list = []
    last: Any = None
    count = 0
    for value, n in runs:
        if n <= 0:
            continue
        enc = encode_value(float(value))
        if count and enc == last:
            count += n
            continue
        if count:
            out.append(last if count == 1 else [last, count])
        last, count = enc, n
    if count:
        out.append(last if count == 1 else [last, count])
    return out


def _number(v: Any, where: str) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise _Bad(f"{where}: {v!r} is not a number")


def decode_runs(obj: Any, where: str, limit: int) -> List[float]:
    """Version 2's list of values and runs, expanded; ``limit`` bounds the expansion (a hostile file)."""
    if not isinstance(obj, list):
        raise _Bad(f"{where} is not a list")
    out: List[float] = []
    for item in obj:
        if isinstance(item, list):
            if len(item) != 2 or not isinstance(item[1], int) or isinstance(item[1], bool) or item[1] < 1:
                raise _Bad(f"{where}: {item!r} is not a [value, count] run")
            if len(out) + item[1] > limit:
                raise _Bad(f"{where} holds more values than its {limit} steps")
            out.extend([_number(item[0], where)] * item[1])
        else:
            out.append(_number(item, where))
    if len(out) > limit:
        raise _Bad(f"{where} holds more values than its {limit} steps")
    return out


# --------------------------------------------------------------------------------------------------
# The file read back


@dataclass
class GroupRecord:
    name: str  # "pg1" or the group's own name
    index: int  # position in the optimizer's param_groups
    start: int  # the update from which this group has values
    lr: List[float]
    params: Dict[str, List[float]] = field(default_factory=dict)  # momentum / beta1 / beta2 when recorded


@dataclass
class OptimizerRecord:
    name: str  # "lr-SGD", "lr-Adam-1"
    cls: str  # "SGD"
    steps: int
    groups: List[GroupRecord]

    def series_name(self, group: GroupRecord) -> str:
        return series_name(self.name, group.name, group.index, len(self.groups))


@dataclass
class TrajectoryRecord:
    version: int
    optimizers: List[OptimizerRecord]
    findings: List[Dict[str, Any]]


MAX_CHARS = 1 << 30  # of JSON text (after gzip): a compressed bomb stays bounded
MAX_VALUES = 20_000_000  # per file, once expanded (10^6 steps x 8 groups is 8M): a hostile run stays bounded


def _opt_int(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


class _Bad(Exception):
    """What is wrong with a trajectory's content (read() names the file)."""


def _finding(f: Any) -> Dict[str, Any]:
    if not isinstance(f, dict) or not isinstance(f.get("rule"), str):
        raise _Bad("a finding is not an object with a 'rule'")
    out = {
        "rule": f["rule"],
        "message": f.get("message") if isinstance(f.get("message"), str) else str(f.get("message", "")),
        "step": f.get("step"),
        "group": f.get("group"),
        "optimizer": f.get("optimizer"),
    }
    if f.get("severity") in _LEVELS:  # a finding's own, milder than its rule's (absent: the rule's)
        out["severity"] = f["severity"]
    if not _opt_int(out["step"]):
        raise _Bad(f"a finding's step {out['step']!r} is not an integer")
    if not (_opt_int(out["group"]) or isinstance(out["group"], str)):
        raise _Bad(f"a finding's group {out['group']!r} is not an index or a name")
    if out["optimizer"] is not None and not isinstance(out["optimizer"], str):
        raise _Bad(f"a finding's optimizer {out['optimizer']!r} is not a name")
    return out


def read(data: Any, where: str = "trajectory") -> TrajectoryRecord:
    """Check and expand a trajectory (version 1 or 2) into records; :class:`TrajectoryError` says why not
    (always "WHERE is not a trajectory ...": one line, whatever the content)."""
    if isinstance(data, TrajectoryRecord):
        return data
    try:
        return _read(data)
    except _Bad as exc:
        raise TrajectoryError(f"{where} is not a trajectory: {exc}") from None


def _read(data: Any) -> TrajectoryRecord:
    if not isinstance(data, dict) or not isinstance(data.get("optimizers"), list):
        raise _Bad("no 'optimizers' list")
    version = data.get("version")
    if version not in READABLE or isinstance(version, bool):
        raise _Bad(f"version {version!r} (this lraudit reads versions {', '.join(map(str, READABLE))})")
    optimizers = []
    budget = [MAX_VALUES]
    for k, opt in enumerate(data["optimizers"]):
        if not isinstance(opt, dict) or not isinstance(opt.get("groups"), list):
            raise _Bad(f"optimizer {k + 1} has no 'groups' list")
        name = opt.get("name")
        name = name if isinstance(name, str) else f"optimizer {k + 1}"
        steps = opt.get("steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
            raise _Bad(f"{name} has steps {steps!r}")
        if steps is None and version != 1:
            raise _Bad(f"{name} has no 'steps'")
        if steps is not None and steps > MAX_VALUES:
            raise _Bad(f"{name} has {steps} steps: more than the {MAX_VALUES} values lraudit reads")
        groups: List[GroupRecord] = []
        for j, g in enumerate(opt["groups"]):
            here = f"{name} group {j + 1}"
            if not isinstance(g, dict):
                raise _Bad(f"{here} is not an object")
            gname = g.get("name")
            gname = gname if isinstance(gname, str) and gname else f"pg{j + 1}"
            start = g.get("start", 0)
            if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                raise _Bad(f"{here}: start {start!r} is not a step")
            params: Dict[str, List[float]] = {}
            if version == 1:
                if not isinstance(g.get("lr"), list):
                    raise _Bad(f"{here} has no 'lr' list")
                lr = [_number(v, here) for v in g["lr"]]
            else:
                same = g.get("same_as")
                if same is not None:
                    if not isinstance(same, int) or isinstance(same, bool) or not 0 <= same < j:
                        raise _Bad(f"{here}: same_as {same!r} is not an earlier group")
                    ref = groups[same]
                    lr, start = list(ref.lr), ref.start
                    params = {key: list(vals) for key, vals in ref.params.items()}
                elif "lr" not in g:
                    raise _Bad(f"{here} has no 'lr' list")
                else:
                    limit = max(steps - start, 0)  # type: ignore[operator]
                    lr = decode_runs(g["lr"], f"{here} 'lr'", limit)
                    for key in PARAM_KEYS:
                        if key in g:
                            params[key] = decode_runs(g[key], f"{here} '{key}'", limit)
            budget[0] -= len(lr) + sum(len(v) for v in params.values())
            if budget[0] < 0:
                raise _Bad(f"more than the {MAX_VALUES} values lraudit reads")
            groups.append(GroupRecord(gname, j, start, lr, params))
        if steps is None:
            steps = max((len(g.lr) + g.start for g in groups), default=0)
        if version == 1:  # groups added late hold fewer values: they started that many steps late
            for g in groups:
                g.start = max(steps - len(g.lr), 0)
        optimizers.append(OptimizerRecord(name, str(opt.get("class", "?")), steps, groups))
    findings = data.get("findings", [])
    if not isinstance(findings, list):
        raise _Bad("'findings' is not a list")
    return TrajectoryRecord(version, optimizers, [_finding(f) for f in findings])


def load(path: Union[str, "os.PathLike[str]"]) -> TrajectoryRecord:
    """Read and check a trajectory file; :class:`TrajectoryError` with a readable reason otherwise."""
    where = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(where).st_mode):  # a FIFO would block, /dev/zero never end
            raise TrajectoryError(f"{where} is not a trajectory: not a regular file")
        with open(where, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(where, "rt", encoding="utf-8") if gzipped else open(where, encoding="utf-8")) as fh:
            text = fh.read(MAX_CHARS + 1)
        if len(text) > MAX_CHARS:
            raise TrajectoryError(f"{where} is not a trajectory lraudit reads: more than {MAX_CHARS:,} characters")
        data = json.loads(text)
    except EOFError as exc:
        raise TrajectoryError(f"{where} is not a trajectory: a truncated gzip file ({exc})") from None
    except OSError as exc:
        if isinstance(exc, gzip.BadGzipFile):
            raise TrajectoryError(f"{where} is not a trajectory: {exc}") from None
        raise TrajectoryError(f"cannot read {where}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise TrajectoryError(f"{where} is not a trajectory: not JSON ({exc})") from None
    return read(data, where)


# --------------------------------------------------------------------------------------------------
# Writing


def _umask() -> int:
    try:  # Linux >= 4.7 shows it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Union[str, "os.PathLike[str]"], write: Callable[[Any], None], newline: Optional[str] = None,
                 compress: bool = False) -> str:
    """Call ``write(fh)`` on a temporary text file in ``path``'s folder, then rename it over ``path``.

    Readers never see a half-written file, and a failure leaves the previous file as it was. The file
    gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask), or keeps
    those of the file it replaces; never the 0600 of the temporary file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    target = os.path.join(folder, os.path.basename(path))

    def write_text(raw) -> None:
        if compress:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                    io.TextIOWrapper(gz, encoding="utf-8", newline=newline) as fh:
                write(fh)
        else:
            fh = io.TextIOWrapper(raw, encoding="utf-8", newline=newline)
            write(fh)
            fh.flush()
            fh.detach()  # the binary file stays open for replace_atomically to close

    replace_atomically(target, write_text, mode)
    return path


def write_json(data: dict, path: Union[str, "os.PathLike[str]"]) -> str:
    """Write a trajectory as compact JSON with :func:`atomic_write`; gzip-compressed when the name ends
    in ``.gz`` (a smooth schedule, one distinct value per step, takes about a third then)."""

    def write(fh) -> None:
        json.dump(data, fh, allow_nan=False, separators=(",", ":"))
        fh.write("\n")

    return atomic_write(path, write, compress=os.fspath(path).endswith(".gz"))


def optimizer_entry(name: str, cls: str, steps: int, groups: List[dict]) -> dict:
    """One optimizer of a version 2 file; ``groups`` as ``{"name", "start", "lr": runs, key: runs...}``,
    identical groups replaced by ``same_as``."""
    out = []
    for j, g in enumerate(groups):
        entry: Dict[str, Any] = {"name": g["name"]}
        for i in range(j):
            other = groups[i]
            if (g["lr"] and other["start"] == g["start"] and other["lr"] == g["lr"]
                    and all(other.get(k) == g.get(k) for k in PARAM_KEYS)):
                entry["same_as"] = i
                break
        else:
            if g["start"]:
                entry["start"] = g["start"]
            entry["lr"] = g["lr"]
            for key in PARAM_KEYS:
                if key in g:
                    entry[key] = g[key]
        out.append(entry)
    return {"name": name, "class": cls, "steps": steps, "groups": out}
