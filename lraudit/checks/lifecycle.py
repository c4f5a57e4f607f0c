"""Lifecycle of schedulers and optimizers: LR005 scheduler-never-stepped, LR006 built-in-loop,
LR011 uncomposed-schedulers.

All three are about *which objects exist and who steps them*; all three are silent where the
object may be used by code the model cannot see (another module, a framework, a lambda).
"""
from __future__ import annotations

import re
from functools import partial
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.imports import dotted_name
from lraudit.analysis.known import SCHEDULER_FACTORIES
from lraudit.analysis.trace import Arm, Event, Frame, Loop, arms_not_shared, exclusive, innermost_loop
from lraudit.analysis.values import Obj, OptimizerObj, SchedulerObj
from lraudit.checks.base import Report, StaticRule, describe_scheduler
from lraudit.checks.uses import argument_call, binding, introspective, may_escape, uses

PLATEAU = "ReduceLROnPlateau"


def steps_touching(model: Model, obj: Obj) -> List[Event]:
    """Every ``.step()`` whose receiver may be ``obj`` (also among other options), and every
    ``x.step(obj)`` wrapper call: the generous reading, for rules that need *no* step at all."""
    return model.steps_touching(obj)


def optimizer_steps_of(model: Model, obj: Obj, root=None) -> List[Event]:
    return model.steps_of_optimizers([obj], root)


def _is_custom_subclass(scheduler: SchedulerObj) -> bool:
    """A same-module subclass of a torch scheduler (its behaviour, composition included, is its own)."""
    return scheduler.cls is None and scheduler.qualname not in SCHEDULER_FACTORIES


# ---------------------------------------------------------------------------------------------- LR005
class SchedulerNeverStepped(StaticRule):
    """LR005: a torch scheduler built, never stepped, and never handed to anything that could step it."""

    code = "LR005"

    def check(self, model: Model) -> Iterable[Report]:
        if not model.schedulers:
            return
        by_site: Dict[int, List[SchedulerObj]] = {}
        for scheduler in model.schedulers:
            by_site.setdefault(id(scheduler.site), []).append(scheduler)
        # The cheap tests first, in any order; source positions, the module's syntax index and the
        # order by line are paid for only when a scheduler is left unstepped (a module of a thousand
        # stepped schedulers never resolves a position).
        candidates = []
        for schedulers in by_site.values():
            site = schedulers[0].site
            if not any(e.node is site for s in schedulers for e in model.constructions(s)):
                continue
            if any(self._may_run(model, s) for s in schedulers):
                continue
            # The optimizer it drives does train in this module: the schedule was meant to apply.
            # (A training helper of another module given the optimizer counts: torchvision's
            # ``train_one_epoch(model, optimizer, ...)`` imported from its engine module.)
            if not any(model.steps_of_optimizers(model.optimizers_of(s), include_external=True) for s in schedulers):
                continue
            candidates.append(schedulers)
        if not candidates or introspective(model):
            return
        reported_names: Set[tuple] = set()
        for schedulers in sorted(candidates, key=lambda group: model.line(group[0].site)):
            site = schedulers[0].site
            bound = binding(model, site)
            if bound is None:
                bound = _prepared_binding(model, site)  # ``sched = accelerator.prepare(StepLR(...))``
            if bound is None or (bound.kind == "attribute" and not _private_to_plain_class(model, site, bound)):
                continue  # stored somewhere a framework or another module may read it
            if bound.kind != "discarded" and may_escape(model, bound.names, bound.scope,
                                                        safe_argument=partial(_prepared_stays_here, model, bound),
                                                        attributes=bound.kind == "attribute"):
                continue  # stepped, passed, returned, stored, captured ... somewhere we cannot follow
            if bound.kind != "discarded":
                key = (id(bound.scope), bound.kind, bound.names)
                if key in reported_names:
                    continue  # alternatives bound to one name (``if args.sched == ...``): one finding
                reported_names.add(key)
            name = describe_scheduler(schedulers[0])
            how = ("is built and discarded" if bound.kind == "discarded"
                   else f"`{bound.names[0]}` is never stepped nor handed on")
            optimizers = {id(o) for s in schedulers for o in model.optimizers_of(s)}
            manual = any(id(o) in optimizers for w in model.lr_writes() for o in w.target.options())
            effect = ("" if manual else " and the LR stays at its first value for the whole run")
            yield self.report(
                site,
                f"{name} {how}: its schedule never advances{effect}; call `.step()` where the schedule "
                "advances (per epoch or per optimizer step)",
            )

    @staticmethod
    def _may_run(model: Model, scheduler: SchedulerObj) -> bool:
        """Stepped, composed into another scheduler, or handed on (returned, passed, prepared by
        anything but accelerate, whose prepared scheduler is the same object, stepped by the user)."""
        if scheduler.parent is not None or steps_touching(model, scheduler):
            return True
        return any(e.target is scheduler and not _returned_to_caller(e) and not _accelerate_prepare(model, e.node)
                   for e in model.events_of_kind("handoff"))


_PREPARE = frozenset({"prepare", "prepare_scheduler"})


def _accelerate_prepare(model: Model, node: cst.CSTNode) -> bool:
    """``accelerator.prepare(...)`` / ``prepare_scheduler(...)`` in a module that imports accelerate:
    its ``AcceleratedScheduler`` steps the wrapped scheduler only when the user steps it (its
    ``get_lr`` forwards too), and the model keeps the scheduler's identity through it."""
    return (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _PREPARE
            and model.imports.mentions("accelerate"))


def _prepared_names(model: Model, call: cst.Call, argument: cst.CSTNode) -> Optional[Tuple[str, ...]]:
    """The names an accelerate ``prepare`` call binds ``argument``'s prepared value to: the call's own
    target for one argument, the target at the argument's position when the result is unpacked."""
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    if any(a.star for a in call.args) or argument not in positional:
        return None
    statement = model.parent(call)
    if not isinstance(statement, cst.Assign) or len(statement.targets) != 1:
        return None
    target = statement.targets[0].target
    if len(positional) == 1 and isinstance(target, cst.Name):
        return (target.value,)
    if isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) == len(positional):
        element = target.elements[positional.index(argument)].value
        return (element.value,) if isinstance(element, cst.Name) else None
    return None


def _prepared_binding(model: Model, site: cst.CSTNode):
    """The binding of a scheduler built inside ``accelerator.prepare(...)``."""
    arg = model.parent(site)
    call = model.parent(arg) if isinstance(arg, cst.Arg) else None
    if not isinstance(call, cst.Call) or not _accelerate_prepare(model, call):
        return None
    names = _prepared_names(model, call, site)
    bound = binding(model, call) if names is not None else None
    return bound if bound is not None and bound.kind == "local" and bound.names == names else None


def _prepared_stays_here(model: Model, bound, call: cst.Call) -> bool:
    """A scheduler handed to accelerate's ``prepare``: harmless when what it returns for it stays in
    this function (then its steps, if any, are the model's steps of the same object)."""
    if not _accelerate_prepare(model, call):
        return False
    for arg in call.args:
        if isinstance(arg.value, cst.Name) and arg.value.value in bound.names:
            names = _prepared_names(model, call, arg.value)
            if names is None:
                return False
            if set(names) - set(bound.names) and may_escape(model, tuple(set(names) - set(bound.names)), bound.scope):
                return False
            return True
    return False


def _returned_to_caller(event: Event) -> bool:
    """A ``return`` into a same-module caller the interpreter followed: the value stays tracked."""
    return event.data.get("how") == "returned" and any(
        isinstance(a, Frame) and a.funcdef is event.funcdef for a in event.ancestors()
    )



def _private_to_plain_class(model: Model, site: cst.CSTNode, bound) -> bool:
    """``self.scheduler = StepLR(...)`` in a method of a class with no base class (nothing inherited
    can read the attribute) that trains its optimizer itself: when the module never steps the
    attribute either, nobody does (another module stepping a trainer's scheduler for it is not a
    design we have seen)."""
    method = model.enclosing(site, cst.FunctionDef)
    classdef = model.enclosing(method, cst.ClassDef) if method is not None else None
    if classdef is None or model.enclosing(classdef, (cst.FunctionDef, cst.ClassDef)) is not None:
        return False
    if any(dotted_name(b.value) != "object" for b in classdef.bases) or classdef.keywords:
        return False
    assign = model.parent(site)
    targets = [t.target for t in getattr(assign, "targets", ())]
    if not targets or not all(isinstance(t, cst.Attribute) and dotted_name(t.value) == "self" for t in targets):
        return False
    # The instance is never handed to code we cannot see (``callback.on_epoch_end(self)``).
    for mention, use in uses(model, ("self",), classdef):
        if use == "argument" and not model.inlined(argument_call(model, mention)):
            return False
    # The class steps an optimizer in one of its own methods.
    methods = {id(m) for m in getattr(classdef.body, "body", ()) if isinstance(m, cst.FunctionDef)}
    return any(step.event.funcdef is not None and id(step.event.funcdef) in methods for step in model.optimizer_steps)


# ---------------------------------------------------------------------------------------------- LR006
# Loops over these are sweeps (a fresh optimizer per fold, trial, config, task ...), not training loops.
_SWEEP_WORDS = frozenset(
    """fold folds kfold split splits config configs cfg cfgs conf confs trial trials seed seeds run runs
    repeat repeats repetition repetitions experiment experiments exp exps experience experiences model
    models net nets network networks arch archs architecture architectures lr lrs hparam hparams
    hyperparam hyperparams hyperparameter hyperparameters grid setting settings task tasks stage stages
    phase phases round rounds cycle cycles restart restarts client clients ensemble member members agent
    agents generation generations candidate candidates domain domains language languages
    layer layers level levels resolution resolutions scale scales width widths depth depths combination
    combinations combo combos optimizer optimizers optim optims method methods variant variants wd wds
    sweep sweeps search""".split()
)
# ...unless the loop also names itself a training loop (``range(self.stage_2_epochs)``).
_TRAINING_LOOP_WORDS = frozenset(
    "epoch epochs ep eps iter iters iteration iterations step steps batch batches loader dataloader".split()
)
_ITERATION_HELPERS = frozenset({"range", "enumerate", "zip", "len", "list", "tuple", "reversed", "sorted", "iter",
                                "tqdm", "trange", "product", "items", "keys", "values"})


def _words(name: str) -> Set[str]:
    return {w.lower() for w in re.split(r"[^A-Za-z0-9]+", name) if w}


def is_sweep_loop(loop: Loop) -> bool:
    """A loop over folds, trials, configs, models, learning rates ...: rebuilding per iteration is
    how such loops work. Read from the loop's targets and from the last part of every name the
    iterated expression mentions (``range(args.n_folds)``, ``kf.split(X)``), never from the objects
    those names hang on (``range(cfg.epochs)`` is an epoch loop)."""
    words: Set[str] = set()
    for target in loop.targets:
        words |= _words(target.rsplit(".", 1)[-1])
    node = loop.node
    iterated = node.iter if isinstance(node, cst.For) else node.test
    for name in _names_in(iterated):
        last = name.rsplit(".", 1)[-1]
        if last not in _ITERATION_HELPERS:
            words |= _words(last)
    return bool(words & _SWEEP_WORDS) and not words & _TRAINING_LOOP_WORDS


def _derived(source: str, assigned: Set[str]) -> bool:
    """``source`` (``model.parameters``) depends on a name in ``assigned`` (``model``,
    ``model.fc``)."""
    base = source.rsplit(".", 1)[0] if "." in source else source
    for name in assigned:
        if source == name or source.startswith(name + ".") or name == base:
            return True
        if base not in ("self", "cls") and name.startswith(base + "."):
            return True
    return False


def _argument_expression(call: cst.Call, keyword: str, position: int) -> Optional[cst.BaseExpression]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    positional = []
    for arg in call.args:
        if arg.keyword is not None:
            continue
        if arg.star:
            return None
        positional.append(arg.value)
    return positional[position] if position < len(positional) else None


def _names_in(node: cst.CSTNode) -> Set[str]:
    found: Set[str] = set()

    class _Names(cst.CSTVisitor):
        def visit_Attribute(self, n: cst.Attribute) -> bool:
            name = dotted_name(n)
            if name:
                found.add(name)
                return False
            return True

        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

        def visit_Arg(self, n: cst.Arg) -> bool:
            n.value.visit(self)
            return False

    node.visit(_Names())
    return found


def _frame_argument_names(frame: Frame, param: str) -> Optional[Set[str]]:
    """Names mentioned by the argument a frame's call binds to parameter ``param``; None if unknown."""
    params = list(frame.funcdef.params.posonly_params) + list(frame.funcdef.params.params)
    names = [p.name.value for p in params]
    call = frame.call
    if names and names[0] in ("self", "cls"):
        if param == names[0]:
            return {"self"} if isinstance(call.func, cst.Attribute) and dotted_name(call.func.value) == "self" \
                else (_names_in(call.func.value) if isinstance(call.func, cst.Attribute) else None)
        names = names[1:]
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == param:
            return _names_in(arg.value)
        if arg.star:
            return None
    if param in names:
        index = names.index(param)
        positional = [a for a in call.args if a.keyword is None]
        if index < len(positional):
            return _names_in(positional[index].value)
        return set()  # the parameter's default: nothing per iteration
    return None


def _fresh_per_iteration(model: Model, event: Event, loop: Loop, sources: Set[str]) -> bool:
    """Whether what the construction is built on (``sources``) is itself rebuilt inside ``loop``: a
    new model or new parameters each iteration make a new optimizer the right thing."""
    for ancestor in event.ancestors():
        if ancestor is loop:
            return _derived_any(sources, model.assigned_names(loop.node))
        if isinstance(ancestor, Loop):
            if _derived_any(sources, set(ancestor.targets)):
                return True
        if isinstance(ancestor, Frame):
            funcdef = ancestor.funcdef
            if _derived_any(sources, model.assigned_names(funcdef.body)):
                return True
            params = {p.name.value for p in _all_params(funcdef)}
            mapped: Set[str] = set()
            for source in sources:
                head, _, rest = source.partition(".")
                if head not in params:
                    mapped.add(source)
                    continue
                names = _frame_argument_names(ancestor, head)
                if names is None:
                    return True  # cannot follow the argument: assume it may be fresh
                mapped.update(f"{n}.{rest}" if rest else n for n in names)
            sources = mapped
    return True  # the loop is not an ancestor: nothing to say


def _derived_any(sources: Set[str], assigned: Set[str]) -> bool:
    return any(_derived(s, assigned) for s in sources)


def _all_params(funcdef: cst.FunctionDef):
    params = funcdef.params
    return list(params.posonly_params) + list(params.params) + list(params.kwonly_params)


class BuiltInLoop(StaticRule):
    """LR006: an optimizer or torch scheduler constructed inside the loop that steps it."""

    code = "LR006"

    def check(self, model: Model) -> Iterable[Report]:
        seen: Set[int] = set()
        for event in model.events:
            if event.kind != "construct" or id(event.node) in seen:
                continue
            obj = event.target
            if isinstance(obj, OptimizerObj):
                steps = optimizer_steps_of(model, obj, event.root)
                expression = _argument_expression(event.call, "params", 0)
                what = "optimizer"
            elif isinstance(obj, SchedulerObj):
                steps = model.steps_of_scheduler(obj, event.root)
                name, position = obj.kind.optimizer_arg
                expression = _argument_expression(event.call, name, position)
                what = "scheduler"
            else:
                continue
            loop = _common_loop(event, steps)
            if loop is None or expression is None:
                continue
            if any(isinstance(a, Arm) and _changes_per_iteration(model, a, loop) for a in _between(event, loop)):
                continue  # built under a condition: once, lazily, at a restart ...
            if is_sweep_loop(loop) or any(isinstance(a, Loop) and is_sweep_loop(a) for a in _between(event, loop)):
                continue
            if _fresh_per_iteration(model, event, loop, _names_in(expression)):
                continue
            if "requires_grad" in model.text(expression):
                continue  # the trainable set is chosen anew (progressive unfreezing)
            if isinstance(obj, OptimizerObj) and _stateless_sgd(obj, event.call):
                continue  # plain SGD keeps no state: a new one each iteration changes nothing
            if isinstance(obj, SchedulerObj) and any(
                c.root is event.root and any(a is loop for a in c.ancestors())
                for o in model.optimizers_of(obj) for c in model.constructions(o)
            ):
                continue  # its optimizer is rebuilt in the loop too: that construction is the finding
            seen.add(id(event.node))
            if what == "optimizer":
                consequence = "starts without its momentum or adaptive moments"
            else:
                consequence = "restarts the schedule from its first value"
            yield self.report(
                event.node,
                f"{describe_scheduler(obj) if what == 'scheduler' else what} built inside the loop that steps it "
                f"(`{_loop_header(model, loop)}`): every iteration a new {what} {consequence}; build it once "
                "before the loop",
            )


def _stateless_sgd(optimizer: OptimizerObj, call) -> bool:
    """``torch.optim.SGD`` without momentum (the default): it has no state to lose."""
    if optimizer.qualname != "torch.optim.SGD" or call is None:
        return False
    positional = [a for a in call.args if a.keyword is None and not a.star]
    momentum = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "momentum"),
                    positional[2].value if len(positional) > 2 else None)
    return momentum is None or (isinstance(momentum, (cst.Integer, cst.Float)) and float(momentum.value) == 0)


def _changes_per_iteration(model: Model, arm: Arm, loop: Loop) -> bool:
    """A condition that may hold on some iterations only (``if epoch == k``, ``if optimizer is None``,
    ``if acc > best``, an ``except`` arm); not a setting fixed for the run (``if args.opt == "sgd"``)."""
    if arm.condition is None or model.iteration_dependent(arm):
        return True
    return _derived_any(set(arm.names), model.assigned_names(loop.node))


def _common_loop(event: Event, steps: List[Event]) -> Optional[Loop]:
    """The innermost loop that encloses the construction and one of the steps."""
    loops = event.loops()  # innermost first
    best: Optional[int] = None
    for step in steps:
        step_loops = {id(l) for l in step.loops()}
        for index, loop in enumerate(loops):
            if id(loop) in step_loops:
                best = index if best is None else min(best, index)
                break
    return loops[best] if best is not None else None


def _between(event: Event, loop: Loop) -> List:
    """Containers between an event and one of its ancestors (exclusive)."""
    found = []
    for ancestor in event.ancestors():
        if ancestor is loop:
            break
        found.append(ancestor)
    return found


def _loop_header(model: Model, loop: Loop) -> str:
    node = loop.node
    if isinstance(node, cst.For):
        return f"for {model.text(node.target)} in {loop.iter_text}"
    return f"while {loop.iter_text}"


# ---------------------------------------------------------------------------------------------- LR011
class UncomposedSchedulers(StaticRule):
    """LR011: two torch schedulers on one optimizer, both stepped in one loop, not composed."""

    code = "LR011"

    def check(self, model: Model) -> Iterable[Report]:
        reported: Set[int] = set()
        for parent, child in self._composed_and_stepped(model):
            step = model.steps_of_scheduler(child)[0]
            if id(step.node) in reported:
                continue
            reported.add(id(step.node))
            yield self.report(
                step.node,
                f"{describe_scheduler(child)} is composed in {describe_scheduler(parent)} (line {model.line(parent.site)}), "
                "which steps it, and is also stepped here: it advances twice per step; step only the "
                f"{describe_scheduler(parent)}",
            )
        def settled(first: SchedulerObj, second: SchedulerObj) -> bool:
            return id(max((first, second), key=lambda s: model.line(s.site)).site) in reported

        for first, second in self._pairs(model, settled):
            later = max((first, second), key=lambda s: model.line(s.site))
            earlier = first if later is second else second
            if id(later.site) in reported:
                continue
            reported.add(id(later.site))
            yield self.report(
                later.site,
                f"{describe_scheduler(later)} and {describe_scheduler(earlier)} (line "
                f"{model.line(earlier.site)}) both step the same optimizer independently: each rewrites or "
                "compounds the other's LR; compose them with SequentialLR (one after the other) or "
                "ChainedScheduler (together)",
            )

    def _composed_and_stepped(self, model: Model) -> Iterable[Tuple[SchedulerObj, SchedulerObj]]:
        """(composite, child) where the child of a SequentialLR/ChainedScheduler is also stepped
        directly in the loop that steps the composite."""
        for parent in model.schedulers:
            if not parent.kind.composite:
                continue
            for child in parent.children:
                for option in child.options():
                    if isinstance(option, SchedulerObj) and option.parent is parent \
                            and self._stepped_together(model, parent, option):
                        yield parent, option

    def _pairs(self, model: Model, settled: Callable[[SchedulerObj, SchedulerObj], bool] = lambda a, b: False
               ) -> Iterable[Tuple[SchedulerObj, SchedulerObj]]:
        """Pairs of schedulers of one optimizer stepped together, in candidate order. Only schedulers
        stepped in one entry point's trace can pair, so partners come from per-entry-point groups (a
        unittest module of a hundred tests, each with its own scheduler on a shared optimizer, pairs
        nothing instead of comparing every test with every other); a pair whose finding is already
        ``settled`` is not examined again."""
        optimizers: Dict[int, Obj] = {}
        for scheduler in model.schedulers:
            for optimizer in model.optimizers_of(scheduler):
                optimizers[id(optimizer)] = optimizer
        for optimizer in optimizers.values():
            candidates = [
                s for s in model.schedulers_driving(optimizer)
                if s.parent is None and s.cls != PLATEAU and not s.kind.composite and not _is_custom_subclass(s)
            ]
            rank = {id(s): i for i, s in enumerate(candidates)}
            per_root: Dict[int, List[SchedulerObj]] = {}
            for scheduler in candidates:
                for root in model.roots_stepping(scheduler):
                    per_root.setdefault(id(root), []).append(scheduler)
            for first in candidates:
                partners: Dict[int, SchedulerObj] = {}
                for root in model.roots_stepping(first):
                    for other in per_root[id(root)]:
                        if rank[id(other)] > rank[id(first)]:
                            partners[id(other)] = other
                model.spend(len(partners))
                for second in sorted(partners.values(), key=lambda s: rank[id(s)]):
                    if settled(first, second) or first.site is second.site or _nested(model, first, second):
                        continue
                    if self._stepped_together(model, first, second):
                        yield first, second

    @staticmethod
    def _stepped_together(model: Model, first: SchedulerObj, second: SchedulerObj) -> bool:
        roots_b = {id(r) for r in model.roots_stepping(second)}
        for root in model.roots_stepping(first):
            if id(root) not in roots_b:
                continue
            steps_a = model.steps_of_scheduler(first, root)
            steps_b = model.steps_of_scheduler(second, root)
            model.spend(len(steps_a) * len(steps_b))
            constructions = [(a, b) for a in model.constructions(first) for b in model.constructions(second)
                             if a.root is b.root]
            if constructions and all(exclusive(a, b) for a, b in constructions):
                continue  # alternatives (``if args.sched == ...: A else: B``)
            for a in steps_a:
                for b in steps_b:
                    # One ``.step()`` of a name bound to either (``if args.sched == ...``) steps only one.
                    if a is b or exclusive(a, b) or _sequenced(model, a, b):
                        continue
                    if _built_for_some_iterations(model, first, b) or _built_for_some_iterations(model, second, a):
                        continue
                    loop_a, loop_b = innermost_loop(a), innermost_loop(b)
                    if loop_a is None or loop_b is None:
                        continue
                    common = {id(l) for l in a.loops()} & {id(l) for l in b.loops()}
                    if not common:
                        continue  # consecutive loops: one phase after the other
                    innermost_common = next(l for l in a.loops() if id(l) in common)
                    if innermost_common is loop_a or innermost_common is loop_b:
                        return True
        return False


def _built_for_some_iterations(model: Model, scheduler: SchedulerObj, other_step: Event) -> bool:
    """A scheduler built anew inside the loop that steps the other one, under a guard that changes per
    iteration (torchvision's detection warm-up: ``if epoch == 0: LinearLR(...)`` inside
    ``train_one_epoch``): a phase of those iterations, not a second schedule running alongside."""
    for construction in model.constructions(scheduler):
        loops = {id(loop) for loop in other_step.loops()}
        if any(id(loop) in loops for loop in construction.loops()) and model.iteration_guards(construction, other_step):
            return True
    return False


def _sequenced(model: Model, a: Event, b: Event) -> bool:
    """The two steps may take turns: a guard that changes per iteration (``if epoch < warmup:``), a
    guard on each of them (alternatives or phases), or a guard we cannot read (an ``except`` arm)."""
    own_a, own_b = arms_not_shared(a, b), arms_not_shared(b, a)
    if own_a and own_b:
        return True
    return any(arm.condition is None or model.iteration_dependent(arm) for arm in own_a + own_b)


def _nested(model: Model, first: SchedulerObj, second: SchedulerObj) -> bool:
    """One scheduler is an argument of the other's construction (``after_scheduler=cosine``)."""
    for outer, inner in ((first, second), (second, first)):
        for event in model.constructions(outer):
            values = list(event.data.get("args") or ()) + list((event.data.get("keywords") or {}).values())
            if any(o is inner for v in values for o in _reach(v)):
                return True
    return False


def _reach(value, depth: int = 0):
    from lraudit.analysis.values import Container

    for option in value.options():
        yield option
        if isinstance(option, Container) and depth < 3:
            for item in option.items:
                yield from _reach(item, depth + 1)
