"""What the analysis knows of the outside world, as data: qualified names of optimizers, torch
schedulers (with their properties), scheduler factories, GradScalers and frameworks.

Everything here is matched on *qualified* names produced by the import table, never on spelling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Tuple

LR_SCHEDULER = "torch.optim.lr_scheduler"


@dataclass(frozen=True)
class SchedulerKind:
    """Properties of one torch scheduler class (or factory returning one)."""

    cls: Optional[str]  # torch class name ("StepLR"); None when the factory decides at run time
    chainable: bool = False  # keeps a manual LR write (multiplies whatever is in group["lr"])
    composite: bool = False  # SequentialLR / ChainedScheduler: steps children it was given
    # Size arguments: (keyword, position among the arguments after the optimizer) of what counts the
    # schedule's length; the rules interpret the unit (epochs or steps) from the size expression.
    size_args: Tuple[Tuple[str, int], ...] = ()
    sized_in_steps: bool = False  # the API documents the size as optimizer steps (OneCycleLR, HF warmups)
    optimizer_arg: Tuple[str, int] = ("optimizer", 0)


def _k(cls, **kw):
    return SchedulerKind(cls=cls, **kw)


# torch.optim.lr_scheduler classes. Chainable per torch 2.x: their get_lr multiplies the current LR.
TORCH_SCHEDULERS: Dict[str, SchedulerKind] = {
    "LambdaLR": _k("LambdaLR"),
    "MultiplicativeLR": _k("MultiplicativeLR", chainable=True),
    "StepLR": _k("StepLR", chainable=True, size_args=(("step_size", 0),)),
    "MultiStepLR": _k("MultiStepLR", chainable=True, size_args=(("milestones", 0),)),
    "ConstantLR": _k("ConstantLR", chainable=True, size_args=(("total_iters", 1),)),
    "LinearLR": _k("LinearLR", chainable=True, size_args=(("total_iters", 2),)),
    "ExponentialLR": _k("ExponentialLR", chainable=True),
    "PolynomialLR": _k("PolynomialLR", chainable=True, size_args=(("total_iters", 0),)),
    "CosineAnnealingLR": _k("CosineAnnealingLR", chainable=True, size_args=(("T_max", 0),)),
    "ReduceLROnPlateau": _k("ReduceLROnPlateau", chainable=True),
    "CyclicLR": _k("CyclicLR", size_args=(("step_size_up", 2),), sized_in_steps=True),
    "CosineAnnealingWarmRestarts": _k("CosineAnnealingWarmRestarts", size_args=(("T_0", 0),)),
    "OneCycleLR": _k("OneCycleLR", size_args=(("total_steps", 1), ("epochs", 2)), sized_in_steps=True),
    "SequentialLR": _k("SequentialLR", composite=True, size_args=(("milestones", 1),)),
    "ChainedScheduler": _k("ChainedScheduler", composite=True, optimizer_arg=("optimizer", 1)),
}

# Base classes: a same-module subclass of one of these is a torch scheduler too.
TORCH_SCHEDULER_BASES: FrozenSet[str] = frozenset(
    {f"{LR_SCHEDULER}.LRScheduler", f"{LR_SCHEDULER}._LRScheduler", "torch.optim.lr_scheduler.LRScheduler"}
)

# Factories that return a torch scheduler (LambdaLR unless stated) sized in optimizer steps.
_HF_WARMUP = dict(size_args=(("num_training_steps", 1),), sized_in_steps=True)
_HF_FACTORIES = {
    "get_constant_schedule": _k("LambdaLR"),
    "get_constant_schedule_with_warmup": _k("LambdaLR"),
    "get_linear_schedule_with_warmup": _k("LambdaLR", **_HF_WARMUP),
    "get_cosine_schedule_with_warmup": _k("LambdaLR", **_HF_WARMUP),
    "get_cosine_with_hard_restarts_schedule_with_warmup": _k("LambdaLR", **_HF_WARMUP),
    "get_polynomial_decay_schedule_with_warmup": _k("LambdaLR", **_HF_WARMUP),
    "get_cosine_with_min_lr_schedule_with_warmup": _k("LambdaLR", **_HF_WARMUP),
    "get_inverse_sqrt_schedule": _k("LambdaLR"),
    "get_wsd_schedule": _k("LambdaLR"),
    "get_reduce_on_plateau_schedule": _k("ReduceLROnPlateau", chainable=True),
    # get_scheduler(name, optimizer, ...): the class depends on `name`.
    "get_scheduler": SchedulerKind(
        cls=None, size_args=(("num_training_steps", 1),), sized_in_steps=True, optimizer_arg=("optimizer", 1)
    ),
}
SCHEDULER_FACTORIES: Dict[str, SchedulerKind] = {}
for _module in ("transformers", "transformers.optimization", "diffusers.optimization"):
    for _name, _kind in _HF_FACTORIES.items():
        SCHEDULER_FACTORIES[f"{_module}.{_name}"] = _kind
SCHEDULER_FACTORIES["torch.optim.swa_utils.SWALR"] = _k("SWALR")

# Optimizer constructors: qualified names, or prefixes ending in "." (any class of that module).
OPTIMIZER_PREFIXES: Tuple[str, ...] = (
    "torch.optim.",
    "bitsandbytes.optim.",
    "apex.optimizers.",
    "torch_optimizer.",
    "deepspeed.ops.adam.",
    "deepspeed.ops.lamb.",
)
OPTIMIZER_EXCLUDED_PREFIXES: Tuple[str, ...] = (
    "torch.optim.lr_scheduler",
    "torch.optim.swa_utils",
    "torch.optim.Optimizer",
    "torch.optim.optimizer",
)
OPTIMIZER_NAMES: FrozenSet[str] = frozenset(
    {
        "transformers.AdamW",
        "transformers.Adafactor",
        "transformers.optimization.AdamW",
        "transformers.optimization.Adafactor",
        "timm.optim.create_optimizer",
        "timm.optim.create_optimizer_v2",
        "torch.distributed.optim.ZeroRedundancyOptimizer",
    }
)
OPTIMIZER_BASES: FrozenSet[str] = frozenset({"torch.optim.Optimizer", "torch.optim.optimizer.Optimizer"})

GRAD_SCALERS: FrozenSet[str] = frozenset(
    {
        "torch.cuda.amp.GradScaler",
        "torch.amp.GradScaler",
        "torch.cpu.amp.GradScaler",
        "torch.amp.grad_scaler.GradScaler",
        "torch.cuda.amp.grad_scaler.GradScaler",
    }
)
ACCELERATORS: FrozenSet[str] = frozenset({"accelerate.Accelerator", "accelerate.accelerator.Accelerator"})

TORCH_SAVE: FrozenSet[str] = frozenset({"torch.save", "torch_xla.core.xla_model.save"})
# Checkpoint helpers of other modules, by the name they are called with (torchvision's reference
# scripts' ``utils.save_on_master(checkpoint, path)`` and its many copies): the first argument is
# what gets saved.
CHECKPOINT_SAVER_NAMES: FrozenSet[str] = frozenset({"save_on_master", "save_checkpoint", "save_ckpt"})

LIGHTNING_MODULES: FrozenSet[str] = frozenset(
    {
        "lightning.LightningModule",
        "lightning.pytorch.LightningModule",
        "lightning.pytorch.core.LightningModule",
        "lightning.pytorch.core.module.LightningModule",
        "pytorch_lightning.LightningModule",
        "pytorch_lightning.core.LightningModule",
        "pytorch_lightning.core.module.LightningModule",
    }
)

# Functions that return their (model, optimizer, ...) arguments wrapped, in the same order.
POSITION_PRESERVING: FrozenSet[str] = frozenset({"apex.amp.initialize"})


def scheduler_kind(qualname: str) -> Optional[SchedulerKind]:
    """The torch scheduler a call of ``qualname`` constructs, or None."""
    if qualname.startswith(LR_SCHEDULER + "."):
        return TORCH_SCHEDULERS.get(qualname[len(LR_SCHEDULER) + 1 :])
    return SCHEDULER_FACTORIES.get(qualname)


def is_optimizer_constructor(qualname: str) -> bool:
    if qualname in OPTIMIZER_NAMES:
        return True
    if any(qualname.startswith(p) for p in OPTIMIZER_EXCLUDED_PREFIXES):
        return False
    last = qualname.rsplit(".", 1)[-1]
    # A class name (capitalised), not a helper function of the optimizer module.
    return any(qualname.startswith(p) for p in OPTIMIZER_PREFIXES) and last[:1].isupper()
