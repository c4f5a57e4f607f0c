"""The rule catalogue: the single source of truth for every rule of both halves.

The README rule table, the pages under ``rules/``, SARIF rule metadata and ``lraudit explain`` are all
rendered from the entries below; a test fails when a rendered copy is stale. Codes never change
meaning and are never reused (DESIGN.md section 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

DOCS_BASE_URL = "https://github.com/lraudit/lraudit/blob/main/rules"

ERROR = "error"
WARNING = "warning"
INFO = "info"  # a finding's own level where the LR is right and only a warning is tripped

FIX_NONE = "none"
FIX_SAFE = "safe"
FIX_UNSAFE = "unsafe"


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    summary: str
    severity: str
    fix: str  # FIX_NONE, FIX_SAFE or FIX_UNSAFE: what `--fix` may do about it
    static: Optional[str]  # what the static half detects; None: runtime only
    runtime: Optional[str]  # what the runtime audit detects; None: static only
    what: str
    why: str
    example: str
    use_instead: str
    fix_safety: str
    references: Tuple[str, ...] = ()

    @property
    def help_uri(self) -> str:
        return f"{DOCS_BASE_URL}/{self.code}.md"

    @property
    def halves(self) -> str:
        return "/".join(h for h, on in (("static", self.static), ("runtime", self.runtime)) if on)


_TORCH_SCHED_DOCS = "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"


# LR002's warm-up variant, told by both halves (checks/lr_writes.py, runtime/checker.py): a manual warm-up
# whose writes end on the own value of a scheduler that recomputes every group's LR from its base values
# at each step (LambdaLR's closed form). The LR is right once the warm-up ends, hence the milder level.
LR002_WARMUP_LEVEL = WARNING


def lr002_warmup_consequence(scheduler: str) -> str:
    """Why a warm-up ramping to ``scheduler``'s own value is still worth fixing, though the LR is right."""
    return (f"{scheduler} recomputes the LR from its closed form at its next step, so nothing is compounded "
            "and the LR is right once the warm-up ends; only during it does this write decide. Consider a "
            "warm-up scheduler (LinearLR in SequentialLR) to keep one writer")


_RULES = (
    Rule(
        code="LR001",
        name="scheduler-before-optimizer",
        summary="`scheduler.step()` can run before the first `optimizer.step()` of the optimizer it drives",
        severity=ERROR,
        fix=FIX_UNSAFE,
        static="`sched.step()` can run before the first `opt.step()` of its optimizer in the training loop "
        "(through any depth of same-module helper calls)",
        runtime="a scheduler step observed before the first optimizer step (not one from a last_epoch set by "
        "hand, ultralytics' `last_epoch = start_epoch - 1`)",
        what="Finds a learning-rate scheduler stepped before the optimizer it drives has taken its first "
        "step: at the top of the epoch loop before the batch loop, before a `train_one_epoch(...)` "
        "helper that steps the optimizer, or before `optimizer.step()` in the same block.",
        why="Since PyTorch 1.1 the scheduler must be stepped *after* the optimizer. Stepping it first "
        "skips the first value of the schedule: warm-up starts one step late, a StepLR decays one epoch "
        "early, and PyTorch only prints a warning once. The run finishes with a schedule that is "
        "silently shifted.",
        example="for epoch in range(epochs):\n    scheduler.step()\n    train_one_epoch(model, optimizer, loader)",
        use_instead="for epoch in range(epochs):\n    train_one_epoch(model, optimizer, loader)\n    scheduler.step()",
        fix_safety="With `--unsafe-fixes`, the scheduler step (its own line, or an `if` guarding only it) is "
        "moved right after the statement of the same block that runs the optimizer step: the step itself, "
        "the batch loop around it, or the call of the helper that does it. No fix is offered when code in "
        "between mentions the LR (`lr`, `get_last_lr`, `param_groups`) or the scheduler, or may leave the "
        "block early (`continue`, `break`, `return`, `raise`). It is unsafe because code in between may "
        "still read the LR in ways lraudit cannot see.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR002",
        name="manual-lr-write-with-scheduler",
        summary="a write to `param_group['lr']` of an optimizer that a torch scheduler also drives",
        severity=ERROR,
        fix=FIX_NONE,
        static="a write to `param_group[\"lr\"]` of an optimizer that a torch scheduler also drives",
        runtime="LR changed between two optimizer steps by something other than a scheduler step; at severity "
        "warning for a manual warm-up: writes from before the scheduler's first step (or the first update) "
        "that stop on its own value (its current one, its next step's, or the one its step just set), when "
        "its steps recompute every group from its base LRs (LambdaLR, OneCycleLR, CyclicLR, "
        "CosineAnnealingWarmRestarts) and it alone writes from then on; not for writes handed back to the "
        "scheduler before each of its steps (pytorch_warmup's dampening), nor for one after its schedule "
        "ended that it never overwrites; and an LR written right before a LambdaLR or "
        "CosineAnnealingWarmRestarts was built, lost to the stale 'initial_lr' it takes its base from",
        what="Finds assignments to `param_group['lr']` (directly, in a loop over `optimizer.param_groups`, "
        "or in a same-module helper) on an optimizer that a `torch.optim.lr_scheduler` scheduler also "
        "drives, after that scheduler was built. A write of a LambdaLR's own closed form "
        "(`g['initial_lr'] * lf(epoch)` with its lambda `lf`) loses nothing, as LambdaLR recomputes from "
        "its closed form: reported at severity info when the value written is exactly that, warning for a "
        "warm-up ramping to it (`np.interp(ni, xi, [0.0, g['initial_lr'] * lf(epoch)])`).",
        why="Two writers fight over one value. Chainable schedulers (StepLR, ExponentialLR, "
        "CosineAnnealingLR, ReduceLROnPlateau, ...) multiply whatever is there, so the manual write is "
        "compounded forever; closed-form ones (LambdaLR, OneCycleLR, CyclicLR) overwrite it at their next "
        "step, so the manual value is lost. Either way one of the two silently loses.",
        example="scheduler = StepLR(optimizer, step_size=30)\nfor epoch in range(epochs):\n"
        "    for g in optimizer.param_groups:\n        g['lr'] = base_lr * warmup(epoch)\n"
        "    train(...)\n    scheduler.step()",
        use_instead="warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)\n"
        "scheduler = SequentialLR(optimizer, [warmup, StepLR(optimizer, 30)], milestones=[5])",
        fix_safety="No automatic fix: the intended schedule cannot be inferred.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR003",
        name="plateau-step-without-metric",
        summary="`ReduceLROnPlateau.step()` called without the metric it monitors",
        severity=ERROR,
        fix=FIX_NONE,
        static="`ReduceLROnPlateau.step()` with no metric",
        runtime="the TypeError raised by `ReduceLROnPlateau.step()` without a metric, explained",
        what="Finds `step()` with no argument on a `torch.optim.lr_scheduler.ReduceLROnPlateau`, also "
        "one built elsewhere (a framework's attribute, a parameter) when an `isinstance(x, "
        "ReduceLROnPlateau)` test guards the call.",
        why="ReduceLROnPlateau decides from the metric you give it. Without one, `step()` raises a "
        "TypeError at the end of the first epoch, after the first epoch of compute is spent.",
        example="scheduler = ReduceLROnPlateau(optimizer)\n...\nscheduler.step()",
        use_instead="scheduler = ReduceLROnPlateau(optimizer)\n...\nscheduler.step(val_loss)",
        fix_safety="No automatic fix: lraudit cannot invent the metric.",
        references=("https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html",),
    ),
    Rule(
        code="LR004",
        name="partial-param-group-update",
        summary="a manual LR update touches only some param groups of a multi-group optimizer",
        severity=WARNING,
        fix=FIX_NONE,
        static="a manual LR update that touches only some param groups of an optimizer built with several",
        runtime="one value written into every group, moving their ratios, although the scheduler keeps them; "
        "or only some groups changed",
        what="Finds writes such as `optimizer.param_groups[0]['lr'] = x` on an optimizer built with "
        "several param groups, when the function does not also write the other groups; and a helper that "
        "receives any optimizer and writes only `param_groups[0]['lr']` (`set_lr(optimizer, lr)`), unless "
        "every optimizer the module (or the project) gives it has one group. A module holding only such "
        "helpers is judged where they are called.",
        why="Param groups exist to train parts of the model at different rates (a backbone at a tenth of "
        "the head's LR). Updating group 0 only leaves the others frozen at their initial LR, or breaks "
        "the ratio between them, and nothing reports it.",
        example="optimizer = SGD([{'params': backbone}, {'params': head, 'lr': 1e-2}], lr=1e-3)\n"
        "optimizer.param_groups[0]['lr'] = new_lr",
        use_instead="for g in optimizer.param_groups:\n    g['lr'] = new_lr * g.get('lr_scale', 1.0)",
        fix_safety="No automatic fix: whether the other groups should follow, and with which ratio, "
        "is the author's decision.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR005",
        name="scheduler-never-stepped",
        summary="a torch scheduler is built but never stepped nor handed on",
        severity=ERROR,
        fix=FIX_NONE,
        static="a torch scheduler built and never stepped nor handed on (returned, passed to a framework, "
        "accelerate.prepare, Trainer(optimizers=...))",
        runtime="a scheduler attached but never stepped while the optimizer stepped; not one held by a stepped "
        "wrapper, one idle while a scheduler attached after it stepped the optimizer (replaced, as by "
        "Lightning's `lr_find`), one Lightning's loop owns before Lightning asked for its step, nor one that "
        "moved since an earlier audit ended with it idle (stepped after each audited block)",
        what="Finds a torch LR scheduler that is constructed while the optimizer it drives steps in the same "
        "module, but that is never stepped and never handed to anything that could step it: not returned, "
        "not passed to a call, a framework or `accelerator.prepare`, not composed into SequentialLR or "
        "ChainedScheduler, not stored where another module may read it. A scheduler kept on `self` is only "
        "reported when its class has no base class and trains its own optimizer.",
        why="The schedule you configured never happens: the whole run trains at the LR the scheduler set "
        "when it was built (the initial LR, or the first warm-up value), and nothing reports it.",
        example="scheduler = CosineAnnealingLR(optimizer, T_max=epochs)\nfor epoch in range(epochs):\n"
        "    train(model, optimizer, loader)",
        use_instead="scheduler = CosineAnnealingLR(optimizer, T_max=epochs)\nfor epoch in range(epochs):\n"
        "    train(model, optimizer, loader)\n    scheduler.step()",
        fix_safety="No automatic fix: where the step belongs depends on how the schedule is sized.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR006",
        name="built-in-loop",
        summary="a scheduler or optimizer is constructed inside the training loop",
        severity=ERROR,
        fix=FIX_NONE,
        static="scheduler or optimizer constructed inside the training loop: its state restarts every iteration",
        runtime="a new scheduler/optimizer restarts the trajectory (an optimizer rebuilt whose state was restored "
        "before its first step is a resume); a new scheduler after the previous one ended (its schedule's "
        "end, or every group left at 0) starts a new phase",
        what="Finds an optimizer or a torch scheduler built unconditionally inside the loop that also steps "
        "it (an epoch or batch loop, also through same-module helpers). Loops over folds, trials, configs, "
        "models, tasks or learning rates, and loops that rebuild the model or the parameters the optimizer "
        "is given, are sweeps where a fresh optimizer is right: they are not reported.",
        why="Each iteration gets a fresh object: the scheduler restarts its schedule (the LR never "
        "decays) and the optimizer forgets its momentum and Adam moments.",
        example="for epoch in range(epochs):\n    scheduler = StepLR(optimizer, 10)\n    train(...)\n"
        "    scheduler.step()",
        use_instead="scheduler = StepLR(optimizer, 10)\nfor epoch in range(epochs):\n    train(...)\n"
        "    scheduler.step()",
        fix_safety="No automatic fix: the constructor's arguments may depend on the loop.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR007",
        name="deprecated-epoch-argument",
        summary="`scheduler.step(epoch)` on a torch scheduler",
        severity=WARNING,
        fix=FIX_SAFE,
        static="torch `sched.step(epoch)` (not ReduceLROnPlateau, not CosineAnnealingWarmRestarts, "
        "not non-torch schedulers such as timm's)",
        runtime=None,
        what="Finds `step(epoch)` on a torch scheduler other than ReduceLROnPlateau (whose argument is the "
        "metric) and CosineAnnealingWarmRestarts (whose epoch argument is documented).",
        why="The epoch argument is deprecated: it switches the scheduler to its closed form, which for "
        "chainable schedulers differs from the recursive one and ignores other schedulers' changes.",
        example="scheduler.step(epoch)",
        use_instead="scheduler.step()",
        fix_safety="Safe: dropping the argument keeps one step per call, which is what the loop intends. "
        "Offered only for a call repeated in a loop after the optimizer's first step: an old-style "
        "`step(epoch)` at the top of the epoch loop is right *with* its argument (LR001's fix moves it "
        "first), and `step(start_epoch)` fast-forwarding a resumed run has no one-call replacement.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR008",
        name="get-lr-call",
        summary="`scheduler.get_lr()` called outside a `get_lr` override",
        severity=WARNING,
        fix=FIX_SAFE,
        static="`sched.get_lr()` outside a `get_lr` override; use `get_last_lr()`",
        runtime=None,
        what="Finds calls to `get_lr()` on a torch scheduler outside a `get_lr` method. On LambdaLR (and "
        "the transformers factories), CyclicLR, OneCycleLR and CosineAnnealingWarmRestarts `get_lr()` is a "
        "closed form of the position and returns the LR in use: reported at severity info (the LR is right, "
        "torch only warns). On SequentialLR, ChainedScheduler and ReduceLROnPlateau it raises "
        "NotImplementedError (torch 2.13).",
        why="`get_lr()` is the scheduler's internal formula: called from outside it returns a value for "
        "the wrong step (chainable schedulers compute from the current LR), and PyTorch warns.",
        example="print(scheduler.get_lr())",
        use_instead="print(scheduler.get_last_lr())",
        fix_safety="Safe when the receiver is a torch scheduler: `get_last_lr()` returns the LR in use.",
        references=("https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.LRScheduler.html",),
    ),
    Rule(
        code="LR009",
        name="step-granularity-mismatch",
        summary="a schedule sized in epochs is stepped per batch, or one sized in steps per epoch",
        severity=ERROR,
        fix=FIX_NONE,
        static="a schedule sized in epochs stepped per batch, or sized in steps stepped per epoch",
        runtime="an optimizer step uses an LR computed past the schedule's end (OneCycleLR total, "
        "CosineAnnealingLR T_max, the num_training_steps of transformers' linear and cosine schedules)",
        what="Finds a scheduler whose size (T_max, total_steps, num_training_steps, ...) is counted in one "
        "unit while it is stepped in the other: epochs-sized schedules stepped in the batch loop, "
        "steps-sized schedules stepped once per epoch. The unit is read from the size expression "
        "(`args.epochs`, `len(train_loader) * epochs`, `total_steps`, through local variables), or for a "
        "LambdaLR from what its lambda (or `def`) divides the position by (`lambda x: (1 - x / epochs) ** "
        "0.9` is sized in epochs, `lambda step: step / warmup_steps` in steps); the "
        "stepping from the loops around the scheduler and optimizer steps, Lightning's `interval` "
        "(default \"epoch\") for schedulers returned by `configure_optimizers`, and the transformers "
        "Trainer (per optimizer step). Literal or unrecognised sizes, and stepping in hooks or `while` "
        "loops over iterations, are left alone.",
        why="A cosine schedule sized in epochs but stepped per batch finishes its cycle in the first "
        "epoch and then climbs again; a warm-up sized in steps but stepped per epoch never ends. "
        "OneCycleLR raises once it runs past its total.",
        example="scheduler = CosineAnnealingLR(optimizer, T_max=epochs)\nfor epoch in range(epochs):\n"
        "    for batch in loader:\n        ...\n        optimizer.step()\n        scheduler.step()",
        use_instead="scheduler = CosineAnnealingLR(optimizer, T_max=epochs * len(loader))",
        fix_safety="No automatic fix: either the size or the place of the step must change.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR010",
        name="checkpoint-without-scheduler-state",
        summary="a checkpoint saves the optimizer's state but not the scheduler's",
        severity=WARNING,
        fix=FIX_NONE,
        static="a checkpoint saves optimizer state but not the scheduler's",
        runtime=None,
        what="Finds checkpoints (`torch.save`, `accelerator.save`, a dict handed to a same-module save "
        "helper or to a `save_on_master`/`save_checkpoint` helper) that hold `optimizer.state_dict()` but "
        "not the state of the scheduler driving it. Silent when the scheduler's state is taken anywhere "
        "else in the module, when the dict has parts it cannot see (`**extra`), with "
        "`accelerator.save_state`, and when the schedule's position is restored by hand "
        "(`scheduler.last_epoch = start_epoch - 1`, `last_epoch=` by keyword or by position, `step(epoch)`).",
        why="A run resumed from that checkpoint restarts its schedule from the beginning: warm-up "
        "again, full LR again, while the optimizer state says otherwise.",
        example="torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict()}, path)",
        use_instead="torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),\n"
        "            'scheduler': scheduler.state_dict()}, path)",
        fix_safety="No automatic fix: the loading side must change too.",
        references=("https://pytorch.org/tutorials/recipes/recipes/saving_and_loading_a_general_checkpoint.html",),
    ),
    Rule(
        code="LR011",
        name="uncomposed-schedulers",
        summary="two schedulers step one optimizer independently",
        severity=ERROR,
        fix=FIX_NONE,
        static="two schedulers step one optimizer independently (not via SequentialLR/ChainedScheduler)",
        runtime="two independent schedulers (not composed) observed stepping one optimizer, interleaved",
        what="Finds two torch schedulers built on one optimizer and both stepped in the same loop, not "
        "composed through SequentialLR or ChainedScheduler. Hand-made sequences (`if it < warmup: "
        "warmup.step() else: main.step()`, or one loop after the other), alternatives bound to one name, "
        "and a warm-up next to ReduceLROnPlateau (which SequentialLR does not take) are not reported.",
        why="Each scheduler writes the LR from its own state: closed-form ones overwrite the other's "
        "value, chainable ones compound it, and the result is rarely the schedule intended.",
        example="warmup = LinearLR(optimizer, 0.1, total_iters=5)\ncosine = CosineAnnealingLR(optimizer, 100)\n"
        "...\nwarmup.step()\ncosine.step()",
        use_instead="scheduler = SequentialLR(optimizer, [warmup, cosine], milestones=[5])\n...\nscheduler.step()",
        fix_safety="No automatic fix: the composition (sequence or chain) is the author's choice.",
        references=("https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.SequentialLR.html",),
    ),
    Rule(
        code="LR012",
        name="plateau-mode-mismatch",
        summary="ReduceLROnPlateau's mode does not match the direction of its metric",
        severity=ERROR,
        fix=FIX_NONE,
        static="`mode='min'` (the default) fed an accuracy-like metric, or `'max'` a loss",
        runtime=None,
        what="Finds a ReduceLROnPlateau in `min` mode (the default) stepped with a metric whose name says "
        "higher is better (`val_acc`, `f1`, `auc`, `mAP`, `bleu`, `dice`, `iou`, ...), or in `max` mode "
        "stepped with a loss or error; also the `monitor` of a Lightning scheduler dict. Names are read "
        "word by word (`accumulated` is not `acc`); a name with both directions, a negated or computed "
        "metric, `score` alone, or a mode that is not a literal is not reported.",
        why="The scheduler reduces the LR when the metric stops *improving* in the direction of its mode: "
        "with the wrong mode it cuts the LR while the model improves, and never when it stalls.",
        example="scheduler = ReduceLROnPlateau(optimizer)\n...\nscheduler.step(val_accuracy)",
        use_instead="scheduler = ReduceLROnPlateau(optimizer, mode='max')\n...\nscheduler.step(val_accuracy)",
        fix_safety="No automatic fix: the metric's name is a hint, not a proof.",
        references=("https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html",),
    ),
    Rule(
        code="LR013",
        name="step-count-mismatch",
        summary="the scheduler steps every micro-batch while the optimizer steps every k (gradient accumulation)",
        severity=ERROR,
        fix=FIX_NONE,
        static="scheduler stepped every micro-batch while the optimizer steps every k (gradient accumulation), "
        "or stepped twice in one iteration of the loop that steps it (a duplicated `scheduler.step()`)",
        runtime="more than one scheduler step between two applied optimizer steps (gradient accumulation, "
        "or optimizer steps skipped by AMP's GradScaler); per-epoch schedulers step less often and are silent",
        what="Finds a scheduler stepped on every iteration of the batch loop while its optimizer steps "
        "only under an accumulation condition such as `if (i + 1) % k == 0`, and a scheduler stepped twice "
        "in one iteration of the loop that steps it (a duplicated `scheduler.step()`, or one before and one "
        "after the optimizer step) while its optimizer steps at most once there. LR001 is not reported for a "
        "step LR013 reports, and LR001's fix never leaves a second step behind.",
        why="The schedule advances k times faster than training: a warm-up sized in optimizer steps ends "
        "k times too early and a decay reaches its floor long before the run ends.",
        example="for i, batch in enumerate(loader):\n    loss.backward()\n    if (i + 1) % k == 0:\n"
        "        optimizer.step()\n        optimizer.zero_grad()\n    scheduler.step()",
        use_instead="for i, batch in enumerate(loader):\n    loss.backward()\n    if (i + 1) % k == 0:\n"
        "        optimizer.step()\n        optimizer.zero_grad()\n        scheduler.step()",
        fix_safety="No automatic fix: the step belongs under the accumulation condition, which may be "
        "written in many ways.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR014",
        name="invalid-lr",
        summary="a negative, zero, NaN or infinite learning rate",
        severity=ERROR,
        fix=FIX_NONE,
        static="a literal negative or zero LR",
        runtime="NaN, inf or negative LR observed",
        what="Finds a literal negative `lr` given to an optimizer or to one of its param groups, a literal "
        "zero `lr` for an optimizer that steps with it (not when a OneCycleLR/CyclicLR, a manual write or "
        "a wrapper sets the LR later, not when the param groups bring their own LRs (`{...}` or "
        "`dict(params=..., lr=...)` entries, literal, appended to a list or from a comprehension), and not "
        "`'lr': 0` freezing one param group), and invalid literal "
        "scheduler bounds: negative `eta_min`, `min_lr`, `base_lr`, `end_factor`; zero or negative "
        "`max_lr`, `swa_lr`, `start_factor`. At run time, a NaN, infinite or negative LR.",
        why="A zero LR trains nothing; a negative one ascends the loss; a NaN one destroys the weights "
        "at the first step.",
        example="optimizer = SGD(model.parameters(), lr=0)",
        use_instead="optimizer = SGD(model.parameters(), lr=0.1)",
        fix_safety="No automatic fix: the intended value is unknown.",
        references=("https://pytorch.org/docs/stable/optim.html",),
    ),
    Rule(
        code="LR015",
        name="trajectory-mismatch",
        summary="the LR actually used differs from the expected trajectory",
        severity=ERROR,
        fix=FIX_NONE,
        static=None,
        runtime="the actual per-group LR differs from the expected trajectory",
        what="Compares the LR every param group used at every optimizer step with `expect=` (a callable, "
        "a sequence, or `\"scheduler\"`: what the attached scheduler alone would produce).",
        why="A schedule can be wrong in ways no single rule names; pinning the expected trajectory in a "
        "smoke test catches any drift.",
        example="with audit(optimizer, expect=lambda step: 0.1 * 0.5 ** (step // 10)):\n    train()",
        use_instead="Fix the training loop until the recorded LR matches, or fix the expectation.",
        fix_safety="Runtime only: nothing to fix in the source automatically.",
        references=(),
    ),
    Rule(
        code="LR016",
        name="rank-divergence",
        summary="the LR differs across distributed ranks",
        severity=ERROR,
        fix=FIX_NONE,
        static=None,
        runtime="LR differs across distributed ranks",
        what="Under `torch.distributed`, each rank records its LR trajectory and the ranks compare them at "
        "the end of the audit; a difference is reported with the first step and group where it occurs.",
        why="Ranks that train with different LRs average gradients computed for different schedules: "
        "the run silently trains with neither.",
        example="if rank == 0:\n    for g in optimizer.param_groups:\n        g['lr'] *= 0.1",
        use_instead="Make every rank take the same LR decision (broadcast it from rank 0).",
        fix_safety="Runtime only: nothing to fix in the source automatically.",
        references=("https://pytorch.org/docs/stable/distributed.html",),
    ),
    Rule(
        code="LR017",
        name="param-groups-after-scheduler",
        summary="`optimizer.add_param_group(...)` after a torch scheduler was built on the optimizer",
        severity=ERROR,
        fix=FIX_NONE,
        static="`add_param_group` on an optimizer after a torch scheduler was built on it and stepped "
        "afterwards, with no scheduler rebuilt in between",
        runtime="a scheduler steps over a different number of param groups than it was built with "
        "(torch >= 2.10 raises for LambdaLR, MultiplicativeLR, CyclicLR, OneCycleLR, "
        "CosineAnnealingWarmRestarts, SequentialLR)",
        what="Finds `optimizer.add_param_group(...)` (unfreezing a backbone mid-training, adding a head) "
        "on an optimizer that a torch scheduler was already built on, when that scheduler is stepped "
        "afterwards and no scheduler is built on the optimizer in between.",
        why="A scheduler records one base LR (and one lambda, one momentum range) per param group when it "
        "is built. Since torch 2.10 its `step()` pairs them with the groups strictly: LambdaLR, "
        "MultiplicativeLR, CyclicLR, CosineAnnealingWarmRestarts and SequentialLR raise `ValueError: "
        "zip() argument 2 is shorter than argument 1`, OneCycleLR raises `KeyError: 'initial_lr'` (torch "
        "2.13, measured). The other chainable schedulers carry on with no base LR for the new group and "
        "apply their factors to whatever LR it has: StepLR, MultiStepLR, ExponentialLR and PolynomialLR "
        "decay it from its own LR (what unfreezing usually intends: not reported); LinearLR and "
        "ConstantLR multiply it by the ratio they undo and end their warm-up with it at the wrong LR; "
        "CosineAnnealingLR raises once its position passes `T_max`. Before torch 2.10 the closed-form "
        "ones silently left the new group unscheduled.",
        example="scheduler = LambdaLR(optimizer, lambda e: 0.95 ** e)\nfor epoch in range(epochs):\n"
        "    if epoch == unfreeze_at:\n        optimizer.add_param_group({'params': backbone.parameters()})\n"
        "    train(model, optimizer, loader)\n    scheduler.step()",
        use_instead="optimizer = SGD([{'params': head.parameters()},\n"
        "                 {'params': backbone.parameters(), 'lr': 0.0}], lr=0.1)  # frozen by its LR\n"
        "scheduler = LambdaLR(optimizer, [lambda e: 0.95 ** e, lambda e: 0.1 * (e >= unfreeze_at)])",
        fix_safety="No automatic fix: rebuilding the scheduler, or creating every group up front, is the "
        "author's decision.",
        references=(_TORCH_SCHED_DOCS,),
    ),
    Rule(
        code="LR018",
        name="scheduler-built-after-optimizer-load",
        summary="a scheduler whose construction rewrites the LR is built after `optimizer.load_state_dict`",
        severity=ERROR,
        fix=FIX_NONE,
        static="a scheduler whose construction rewrites the LR (LambdaLR and the transformers factories, "
        "LinearLR, ConstantLR, CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts, SequentialLR) built "
        "after `optimizer.load_state_dict` on the same path",
        runtime="right after the loads, the LR the next update uses differs from every restored scheduler's "
        "`get_last_lr()` (of those whose saved state holds their last LRs)",
        what="Finds a torch scheduler built after `optimizer.load_state_dict(...)` on the same optimizer "
        "(in a resume block, a `Trainer.resume()` method, a script), when its class writes the LR at "
        "construction, and it is not positioned explicitly with `last_epoch`.",
        why="A scheduler takes one step when it is built. The closed-form ones write the start of their "
        "schedule: LambdaLR (and `get_linear_schedule_with_warmup` and the other transformers "
        "factories) writes `initial_lr * lambda(0)`, OneCycleLR `max_lr / div_factor`, CyclicLR "
        "`base_lr`, CosineAnnealingWarmRestarts and SequentialLR `initial_lr`; LinearLR and ConstantLR "
        "multiply the restored LR by their start factor again. Loading the scheduler's state afterwards "
        "restores its counters but does not write the LR back: the next updates run at the "
        "start-of-schedule LR while `get_last_lr()` reports the restored one (torch 2.13, measured: "
        "LambdaLR resumed at 0.0031 trains at 0.1). StepLR, MultiStepLR, ExponentialLR, "
        "MultiplicativeLR, PolynomialLR, CosineAnnealingLR and ReduceLROnPlateau keep the restored LR "
        "and are not reported.",
        example="optimizer.load_state_dict(ckpt['optimizer'])\n"
        "scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)\n"
        "scheduler.load_state_dict(ckpt['scheduler'])",
        use_instead="scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)\n"
        "optimizer.load_state_dict(ckpt['optimizer'])\nscheduler.load_state_dict(ckpt['scheduler'])",
        fix_safety="No automatic fix: the construction may depend on values computed between the two "
        "statements.",
        references=("https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate",),
    ),
    Rule(
        code="LR019",
        name="scheduler-state-not-restored",
        summary="the optimizer's state is restored but the scheduler driving it is neither restored nor "
        "repositioned",
        severity=ERROR,
        fix=FIX_NONE,
        static="`optimizer.load_state_dict(...)` while the torch scheduler driving that optimizer is neither "
        "restored (`scheduler.load_state_dict`) nor repositioned (`last_epoch=` keyword or positional, "
        "`scheduler.last_epoch = ...`, `step(epoch)`)",
        runtime="an optimizer's state loaded during the audit while the state of the scheduler driving it "
        "is neither loaded nor repositioned before that scheduler's next step",
        what="Finds the resume side of LR010: a run restores its optimizer from a checkpoint, and the "
        "torch scheduler that drives that optimizer is built and stepped in the same module but never "
        "restored with `load_state_dict` nor repositioned (`last_epoch=` given to its constructor by "
        "keyword or position, `scheduler.last_epoch = start_epoch - 1`, `scheduler.step(epoch)`). "
        "A `last_epoch` assignment counts only when it can apply to that resume: not one that runs only "
        "once the scheduler has stepped again after the load (a restart after an out-of-memory error, a "
        "warm restart in the training loop), nor one in the branch exclusive with the load's; where "
        "the analysis cannot tell (a hook, a method nothing here calls), it counts. A reload in the "
        "training loop once the scheduler has stepped is not a restart. "
        "Reported at the optimizer's `load_state_dict`.",
        why="The schedule restarts on every resume while the optimizer's moments continue: warm-up runs "
        "again at full model maturity, a decayed LR jumps back to its start (closed-form schedulers), or "
        "a chainable scheduler decays the restored LR again on its restarted count.",
        example="optimizer.load_state_dict(ckpt['optimizer'])\nstart_epoch = ckpt['epoch'] + 1\n"
        "for epoch in range(start_epoch, epochs):\n    train(...)\n    scheduler.step()",
        use_instead="optimizer.load_state_dict(ckpt['optimizer'])\nscheduler.load_state_dict(ckpt['scheduler'])\n"
        "start_epoch = ckpt['epoch'] + 1",
        fix_safety="No automatic fix: the checkpoint must hold the scheduler's state first (LR010).",
        references=("https://pytorch.org/tutorials/recipes/recipes/saving_and_loading_a_general_checkpoint.html",),
    ),
    Rule(
        code="LR020",
        name="removed-scheduler-argument",
        summary="an argument torch removed (`verbose=`) is given to a torch scheduler",
        severity=WARNING,
        fix=FIX_SAFE,
        static="an argument torch removed from its schedulers (`verbose=`: deprecated in 2.2, a TypeError "
        "since 2.7) given to a torch scheduler; the safe fix drops it",
        runtime=None,
        what="Finds arguments that torch removed from its LR schedulers, given to a "
        "`torch.optim.lr_scheduler` class: `verbose=` (deprecated in torch 2.2, removed in 2.7). Other "
        "libraries' schedulers that take `verbose` (timm's) are not reported.",
        why="On torch >= 2.7 the constructor raises `TypeError: ... got an unexpected keyword argument "
        "'verbose'` and the script does not start; from 2.2 to 2.6 the argument only warned and printed "
        "nothing. The LR itself is not affected: this is an old API, not a wrong schedule.",
        example="scheduler = ReduceLROnPlateau(optimizer, 'min', patience=5, verbose=True)",
        use_instead="scheduler = ReduceLROnPlateau(optimizer, 'min', patience=5)\n"
        "print(scheduler.get_last_lr())  # when you want to see it",
        fix_safety="Safe: the argument has done nothing since torch 2.2; dropping it keeps the schedule.",
        references=("https://github.com/pytorch/pytorch/pull/147301",),
    ),
    Rule(
        code="LR021",
        name="compiled-step-float-lr",
        summary="a `torch.compile`d function steps an optimizer whose float LR a scheduler changes",
        severity=WARNING,
        fix=FIX_NONE,
        static="a `torch.compile`d function steps an optimizer whose Python-float LR a torch scheduler "
        "changes (the change recompiles the step)",
        runtime=None,
        what="Finds a function compiled with `torch.compile` (decorated, or wrapped by "
        "`torch.compile(fn)`) that calls `optimizer.step()`, when a torch scheduler drives that optimizer "
        "and the optimizer's LR is a Python float. Silent when the LR is given as a tensor "
        "(`lr=torch.tensor(0.01)`).",
        why="Dynamo guards on the float LR: when the scheduler changes it, the compiled step is compiled "
        "again. Measured on torch 2.13 (eager backend, LinearLR over 8 steps): 2 compilations with the "
        "default automatic dynamic shapes (the second one turns the LR into a symbolic float), 6 "
        "(one per change) with automatic dynamic disabled as `dynamic=False` does; torch releases that "
        "specialise floats recompile at every change until the recompile limit sends the step back to "
        "eager. The LR used is right; compilation time is lost. The torch recipe \"Compiling the "
        "optimizer with an LR scheduler\" gives the LR as a tensor.",
        example="optimizer = torch.optim.Adam(model.parameters(), lr=0.01)\n"
        "scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=5)\n\n@torch.compile\n"
        "def step():\n    optimizer.step()",
        use_instead="optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))",
        fix_safety="No automatic fix: a tensor LR changes what other code reading the LR receives.",
        references=("https://pytorch.org/tutorials/recipes/compiling_optimizer_lr_scheduler.html",),
    ),
    Rule(
        code="LR022",
        name="invalid-momentum",
        summary="a momentum or beta outside [0, 1)",
        severity=ERROR,
        fix=FIX_NONE,
        static="a literal momentum or beta outside [0, 1) (optimizer `momentum=`/`betas=`, OneCycleLR and "
        "CyclicLR `base_momentum`/`max_momentum`)",
        runtime="a momentum or beta outside [0, 1) observed (recorded per group when a scheduler cycles them)",
        what="Finds a literal `momentum` outside [0, 1) given to an optimizer, a literal `betas` with an "
        "element outside [0, 1), and `base_momentum`/`max_momentum` of OneCycleLR and CyclicLR outside "
        "[0, 1). At run time, a momentum or beta1 outside [0, 1) in a param group at an update.",
        why="A momentum (or Adam's beta1) of 1 or more never forgets a gradient: the velocity grows "
        "without bound and the weights diverge. torch checks Adam's `betas` at construction (a "
        "ValueError), but not SGD's `momentum` above 1 nor the momentum range of OneCycleLR and CyclicLR, "
        "which then write the invalid value into the optimizer as they cycle.",
        example="scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=1000, max_momentum=1.05)",
        use_instead="scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=1000, max_momentum=0.95)",
        fix_safety="No automatic fix: the intended value is unknown.",
        references=("https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html",),
    ),
)

RULES: Dict[str, Rule] = {rule.code: rule for rule in _RULES}
_BY_NAME: Dict[str, Rule] = {rule.name: rule for rule in _RULES}


def get(code_or_name: str) -> Rule:
    """The rule with this code (``LR001``, case-insensitive) or name; KeyError when unknown."""
    key = code_or_name.strip()
    rule = RULES.get(key.upper()) or _BY_NAME.get(key.lower())
    if rule is None:
        raise KeyError(code_or_name)
    return rule


def matching(prefix: str) -> Tuple[Rule, ...]:
    """Rules selected by a code or code prefix (``LR``, ``LR00``, ``LR001``); empty when none."""
    prefix = prefix.strip().upper()
    if prefix == "ALL":
        return _RULES
    return tuple(rule for rule in _RULES if rule.code.startswith(prefix))


def render_page(rule: Rule) -> str:
    """The Markdown page of one rule, as committed under ``rules/`` and printed by ``lraudit explain``."""
    lines = [
        f"# {rule.code} {rule.name}",
        "",
        f"{rule.summary[0].upper()}{rule.summary[1:]}.",
        "",
        f"Severity: {rule.severity}. Detected by: {rule.halves}. Fix: {rule.fix}.",
        "",
        "## What it does",
        "",
        rule.what,
        "",
        "## Why is this bad?",
        "",
        rule.why,
        "",
        "## Example",
        "",
        "```python",
        rule.example,
        "```",
        "",
        "## Use instead",
        "",
        "```python",
        rule.use_instead,
        "```",
        "",
        "## Static detection",
        "",
        (rule.static[0].upper() + rule.static[1:] + ".") if rule.static else "None: this pitfall is only visible at run time.",
        "",
        "## Runtime detection",
        "",
        (rule.runtime[0].upper() + rule.runtime[1:] + ".")
        if rule.runtime
        else "None: this pitfall is caught by `lraudit check` only.",
        "",
        "## Fix safety",
        "",
        rule.fix_safety,
        "",
        "## References",
        "",
    ]
    lines += [f"- <{ref}>" for ref in rule.references] or ["- DESIGN of lraudit, rule catalogue"]
    return "\n".join(lines) + "\n"


def render_table() -> str:
    """The Markdown rule table of the README (between its ``rules-table`` markers)."""
    rows = ["| code | name | static | runtime | fix |", "|---|---|---|---|---|"]
    for rule in _RULES:
        rows.append(
            f"| [{rule.code}](rules/{rule.code}.md) | {rule.name} | {'yes' if rule.static else ''} | "
            f"{'yes' if rule.runtime else ''} | {rule.fix if rule.fix != FIX_NONE else ''} |"
        )
    return "\n".join(rows) + "\n"


README_TABLE_START = "<!-- rules-table -->"
README_TABLE_END = "<!-- /rules-table -->"


def sync_docs(root) -> list:
    """Rewrite ``rules/*.md`` and the README rule table from the catalogue; returns changed paths."""
    from pathlib import Path

    root = Path(root)
    changed = []
    (root / "rules").mkdir(exist_ok=True)
    for rule in _RULES:
        page = root / "rules" / f"{rule.code}.md"
        text = render_page(rule)
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            page.write_text(text, encoding="utf-8")
            changed.append(str(page))
    readme = root / "README.md"
    current = readme.read_text(encoding="utf-8")
    head, _, rest = current.partition(README_TABLE_START)
    _, _, tail = rest.partition(README_TABLE_END)
    updated = f"{head}{README_TABLE_START}\n{render_table()}{README_TABLE_END}{tail}"
    if updated != current:
        readme.write_text(updated, encoding="utf-8")
        changed.append(str(readme))
    return changed


if __name__ == "__main__":  # python -m lraudit.catalog: re-render the docs after editing a rule
    import sys

    for path in sync_docs(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(f"wrote {path}")
