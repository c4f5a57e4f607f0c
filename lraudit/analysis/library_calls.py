"""Calls into code the interpreter does not run, a part of the Interpreter (mixed into it in
interpreter.py).

What torch, accelerate, Lightning and other known names do, from known.py's tables: optimizer,
scheduler, GradScaler and Accelerator constructions (one object per site and chain of calls),
``.step()`` (and ``scaler.step(opt)``), ``get_lr``, ``state_dict``/``load_state_dict``,
``add_param_group``, ``param_group.update(lr=...)``, checkpoint saves, and ``prepare``/``setup``
hand-offs; each records its Event. An unknown call hands on what it receives and returns an opaque
object with identity; a training helper that receives the optimizer is recorded as a place where it
may step. A name of another module of the project is followed first (definitions.py, calls.py).
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

import libcst as cst

from lraudit.analysis import known
from lraudit.analysis.nodes import _group_count
from lraudit.analysis.trace import Event, Loop
from lraudit.analysis.values import (
    NONE, UNKNOWN, AcceleratorObj, Opaque, OptimizerObj, ParamGroup, ParamGroups, ScalerObj, SchedulerObj,
    StateDict, Value, some, union,
)
from lraudit.analysis import values as V


# Methods of frameworks that hand back what they were given, wrapped, in order:
# ``accelerator.prepare(model, opt, loader, sched)``, ``fabric.setup(model, opt)``.
_POSITION_PRESERVING_METHODS = frozenset(
    {"prepare", "prepare_optimizer", "prepare_scheduler", "setup", "setup_optimizers"}
)
_TRAINING_CALL = re.compile(r"train", re.IGNORECASE)


def _callee_name(call: cst.Call) -> Optional[str]:
    if isinstance(call.func, cst.Name):
        return call.func.value
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


class LibraryCallsMixin:
    """The Interpreter's model of calls into torch, frameworks and unknown code; see the module docstring."""

    def _builtin_method(self, call, receiver: Value, method: str, positional, keywords, scope, container) -> Value:
        funcdef = scope.funcdef
        if method == "step":
            guarded = self._guarded_class(call, receiver, scope)
            if guarded is not None:  # inside ``if isinstance(x, C):`` (guards.py)
                self._emit(container, Event("step", call, receiver, call, funcdef, args=positional, keywords=keywords,
                                            guarded=guarded))
            else:
                self._emit(container, Event("step", call, receiver, call, funcdef, args=positional, keywords=keywords))
            if positional and not any(isinstance(o, (OptimizerObj, SchedulerObj)) for o in receiver.options()):
                # ``scaler.step(optimizer)`` and other wrappers that step the optimizer they are given.
                self._emit(container, Event("scaler_step", call, positional[0], call, funcdef, via=receiver))
            return UNKNOWN
        if method == "get_lr":
            self._emit(container, Event("get_lr", call, receiver, call, funcdef))
            return UNKNOWN
        if method == "state_dict":
            if any(isinstance(o, (OptimizerObj, SchedulerObj)) for o in receiver.options()):
                self._emit(container, Event("state_dict", call, receiver, call, funcdef))
            return StateDict(receiver)
        if method == "load_state_dict":
            self._emit(container, Event("load_state", call, receiver, call, funcdef, args=positional))
            return UNKNOWN
        if method == "add_param_group":
            in_loop = any(isinstance(a, Loop) for a in [container, *container.ancestors()])
            for option in some(receiver, OptimizerObj):
                option.added_sites.add(id(call))
                option.added_repeatedly = option.added_repeatedly or in_loop
            self._emit(container, Event("add_param_group", call, receiver, call, funcdef))
            return NONE
        if method == "update" and any(isinstance(o, ParamGroup) for o in receiver.options()):
            if "lr" in keywords or (positional and isinstance(positional[0], V.Container)
                                    and "lr" in (positional[0].keys or [])):
                self._lr_write(receiver, call, scope, container)
            return NONE
        if method in _POSITION_PRESERVING_METHODS and not any(
            isinstance(o, (OptimizerObj, SchedulerObj)) for o in receiver.options()
        ):
            self._handoff_args(positional, keywords, call, scope, container, "prepared")
            if len(positional) == 1:
                return positional[0]
            return V.Container(positional)
        if method in ("save", "save_state") and any(isinstance(o, AcceleratorObj) for o in receiver.options()):
            self._emit(container, Event("save", call, positional[0] if positional else UNKNOWN, call, funcdef,
                                        saver="accelerator." + method))
            return NONE
        if method in ("copy", "__getitem__") and any(isinstance(o, ParamGroups) for o in receiver.options()):
            return receiver
        return self._unknown_call(call, positional, keywords, scope, container)

    def _call_qualified(self, qualname: str, call, positional, keywords, scope, container,
                        origin: Optional[str] = None) -> Value:
        funcdef = scope.funcdef
        kind = known.scheduler_kind(qualname)
        if kind is not None:
            return self._construct_scheduler(qualname, kind, call, positional, keywords, scope, container)
        if known.is_optimizer_constructor(qualname):
            params = positional[0] if positional else keywords.get("params", UNKNOWN)
            groups = _group_count(call, params)
            obj = self._memoised(("opt", id(call)), lambda: OptimizerObj(call, qualname, groups))
            self._emit(container, Event("construct", call, obj, call, funcdef))
            return obj
        if qualname in known.GRAD_SCALERS:
            return self._memoised(("scaler", id(call)), lambda: ScalerObj(call))
        if qualname in known.ACCELERATORS:
            return self._memoised(("acc", id(call)), lambda: AcceleratorObj(call))
        if qualname in known.TORCH_SAVE:
            self._emit(container, Event("save", call, positional[0] if positional else keywords.get("obj", UNKNOWN),
                                        call, funcdef, saver=qualname))
            return NONE
        if qualname in known.POSITION_PRESERVING:
            self._handoff_args(positional, keywords, call, scope, container, "prepared")
            return positional[0] if len(positional) == 1 else V.Container(positional)
        value = self._project_value(qualname, origin, (positional, keywords))
        if value is not None:  # a function, class or table of another module of the project
            return self._call_value(call, value, positional, keywords, scope, container)
        return self._unknown_call(call, positional, keywords, scope, container)

    def _unknown_call(self, call, positional, keywords, scope, container) -> Value:
        """A call we cannot follow: what it receives is handed on, and what it returns is an opaque
        object with identity (``opt = make_optimizer(...)``, then ``StepLR(opt)`` and ``opt.step()``
        concern one object). A training helper of another module that receives the optimizer
        (``train_one_epoch(model, optimizer, ...)``) is recorded as a place the optimizer may step."""
        self._handoff_args(positional, keywords, call, scope, container)
        name = _callee_name(call)
        if name in known.CHECKPOINT_SAVER_NAMES and positional:
            self._emit(container, Event("save", call, positional[0], call, scope.funcdef, saver=name))
        if name and _TRAINING_CALL.search(name):
            arguments = list(positional) + list(keywords.values())
            if any(isinstance(o, (OptimizerObj, Opaque)) for v in arguments for o in v.options()):
                self._emit(container, Event("train_call", call, V.Container(arguments), call, scope.funcdef,
                                            name=name))
        return self._memoised(("result", id(call)), lambda: Opaque(f"{name or 'call'}()"))

    def _construct_scheduler(self, qualname, kind, call, positional, keywords, scope, container) -> Value:
        name, position = kind.optimizer_arg
        optimizer = keywords.get(name, positional[position] if len(positional) > position else UNKNOWN)
        children: Tuple[Value, ...] = ()
        if kind.composite:
            schedulers = keywords.get("schedulers")
            if schedulers is None:
                index = 1 if kind.cls == "SequentialLR" else 0
                schedulers = positional[index] if len(positional) > index else UNKNOWN
            if isinstance(schedulers, V.Container):
                children = schedulers.items
            if kind.cls == "ChainedScheduler" and optimizer is UNKNOWN:
                firsts = [c.optimizer for child in children for c in some(child, SchedulerObj)]
                optimizer = union(firsts) if firsts else UNKNOWN
        key = ("sched", id(call)) + tuple(id(o) for o in optimizer.options())
        obj = self._memoised(key, lambda: SchedulerObj(call, qualname, kind, optimizer, children))
        for child in children:
            for option in some(child, SchedulerObj):
                option.parent = obj
        self._emit(container, Event("construct", call, obj, call, scope.funcdef, args=positional, keywords=keywords,
                                    origins=self._origins(call, scope) if not self._dry else {}))
        return obj
