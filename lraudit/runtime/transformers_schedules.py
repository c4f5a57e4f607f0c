"""Where transformers' schedules end, read without importing transformers.

``get_linear_schedule_with_warmup``, ``get_cosine_schedule_with_warmup`` and their kin return a torch
``LambdaLR`` whose function is a ``functools.partial`` of a module-level function of
``transformers.optimization`` (older releases: a closure ``lr_lambda`` inside the ``get_*`` function);
``num_training_steps`` among its arguments is the step where the schedule ends. Past it the LR is what
the formula gives outside its range: 0 for the linear schedule (those updates do not train), the
cosine climbing back towards the initial LR. Sized in epochs but stepped per batch, the run spends
most of its steps there (LR009).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

_ZERO = "past it the LR is 0, so those updates do not train"
_CLIMBS = "past it the cosine climbs back towards the initial LR"

# the schedule's function -> (its last step relative to num_training_steps, what it gives past it)
_ENDS = {
    "_get_linear_schedule_with_warmup_lr_lambda": (0, _ZERO),
    "_get_cosine_schedule_with_warmup_lr_lambda": (0, _CLIMBS),
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda": (0, _ZERO),
    # counts the step after the current one: its cosine ends a step earlier
    "_get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda": (-1, _CLIMBS),
}
# the closures of older releases, by the function that built them
_CLOSURES = {
    "get_linear_schedule_with_warmup": "_get_linear_schedule_with_warmup_lr_lambda",
    "get_cosine_schedule_with_warmup": "_get_cosine_schedule_with_warmup_lr_lambda",
    "get_cosine_with_hard_restarts_schedule_with_warmup":
        "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda",
}
_NAMES = {
    "_get_linear_schedule_with_warmup_lr_lambda": "get_linear_schedule_with_warmup",
    "_get_cosine_schedule_with_warmup_lr_lambda": "get_cosine_schedule_with_warmup",
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda":
        "get_cosine_with_hard_restarts_schedule_with_warmup",
    "_get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda":
        "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
}


def _arguments(fn: Any) -> Optional[Tuple[str, dict]]:
    """``(schedule function name, its arguments)`` of a transformers schedule's LR function, else None."""
    func, kw = getattr(fn, "func", None), getattr(fn, "keywords", None)
    if func is not None and isinstance(kw, dict):  # functools.partial (transformers >= 4.28)
        if str(getattr(func, "__module__", "")).startswith("transformers."):
            return getattr(func, "__name__", ""), kw
        return None
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    if code is None or not cells or not str(getattr(fn, "__module__", "")).startswith("transformers."):
        return None
    outer = str(getattr(fn, "__qualname__", "")).split(".<locals>.")[0]
    name = _CLOSURES.get(outer)
    if name is None:
        return None
    try:
        kw = {var: cell.cell_contents for var, cell in zip(code.co_freevars, cells)}
    except ValueError:  # an empty cell
        return None
    return name, kw


def schedule_end(sched: Any) -> Optional[Tuple[int, str, str]]:
    """``(last step, what built it, what past it gives)`` of a transformers schedule (a LambdaLR), else
    None: any other LambdaLR has no end lraudit can know."""
    fns = getattr(sched, "lr_lambdas", None)
    if not isinstance(fns, list) or not fns or any(f is not fns[0] for f in fns):
        return None
    found = _arguments(fns[0])
    if found is None:
        return None
    name, kw = found
    entry = _ENDS.get(name)
    total = kw.get("num_training_steps")
    if entry is None or type(total) is not int or total <= kw.get("num_warmup_steps", 0):
        return None
    offset, past = entry
    if name == "_get_cosine_schedule_with_warmup_lr_lambda" and kw.get("num_cycles", 0.5) != 0.5:
        past = "past it the cosine goes on beyond the cycles it was given"
    return total + offset, f"{_NAMES[name]}(num_training_steps={total})", past
