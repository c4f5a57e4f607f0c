"""Order of scheduler and optimizer steps: LR001 scheduler-before-optimizer, LR013 step-count-mismatch.

Both compare, within one entry point's trace, the steps of a torch scheduler with the steps of the
optimizer(s) it drives. LR013 is the more specific story of a scheduler stepped before its optimizer
under gradient accumulation, so LR001 stays quiet where LR013 applies.
"""
from __future__ import annotations

from itertools import combinations
from typing import Iterable, List, Optional

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.trace import Context, Event, arms_not_shared, exclusive, innermost_loop, nearest_arm
from lraudit.checks.base import Report, StaticRule, describe_scheduler, receiver_text
from lraudit.checks.edits import move_step_after


def scheduler_step_pairs(model: Model, include_external: bool = False):
    """(scheduler, its step events, the steps of the optimizers it drives) per entry point;
    ``include_external``: also calls of other modules' training helpers given the optimizer."""
    # Per scheduler, only the entry points that step it (a module of many entry points, each with
    # its own scheduler, stays linear); yielded in (entry point, scheduler) order all the same.
    root_rank = {id(root): i for i, root in enumerate(model.roots)}
    work = []
    for rank, scheduler in enumerate(model.schedulers):
        if scheduler.parent is not None:  # composed: stepped through SequentialLR/ChainedScheduler
            continue
        if scheduler.cls == "ReduceLROnPlateau":
            # Its step consumes a metric, not a position in a schedule: stepping it on the
            # validation result before training skips nothing (and torch does not warn).
            continue
        for root in model.roots_stepping(scheduler):
            work.append((root_rank[id(root)], rank, root, scheduler))
    for _, _, root, scheduler in sorted(work, key=lambda item: item[:2]):
        sched_steps = model.steps_of_scheduler(scheduler, root)
        opt_steps = model.steps_of_optimizers(model.optimizers_of(scheduler), root, include_external)
        if opt_steps:
            yield scheduler, sched_steps, opt_steps


def accumulation_mismatch(model: Model, step: Event, opt_steps: List[Event]) -> Optional[Event]:
    """The optimizer step that runs only under an accumulation condition of the loop in which the
    scheduler ``step`` runs on every iteration; None when there is no such mismatch."""
    if model.in_accumulate_context(step):
        return None
    loop = innermost_loop(step)
    if loop is None:
        return None
    # The scheduler step must run on every iteration: no condition of its own inside the loop that
    # changes per iteration (``if i % log == 0``).
    if any(model.iteration_dependent(a) and any(x is loop for x in a.ancestors()) for a in step.arms()):
        return None
    # Optimizer steps of the same loop (not of a nested one: a batch loop inside the scheduler's
    # epoch loop runs its accumulation to completion before the scheduler steps).
    first_guarded = None
    for opt_step in opt_steps:  # stops at the first unguarded one: linear in the usual case
        model.spend(1)
        if innermost_loop(opt_step) is not loop or exclusive(opt_step, step):
            continue
        unshared = arms_not_shared(opt_step, step)
        if not any(model.accumulation_guard(a) for a in unshared):
            return None  # an optimizer step every iteration: no accumulation here
        first_guarded = first_guarded or opt_step
    return first_guarded


def duplicate_step(model: Model, step: Event, sched_steps: List[Event], opt_steps: List[Event]) -> Optional[Event]:
    """Another step of the same scheduler in the same iteration of the loop that steps it (a
    duplicated ``scheduler.step()``), when both run on every pass together and the optimizer steps at
    most once per iteration of that loop; None otherwise. ``step(epoch)`` sets a position and is not
    counted."""
    loop = innermost_loop(step)
    if loop is None or _has_arguments(step):
        return None
    # Guarded by exactly the same arms (so never exclusive): the same nearest arm, a cached lookup
    # instead of comparing the arm sets of every pair (hundreds of ``elif`` arms deep).
    arm = nearest_arm(step)
    twins = [s for s in sched_steps if s is not step and s.node is not step.node and nearest_arm(s) is arm
             and innermost_loop(s) is loop and not _has_arguments(s)]
    if not twins:
        return None
    per_iteration = [o for o in opt_steps if innermost_loop(o) is loop and not exclusive(o, step)]
    if any(a.node is not b.node and not exclusive(a, b) for a, b in combinations(per_iteration, 2)):
        return None  # two optimizer steps per iteration (two losses): two scheduler steps may match them
    return twins[0]


def _has_arguments(event: Event) -> bool:
    return isinstance(event.call, cst.Call) and bool(event.call.args)


def runs_before_first_optimizer_step(model: Model, step: Event, opt_steps: List[Event]) -> bool:
    """True when the scheduler ``step`` certainly can run before every optimizer step of the pass."""
    # ``opt_steps`` are in execution order: the first one that can run with ``step`` decides.
    first = next((o for o in opt_steps if not exclusive(o, step)), None)
    if first is None:
        return False
    if first.order < step.order:
        # An earlier optimizer step: it runs first (no bug), or it may not run on the first pass
        # (accumulation, a warm-up guard): then the order is unknown and we stay silent.
        return False
    return not model.iteration_guards(step, first)


def _warnings_silenced(event: Event) -> bool:
    """Inside ``with warnings.catch_warnings():`` (ultralytics steps its scheduler first on purpose and
    silences "Detected lr_scheduler.step() before optimizer.step()")."""
    return any(isinstance(a, Context) and any("catch_warnings" in text for text in a.item_texts)
               for a in event.ancestors())


def _step_text(model: Model, event: Event) -> str:
    return model.text(event.node).strip()


class SchedulerBeforeOptimizer(StaticRule):
    """LR001: ``sched.step()`` can run before the first ``opt.step()`` of the optimizer it drives."""

    code = "LR001"

    def check(self, model: Model) -> Iterable[Report]:
        for scheduler, sched_steps, opt_steps in scheduler_step_pairs(model, include_external=True):
            for step in sched_steps:
                if not runs_before_first_optimizer_step(model, step, opt_steps):
                    continue
                if _warnings_silenced(step):
                    continue  # the author silenced torch's own warning for this: a deliberate order
                if accumulation_mismatch(model, step, opt_steps) is not None:
                    continue  # LR013 tells the real story of this statement
                if duplicate_step(model, step, sched_steps, opt_steps) is not None:
                    continue  # stepped twice per iteration: LR013 (its fix would leave both steps)
                first = next(o for o in opt_steps if not exclusive(o, step))
                if first.kind == "train_call":
                    where = (f"`{first.data['name']}(...)` (line {model.line(first.node)}), which is given "
                             "the optimizer to train with")
                else:
                    where = f"the first `{_step_text(model, first)}` (line {model.line(first.node)})"
                yield self.report(
                    step.node,
                    f"`{receiver_text(model, step.call)}.step()` runs before {where}: "
                    f"{describe_scheduler(scheduler)} skips the first value of its schedule; "
                    "step the scheduler after the optimizer",
                    fix=move_step_after(model, step, first, receiver_text(model, step.call)),
                )


class StepCountMismatch(StaticRule):
    """LR013: the scheduler steps every micro-batch while its optimizer steps every k."""

    code = "LR013"

    def check(self, model: Model) -> Iterable[Report]:
        yield from self._duplicates(model)
        for scheduler, sched_steps, opt_steps in scheduler_step_pairs(model):
            for step in sched_steps:
                guarded = accumulation_mismatch(model, step, opt_steps)
                if guarded is None:
                    continue
                guard = next(a for a in arms_not_shared(guarded, step) if model.accumulation_guard(a))
                yield self.report(
                    step.node,
                    f"`{receiver_text(model, step.call)}.step()` runs on every iteration while "
                    f"`{_step_text(model, guarded)}` (line {model.line(guarded.node)}) runs only when "
                    f"`{guard.condition_text}`: {describe_scheduler(scheduler)} advances once per "
                    "micro-batch; step it under the same condition as the optimizer",
                )

    def _duplicates(self, model: Model) -> Iterable[Report]:
        """A scheduler stepped twice in one iteration of the loop that steps it: reported once, at the
        later step."""
        for root in model.roots:
            for scheduler in model.schedulers:
                if scheduler.parent is not None or scheduler.cls == "ReduceLROnPlateau":
                    continue
                sched_steps = model.steps_of_scheduler(scheduler, root)
                if len(sched_steps) < 2:
                    continue
                opt_steps = model.steps_of_optimizers(model.optimizers_of(scheduler), root)
                for step in sched_steps:
                    twin = duplicate_step(model, step, sched_steps, opt_steps)
                    if twin is None or twin.order > step.order:
                        continue  # reported at the later of the two
                    loop = innermost_loop(step)
                    yield self.report(
                        step.node,
                        f"`{receiver_text(model, step.call)}.step()` runs a second time in each iteration of the "
                        f"loop over `{_short(loop.iter_text)}` (also line {model.line(twin.node)}): "
                        f"{describe_scheduler(scheduler)} advances twice per iteration, so its schedule runs "
                        "twice as fast; step it once",
                    )


def _short(text: str, limit: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
