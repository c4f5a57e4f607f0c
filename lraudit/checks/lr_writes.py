"""Manual LR writes: LR002 manual-lr-write-with-scheduler, LR004 partial-param-group-update."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.nodes import GroupSlice
from lraudit.analysis.trace import Arm, Event, Frame, Loop, arms_not_shared, exclusive
from lraudit.analysis.values import ALL, OptimizerObj, SchedulerObj, known_options
from lraudit.analysis.known import LR_SCHEDULER
from lraudit.catalog import INFO, LR002_WARMUP_LEVEL, lr002_warmup_consequence
from lraudit.checks.base import Report, StaticRule, describe_scheduler

_ITERATION_NAMES = ("step", "epoch", "iter", "idx", "it")


def _in_training_loop(event: Event) -> bool:
    """Inside a loop other than the loop over ``param_groups`` that performs the write."""
    return any(isinstance(a, Loop) and not a.over_param_groups for a in event.ancestors())


def _scheduler_presence(arm: Arm) -> Optional[bool]:
    """For an arm whose condition names a scheduler: True when the arm runs only while the scheduler
    exists (``if scheduler:``, ``if scheduler is not None:``), False when only while it does not
    (``if scheduler is None:``, ``if not scheduler:``), None for anything else (``args.sched == ...``:
    a choice between modes we cannot follow)."""
    condition = arm.condition
    polarity = arm.polarity
    while isinstance(condition, cst.UnaryOperation) and isinstance(condition.operator, cst.Not):
        condition, polarity = condition.expression, not polarity
    if isinstance(condition, (cst.Name, cst.Attribute)):
        return polarity
    if (isinstance(condition, cst.Comparison) and len(condition.comparisons) == 1
            and isinstance(condition.comparisons[0].comparator, cst.Name)
            and condition.comparisons[0].comparator.value == "None"):
        operator = condition.comparisons[0].operator
        if isinstance(operator, cst.IsNot):
            return polarity
        if isinstance(operator, cst.Is):
            return not polarity
    return None


def _mode_exclusive(model: Model, construction: Event, write: Event) -> bool:
    """The write and the construction sit under conditions on one setting (``if args.sched == ...``),
    or the write is guarded by a test of the scheduler itself (``if scheduler is None``): they are
    probably alternatives, and we cannot tell."""
    write_arms = arms_not_shared(write, construction)
    if any(_scheduler_presence(arm) is not True for arm in write_arms if "sched" in arm.condition_text.lower()):
        return True
    construction_names = {n for a in arms_not_shared(construction, write) for n in a.names}
    write_names = {n for a in write_arms for n in a.names}
    shared = {n for n in construction_names & write_names if not n.rsplit(".", 1)[-1].lower().startswith(_ITERATION_NAMES)}
    return bool(shared)


def write_follows_construction(model: Model, write: Event, scheduler: SchedulerObj) -> bool:
    """Whether the manual write can run after the scheduler was built (a write that only sets the
    initial LR before the scheduler exists is legitimate)."""
    constructions = model.constructions(scheduler)
    same_root = [c for c in constructions if c.root is write.root]
    if same_root:
        return any(
            c.order < write.order and not exclusive(c, write) and not _mode_exclusive(model, c, write)
            for c in same_root
        )
    # Built in another entry point (``__init__``, ``configure_optimizers``): a write repeated by a
    # training loop runs after it.
    return bool(constructions) and _in_training_loop(write) and not any(
        _scheduler_presence(a) is not True for a in write.arms() if "sched" in a.condition_text.lower()
    )


class ManualWriteWithScheduler(StaticRule):
    """LR002: a write to ``param_group['lr']`` of an optimizer that a torch scheduler also drives."""

    code = "LR002"

    def check(self, model: Model) -> Iterable[Report]:
        for write in model.lr_writes():
            for optimizer in known_options(write.target):
                if not model.is_optimizer(optimizer):
                    continue
                # ReduceLROnPlateau has no schedule to fight: it only scales whatever LR is there when
                # the metric stalls, so a manual warm-up or reset beside it is a deliberate design.
                conflicting = [s for s in model.schedulers_driving(optimizer)
                               if s.cls != "ReduceLROnPlateau" and write_follows_construction(model, write, s)]
                if conflicting:
                    scheduler = conflicting[0]
                    name = describe_scheduler(scheduler)
                    own = _schedulers_own_value(model, write, scheduler) if len(conflicting) == 1 else None
                    if own is not None:
                        formula, exact = own
                        if exact:
                            yield self.report(
                                write.node,
                                f"manual write to `param_group['lr']` while {name} (line "
                                f"{model.line(scheduler.site)}) drives this optimizer, but the value written is "
                                f"{name}'s own closed form (`{formula}`): the LR is right here; let the "
                                "scheduler write it (its next step recomputes the same value)",
                                severity=INFO,
                            )
                        else:
                            yield self.report(
                                write.node,
                                f"manual warm-up written over {name} (line {model.line(scheduler.site)}), "
                                f"ramping to the scheduler's own value (`{formula}`): "
                                + lr002_warmup_consequence(name),
                                severity=LR002_WARMUP_LEVEL,
                            )
                        break
                    kind = ("multiplies the written value from then on" if scheduler.kind.chainable
                            else "overwrites it at its next step")
                    yield self.report(
                        write.node,
                        f"manual write to `param_group['lr']` while {name} "
                        f"(line {model.line(scheduler.site)}) drives this optimizer: the scheduler {kind}; "
                        "express the manual part as a scheduler (SequentialLR, LambdaLR) instead",
                    )
                    break


def _lambda_text(model: Model, scheduler: SchedulerObj) -> Optional[str]:
    """The expression given as ``lr_lambda`` to a torch LambdaLR (``lf``, ``self.lf``)."""
    call = scheduler.site
    if scheduler.qualname != f"{LR_SCHEDULER}.LambdaLR" or not isinstance(call, cst.Call):
        return None
    positional = [a for a in call.args if a.keyword is None]
    arg = next((a for a in call.args if a.keyword is not None and a.keyword.value == "lr_lambda"), None)
    if arg is None and len(positional) > 1 and not any(a.star for a in call.args):
        arg = positional[1]
    if arg is None or not isinstance(arg.value, (cst.Name, cst.Attribute)):
        return None
    return model.text(arg.value)


def _schedulers_own_value(model: Model, write: Event, scheduler: SchedulerObj) -> Optional[Tuple[str, bool]]:
    """For a write over a LambdaLR of ``group['initial_lr'] * lf(...)`` (its closed form, with its own
    lambda): (that formula as written, whether it *is* the written value rather than a point a
    warm-up ramps to, as in ``np.interp(ni, xi, [0.0, x['initial_lr'] * lf(epoch)])``)."""
    lam = _lambda_text(model, scheduler)
    node = write.node
    value = node.value if isinstance(node, cst.Assign) else None
    if lam is None or value is None:
        return None
    found: List[cst.BinaryOperation] = []

    class _Products(cst.CSTVisitor):
        def visit_BinaryOperation(self, n: cst.BinaryOperation) -> None:
            if isinstance(n.operator, cst.Multiply) and _is_closed_form(model, n, lam):
                found.append(n)

    value.visit(_Products())
    if not found:
        return None
    product = found[0]
    inner = value
    while isinstance(inner, cst.Call) and model.text(inner.func) in ("float", "torch.tensor") and len(inner.args) == 1:
        inner = inner.args[0].value  # ``float(x['initial_lr'] * lf(epoch))`` is the same value
    return " ".join(model.text(product).split()), inner is product


def _is_closed_form(model: Model, product: cst.BinaryOperation, lam: str) -> bool:
    sides = (product.left, product.right)
    initial = any(isinstance(x, cst.Subscript) and len(x.slice) == 1 and isinstance(x.slice[0].slice, cst.Index)
                  and isinstance(x.slice[0].slice.value, cst.SimpleString)
                  and x.slice[0].slice.value.value.strip("'\"") == "initial_lr" for x in sides)
    calls = any(isinstance(x, cst.Call) and model.text(x.func) == lam for x in sides)
    return initial and calls


def _update_site(write: Event):
    """Writes that form one LR update: those of the same loop body or function body (branches and
    ``with`` blocks inside it included). ``param_groups[0]["lr"] = a; param_groups[1]["lr"] = b`` is
    one full update; a later ``param_groups[2]["lr"] = c`` in another loop is an update of its own."""
    for ancestor in write.ancestors():
        if isinstance(ancestor, Loop) and ancestor.over_param_groups:
            continue  # the loop over the groups is part of the update itself
        if isinstance(ancestor, (Loop, Frame)) or ancestor.parent is None:
            return ancestor
    return write.root


def _count_text(optimizer: OptimizerObj) -> str:
    return str(optimizer.groups) if optimizer.groups is not None else f"{optimizer.min_groups} or more"


def _received_optimizer(model: Model, write: Event) -> Optional[str]:
    """For ``optimizer.param_groups[0]["lr"] = x`` in a function that receives ``optimizer`` as a
    parameter (a ``set_lr(optimizer, lr)`` helper): the parameter's name; else None."""
    funcdef = write.funcdef
    node = write.node
    if funcdef is None or not isinstance(node, (cst.Assign, cst.AugAssign)):
        return None
    target = node.targets[0].target if isinstance(node, cst.Assign) and len(node.targets) == 1 else \
        getattr(node, "target", None)
    # target: <receiver>.param_groups[0]["lr"]
    if not isinstance(target, cst.Subscript) or not isinstance(target.value, cst.Subscript):
        return None
    groups = target.value.value
    if not isinstance(groups, cst.Attribute) or groups.attr.value != "param_groups":
        return None
    receiver = groups.value
    if not isinstance(receiver, cst.Name):
        return None
    params = list(funcdef.params.posonly_params) + list(funcdef.params.params) + list(funcdef.params.kwonly_params)
    names = [p.name.value for p in params]
    if receiver.value not in names or (names and names[0] in ("self", "cls") and receiver.value == names[0]):
        return None
    return receiver.value


class PartialParamGroupUpdate(StaticRule):
    """LR004: a manual LR update touches only some param groups of a multi-group optimizer."""

    code = "LR004"

    def check(self, model: Model) -> Iterable[Report]:
        yield from self._known_groups(model)
        yield from self._helpers(model)

    def _helpers(self, model: Model) -> Iterable[Report]:
        """A helper that receives any optimizer and writes only ``param_groups[0]["lr"]``: the optimizers
        it is given may have several groups, unless every one the module passes it has exactly one."""
        if not model.events_of_kind("construct"):
            # A module of helpers only: what its callers give them is seen where they call (the
            # project model follows the call and reports it there).
            return
        by_node: Dict[int, List[Event]] = {}
        for write in model.lr_writes():
            if _received_optimizer(model, write) is not None:
                by_node.setdefault(id(write.node), []).append(write)
        for events in by_node.values():
            write = events[0]
            if any(e.data.get("indices") != frozenset({0}) for e in events):
                continue
            # The helper's other writes (``param_groups[1]["lr"]``, a loop over every group).
            others = [e for e in model.lr_writes() if e.funcdef is write.funcdef and e.node is not write.node]
            if any(e.data.get("indices") != frozenset({0}) for e in others):
                continue
            targets = [o for e in events for o in known_options(e.target)]
            if targets and all(isinstance(o, OptimizerObj) and o.groups == 1 for o in targets):
                continue  # every optimizer the module gives it has one group
            if any(isinstance(o, OptimizerObj) and o.min_groups >= 2 for o in targets):
                continue  # reported with its optimizer's group count by the known-groups pass
            name = _received_optimizer(model, write)
            yield self.report(
                write.node,
                f"`{write.funcdef.name.value}` receives an optimizer (`{name}`) and writes only "
                f"`{name}.param_groups[0]['lr']`: an optimizer with several param groups (a backbone at a "
                "lower LR, a no-decay group) keeps its other groups at their old LR; update every group "
                f"(`for group in {name}.param_groups: ...`)",
            )

    def _known_groups(self, model: Model) -> Iterable[Report]:
        writes: Dict[Tuple[int, int], List[Event]] = {}
        optimizers: Dict[int, OptimizerObj] = {}
        for write in model.lr_writes():
            for optimizer in known_options(write.target):
                if isinstance(optimizer, OptimizerObj) and optimizer.min_groups >= 2:
                    key = (id(optimizer), id(_update_site(write)))
                    writes.setdefault(key, []).append(write)
                    optimizers[id(optimizer)] = optimizer
        reported = set()
        for (opt_id, _), events in writes.items():
            optimizer = optimizers[opt_id]
            indices = [e.data.get("indices") for e in events]
            if any(i is None or i == ALL for i in indices):
                continue  # an unknown index, or the function also updates every group
            # Groups 0..n-1 certainly exist (n exact, or a lower bound when groups were added to an
            # optimizer of unknown size): an update that misses one of them is partial. Negative
            # indices and open-ended slices depend on the exact count: unknown count, silent
            # (``[:1]`` or ``[0:2]`` do not: they cover the same groups whatever the count).
            exact = optimizer.groups
            count = exact or optimizer.min_groups
            covered = set()
            unsure = False
            for index in indices:
                if isinstance(index, GroupSlice):
                    if exact is not None:
                        covered.update(index.covered(exact))
                    elif index.upper is not None and index.upper >= 0 and (index.lower or 0) >= 0:
                        covered.update(range(index.lower or 0, index.upper))
                    else:
                        unsure = True
                else:
                    if exact is None and any(i < 0 for i in index):
                        unsure = True
                    covered.update(i % count if i < 0 else i for i in index)
            if unsure or covered >= set(range(count)):
                continue
            first = min(events, key=lambda e: e.order)
            if id(first.node) in reported:
                continue
            reported.add(id(first.node))
            yield self.report(
                first.node,
                f"this LR update touches only some of the {_count_text(optimizer)} param groups of the optimizer "
                f"(line {model.line(optimizer.site)}): the others keep their old LR; update every group "
                "(scaled per group if intended)",
            )
