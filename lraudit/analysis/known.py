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

# Behaviours of torch's scheduler classes the resume and param-group rules rely on, each measured on
# torch 2.13 (see the rule pages LR008, LR017, LR018).
#
# Classes whose constructor (its initial step, at ``last_epoch=-1``) writes an LR that does not depend on
# the LR already in the optimizer, or multiplies it again: built after ``optimizer.load_state_dict``
# they overwrite the restored LR, and loading their state afterwards does not write it back.
# (StepLR, MultiStepLR, ExponentialLR, MultiplicativeLR, PolynomialLR, CosineAnnealingLR,
# ReduceLROnPlateau and ChainedScheduler keep the restored LR.)
REWRITES_LR_AT_CONSTRUCTION: FrozenSet[str] = frozenset(
    {"LambdaLR", "LinearLR", "ConstantLR", "CyclicLR", "OneCycleLR", "CosineAnnealingWarmRestarts", "SequentialLR"}
)
# Classes whose ``get_lr()`` is a closed form of (base LRs, position): called from outside ``step`` it
# returns the LR in use (and only warns). The chainable ones compute from the current LR and return
# the *next* value (or raise: SequentialLR, ChainedScheduler have no ``get_lr``).
CLOSED_FORM_GET_LR: FrozenSet[str] = frozenset({"LambdaLR", "CyclicLR", "OneCycleLR", "CosineAnnealingWarmRestarts"})
# Since torch 2.10 ``step()`` pairs per-group values with ``param_groups`` strictly (``zip(strict=True)``):
# after ``add_param_group`` these raise at their next step (ValueError; OneCycleLR: KeyError 'initial_lr').
# The other classes carry on and schedule the new group from whatever LR it has.
RAISE_AFTER_ADD_PARAM_GROUP: FrozenSet[str] = frozenset(
    {"LambdaLR", "MultiplicativeLR", "CyclicLR", "OneCycleLR", "CosineAnnealingWarmRestarts", "SequentialLR"}
)
# Arguments torch removed from its schedulers: name -> (version that deprecated it, version whose
# constructors no longer take it, raising TypeError).
REMOVED_SCHEDULER_ARGUMENTS: Dict[str, Tuple[str, str]] = {"verbose": ("2.2", "2.7")}
# Position of ``last_epoch`` among the arguments of each constructor (the optimizer is position 0),
# from the torch 2.13 and transformers signatures.
LAST_EPOCH_POSITION: Dict[str, int] = {
    "LambdaLR": 2, "MultiplicativeLR": 2, "StepLR": 3, "MultiStepLR": 3, "ConstantLR": 3, "LinearLR": 4,
    "ExponentialLR": 2, "PolynomialLR": 3, "CosineAnnealingLR": 3, "CyclicLR": 12,
    "CosineAnnealingWarmRestarts": 4, "OneCycleLR": 13, "SequentialLR": 3,
    "get_constant_schedule": 1, "get_constant_schedule_with_warmup": 2, "get_linear_schedule_with_warmup": 3,
    "get_cosine_schedule_with_warmup": 4, "get_cosine_with_hard_restarts_schedule_with_warmup": 4,
    "get_polynomial_decay_schedule_with_warmup": 5, "get_cosine_with_min_lr_schedule_with_warmup": 4,
    "get_inverse_sqrt_schedule": 3, "get_wsd_schedule": 9,
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
