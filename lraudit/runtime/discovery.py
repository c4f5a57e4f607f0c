"""Find the schedulers that already drive an optimizer, without scanning the heap.

``gc.get_referrers(optimizer)`` costs a walk over every tracked object (tens of milliseconds with a few
hundred thousand live tensors) and still misses schedulers: once something touched a scheduler's
``__dict__`` (``state_dict()``, ``load_state_dict()``, a resume), the referrer it returns is that dict,
not the scheduler. Instead, the audit looks where training code keeps its scheduler: the variables of
the frames that run the training (the code that entered the audit, or that stepped the optimizer), their
module globals, and what those hold a few attributes or items deep (``self.scheduler``,
``trainer.lr_scheduler``, ``{"scheduler": s}``), under a fixed budget of objects visited. A scheduler
found nowhere there is attached at its first step instead (only LR005 can need it earlier).
"""
from __future__ import annotations

import sys
import types
from typing import Any, Callable, Iterable, Iterator, List, Optional

MAX_FRAMES = 12  # user frames walked up from the entry point
MAX_DEPTH = 3  # attribute / item hops from a frame variable
MAX_NODES = 4000  # objects visited in all
MAX_ITEMS = 64  # items of one container looked at

_ATOMIC = (str, bytes, bytearray, int, float, complex, bool, type(None), range, slice)
_NEVER = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type,
          types.CodeType, types.FrameType)


def user_frames(skip_dirs: tuple, start: Optional[types.FrameType] = None) -> List[types.FrameType]:
    """The innermost frames outside ``skip_dirs`` (torch, lraudit), innermost first."""
    f = start if start is not None else sys._getframe(1)
    out: List[types.FrameType] = []
    while f is not None and len(out) < MAX_FRAMES:
        fn = f.f_code.co_filename
        if not fn.startswith(skip_dirs) and not fn.startswith("<frozen"):
            out.append(f)
        f = f.f_back
    return out


def _expand(obj: Any, skip: Callable[[Any], bool]) -> Iterator[Any]:
    if isinstance(obj, dict):
        for i, v in enumerate(obj.values()):
            if i >= MAX_ITEMS:
                return
            yield v
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            if i >= MAX_ITEMS:
                return
            yield v
    elif not skip(obj):
        d = getattr(obj, "__dict__", None)
        if isinstance(d, dict):
            for i, v in enumerate(d.values()):
                if i >= MAX_ITEMS:
                    return
                yield v


def find(roots: Iterable[Any], match: Callable[[Any], bool], skip: Callable[[Any], bool]) -> List[Any]:
    """Objects satisfying ``match`` reachable from ``roots`` within the budget, breadth first.

    ``skip(obj)``: objects whose attributes are not worth visiting (tensors, modules, optimizers).
    Matched objects are not expanded further.
    """
    seen = set()
    found: List[Any] = []
    level = []
    for r in roots:
        if id(r) not in seen:
            seen.add(id(r))
            level.append(r)
    level = level[:MAX_NODES]
    budget = MAX_NODES
    for depth in range(MAX_DEPTH + 1):
        nxt = []
        for obj in level:
            if isinstance(obj, _ATOMIC) or isinstance(obj, _NEVER):
                continue
            try:
                if match(obj):
                    found.append(obj)
                    continue
                if depth == MAX_DEPTH:
                    continue
                for child in _expand(obj, skip):
                    if budget <= 0:
                        return found
                    if isinstance(child, _ATOMIC) or id(child) in seen:
                        continue
                    seen.add(id(child))
                    budget -= 1
                    nxt.append(child)
            except Exception:  # an object whose attributes cannot be read: not ours to judge
                continue
        level = nxt
        if not level:
            break
    return found


def frame_roots(frames: List[types.FrameType]) -> List[Any]:
    """The variables of ``frames`` and, after them, the globals of their modules."""
    roots: List[Any] = []
    globs = []
    for f in frames:
        try:
            roots.extend(f.f_locals.values())
        except Exception:  # pragma: no cover - a frame being torn down
            continue
        g = f.f_globals
        if all(g is not x for x in globs):
            globs.append(g)
    for g in globs:
        roots.extend(v for k, v in g.items() if not k.startswith("__"))
    return roots
