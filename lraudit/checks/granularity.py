"""Schedule size vs stepping granularity: LR009 step-granularity-mismatch.

Two questions, each answered only when the code says so plainly:

* **In which unit is the schedule sized?** The size arguments of the scheduler (``T_max``,
  ``step_size``, ``milestones``, ``total_iters``, OneCycleLR's ``total_steps`` or
  ``epochs`` x ``steps_per_epoch``, the HF ``num_training_steps`` ...) are read as a small dimensional
  expression: names say epochs (``epochs``, ``args.num_epochs``, ``cfg.MAX_EPOCH``), steps
  (``total_steps``, ``max_iter``, ``t_total``), steps per epoch (``len(train_loader)``,
  ``steps_per_epoch``, ``len(dataset) // batch_size``) or nothing (accumulation steps, world size);
  products and quotients combine them (``len(loader) * epochs`` is steps, ``total_steps //
  steps_per_epoch`` is epochs). A local name is read through the expression it was assigned from.
  Literals and unknown names have no unit: silent.
* **How often is it stepped?** *Per batch*: in the same innermost loop as its optimizer's step,
  that loop iterating batches (a loader, ``range(len(loader))``, ``range(steps_per_epoch)``) or
  nested in an epoch loop. *Per epoch*: in an epoch loop while the optimizer steps in a batch loop
  nested inside it (directly or in a helper). Anything else (hooks, ``while`` loops over
  iterations, a guard such as ``if i % 100 == 0``, ``step(epoch)`` with its closed form): silent.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

import libcst as cst

from lraudit.analysis import Model
from lraudit.analysis.imports import dotted_name
from lraudit.analysis.known import LR_SCHEDULER
from lraudit.analysis.trace import Event, Loop, arms_not_shared, exclusive, innermost_loop
from lraudit.analysis import values as V
from lraudit.analysis.values import Const, SchedulerObj, some
from lraudit.checks.base import Report, StaticRule, describe_scheduler, receiver_text
from lraudit.checks.epoch_argument import is_torch_scheduler

EPOCHS = "epochs"
STEPS = "steps"
PER_BATCH = "per batch"
PER_EPOCH = "per epoch"

# ---------------------------------------------------------------------------------------------------
# Units: a dimension is (epochs, steps, samples) exponents; LITERAL is a plain number (it takes the
# unit of whatever it is added to); None is unknown.
Dim = Tuple[int, int, int]
LITERAL = "literal"
_E: Dim = (1, 0, 0)
_S: Dim = (0, 1, 0)
_PER_EPOCH_STEPS: Dim = (-1, 1, 0)
_PER_EPOCH_SAMPLES: Dim = (-1, 0, 1)
_BATCH_SIZE: Dim = (0, -1, 1)
_NUMBER: Dim = (0, 0, 0)

_STEP_WORDS = {"step", "steps", "iter", "iters", "iteration", "iterations", "update", "updates", "niter",
               "niters", "batches"}
_STEP_QUALIFIERS = {"total", "max", "num", "n", "nb", "nr", "number", "train", "training", "warmup", "all",
                    "tot", "optimization", "estimated", "stepping"}
_EPOCH_WORDS = {"epochs", "epoch", "nepochs", "nepoch"}
_EPOCH_QUALIFIERS = {"num", "n", "nb", "nr", "number", "max", "total", "train", "training", "warmup", "end",
                     "final", "all", "decay", "lr"}
# Counts of events, not of time: ``max_steps // num_lr_decays`` is still a number of steps.
_EVENT_COUNTS = {"decays", "cycles", "restarts"}
_COUNT_QUALIFIERS = {"num", "n", "nb", "nr", "number"}
_NUMBERS = {"world_size", "n_gpu", "n_gpus", "num_gpus", "ngpus", "gpus", "num_devices", "devices",
            "num_processes", "nprocs", "num_nodes", "num_replicas", "num_machines"}
_FIXED_STEPS = {"t_total", "niter", "niters", "max_iter", "max_iters", "iterations", "total_iters"}
_PER_EPOCH_STEP_NAMES = {"num_batches", "n_batches", "nb_batches", "num_batch", "n_batch", "epoch_steps",
                         "epoch_iters", "len_loader", "loader_len", "len_dataloader", "len_train_loader",
                         "iters_per_ep", "niter_per_ep", "num_steps_per_epoch"}
_UNIT_PRESERVING_CALLS = {"int", "float", "round", "abs", "ceil", "floor", "math.ceil", "math.floor",
                          "np.ceil", "np.floor", "numpy.ceil", "numpy.floor", "np.int64", "np.round"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DATASET_WORDS = {"dataset", "datasets", "ds", "data", "set", "examples", "samples", "trainset", "train_set",
                  "train_data", "train_dataset"}


def _tokens(identifier: str) -> List[str]:
    return [t for t in _CAMEL.sub("_", identifier).lower().split("_") if t]


def _loader_like(identifier: str) -> bool:
    lower = identifier.lower()
    tokens = _tokens(identifier)
    return "loader" in lower or "dl" in tokens or "batches" in tokens


def name_dim(identifier: str) -> Optional[Dim]:
    """What a name counts, from its words alone."""
    lower = "_".join(_tokens(identifier))
    tokens = lower.split("_")
    token_set = set(tokens)
    if any(t.startswith("accum") for t in tokens) or lower in _NUMBERS:
        return _NUMBER
    if token_set & _COUNT_QUALIFIERS and token_set & _EVENT_COUNTS and not token_set & (_STEP_WORDS | _EPOCH_WORDS):
        return _NUMBER  # num_lr_decays, n_cycles
    if "size" in token_set and "batch" in token_set or lower in ("bs", "bsz"):
        return _BATCH_SIZE
    has_epoch = bool(token_set & _EPOCH_WORDS)
    has_steps = bool(token_set & _STEP_WORDS)
    if lower in _PER_EPOCH_STEP_NAMES or (has_epoch and has_steps and token_set & {"per", "in"}) or (
        "loader" in lower and token_set & {"len", "length", "size"}
    ):
        return _PER_EPOCH_STEPS
    if lower in _FIXED_STEPS or "estimated_stepping_batches" in lower:
        return _S
    if has_steps and not has_epoch and token_set & _STEP_QUALIFIERS:
        if "batches" in token_set and not token_set & {"total", "max", "all", "estimated"}:
            return _PER_EPOCH_STEPS  # num_batches: the batches of one epoch
        return _S
    if has_epoch and not has_steps and "size" not in token_set:
        if "epochs" in token_set or "nepochs" in token_set or token_set & _EPOCH_QUALIFIERS:
            return _E
    return None


def _combine(a, b, op: str):
    if a is None or b is None:
        return None
    if op in ("+", "-", "max"):
        if a == LITERAL:
            return b
        if b == LITERAL:
            return a
        return a if a == b else None
    a = _NUMBER if a == LITERAL else a
    b = _NUMBER if b == LITERAL else b
    sign = 1 if op == "*" else -1
    result = tuple(x + sign * y for x, y in zip(a, b))
    return LITERAL if result == _NUMBER and a == _NUMBER and b == _NUMBER else result


class Units:
    """Dimension of size expressions, reading local names through the expressions they were
    assigned from (``origins`` of the construction event), and ``self.`` attributes whose name says
    nothing through their one assignment in the module (with a ``model``)."""

    def __init__(self, origins: Dict[int, cst.BaseExpression], model: Optional[Model] = None) -> None:
        self.origins = origins
        self.model = model
        self._depth = 0

    def dim(self, node, bound: frozenset = frozenset()):
        if self._depth > 12:
            return None
        self._depth += 1
        try:
            return self._dim(node, bound)
        finally:
            self._depth -= 1

    def _dim(self, node, bound: frozenset):
        if isinstance(node, (cst.Integer, cst.Float)):
            return LITERAL
        if isinstance(node, cst.Name):
            if node.value in bound:
                return LITERAL
            origin = self.origins.get(id(node))
            if origin is not None:
                found = self.dim(origin, bound)
                if found is not None and found != LITERAL:
                    return found
            return name_dim(node.value)
        if isinstance(node, cst.Attribute):
            found = name_dim(node.attr.value)
            if found is None and self.model is not None and _is_self(node.value):
                origin = _self_attribute_origin(self.model, node.attr.value)
                if origin is not None:
                    return self.dim(origin)
            return found
        if isinstance(node, cst.Subscript):
            if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
                key = node.slice[0].slice.value
                if isinstance(key, cst.SimpleString) and isinstance(key.evaluated_value, str):
                    return name_dim(key.evaluated_value)
            return None
        if isinstance(node, cst.UnaryOperation):
            return self.dim(node.expression, bound) if isinstance(node.operator, (cst.Minus, cst.Plus)) else None
        if isinstance(node, cst.BinaryOperation):
            op = {cst.Multiply: "*", cst.Divide: "/", cst.FloorDivide: "/", cst.Add: "+",
                  cst.Subtract: "-"}.get(type(node.operator))
            if op is None:
                return None
            return _combine(self.dim(node.left, bound), self.dim(node.right, bound), op)
        if isinstance(node, cst.Call):
            return self._call_dim(node, bound)
        if isinstance(node, (cst.List, cst.Tuple)):
            return self._same([e.value for e in node.elements], bound) if node.elements else None
        if isinstance(node, (cst.ListComp, cst.GeneratorExp)):
            names = set(bound)
            comp = node.for_in
            while comp is not None:
                names.update(_bound_names(comp.target))
                comp = comp.inner_for_in
            return self.dim(node.elt, frozenset(names))
        if isinstance(node, cst.IfExp):
            return self._same([node.body, node.orelse], bound)
        return None

    def _same(self, nodes, bound):
        result = LITERAL
        for node in nodes:
            result = _combine(result, self.dim(node, bound), "+")
            if result is None:
                return None
        return result

    def _call_dim(self, call: cst.Call, bound):
        name = dotted_name(call.func) or ""
        args = [a.value for a in call.args if not a.keyword and not a.star]
        if name == "len" and len(args) == 1:
            target = dotted_name(args[0]) or (dotted_name(args[0].func) if isinstance(args[0], cst.Call) else None)
            if target is None:
                return None
            last = target.rsplit(".", 1)[-1]
            if _loader_like(last):
                return _PER_EPOCH_STEPS
            if last.lower() in _DATASET_WORDS or any(t in ("dataset", "ds") for t in _tokens(last)):
                return _PER_EPOCH_SAMPLES
            return None
        if name in _UNIT_PRESERVING_CALLS and args:
            return self.dim(args[0], bound)
        if name in ("max", "min") and len(args) >= 2:
            return self._same(args, bound)
        last = name.rsplit(".", 1)[-1]
        if last and not args:
            found = name_dim(last)  # self.num_training_steps(), get_total_steps()
            return found if found in (_S, _E) else None
        return None


def _is_self(node) -> bool:
    return isinstance(node, cst.Name) and node.value == "self"


def _self_attribute_origin(model: Model, attr: str) -> Optional[cst.BaseExpression]:
    """The expression ``self.<attr>`` is assigned from, when that is its only binding in the module
    (``self.lr_decay_steps = max(max_steps // self.num_lr_decays, 1)`` in ``__init__``); None when it
    is bound twice, augmented, unpacked into, or an attribute of that name is set on another object."""
    found: List[cst.BaseExpression] = []
    for mention in model.mentions(attr):
        if not isinstance(mention, cst.Attribute) or mention.attr.value != attr:
            continue
        parent = model.parent(mention)
        if isinstance(parent, cst.AssignTarget):
            assign = model.parent(parent)
            if not _is_self(mention.value) or not isinstance(assign, cst.Assign) or len(assign.targets) != 1:
                return None
            found.append(assign.value)
        elif isinstance(parent, cst.AnnAssign) and parent.target is mention:
            if not _is_self(mention.value) or parent.value is None:
                return None
            found.append(parent.value)
        elif not _read(model, mention):
            return None
    return found[0] if len(found) == 1 else None


def _bound_names(target) -> List[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _bound_names(e.value)]
    return []


def unit_of(dim) -> Optional[str]:
    if dim is None or dim == LITERAL or dim[2] != 0:
        return None
    if dim[1] >= 1:
        return STEPS
    if dim == _E:
        return EPOCHS
    return None


# ---------------------------------------------------------------------------------------------------
# The size of a scheduler


def _short(model: Model, node: cst.CSTNode, limit: int = 60) -> str:
    text = " ".join(model.text(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _argument(call: cst.Call, keyword: str, position: int, optimizer_position: int) -> Optional[cst.BaseExpression]:
    """A size argument by keyword, or by position among the arguments after the optimizer."""
    if any(arg.star for arg in call.args):
        return _keyword(call, keyword)  # positions are unknown after ``*args``
    positional = []
    for arg in call.args:
        if arg.keyword is not None:
            if arg.keyword.value == keyword:
                return arg.value
        else:
            positional.append(arg.value)
    index = optimizer_position + 1 + position
    return positional[index] if index < len(positional) else None


def _keyword(call: cst.Call, keyword: str) -> Optional[cst.BaseExpression]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    return None


class Size:
    def __init__(self, unit: str, keyword: str, node: cst.CSTNode, scheduler: SchedulerObj,
                 origin: Optional[cst.CSTNode] = None, extra: str = "") -> None:
        self.unit = unit
        self.keyword = keyword
        self.node = node
        self.scheduler = scheduler
        self.origin = origin  # what a plain name was assigned from
        self.extra = extra  # more of the call worth showing (OneCycleLR's steps_per_epoch)


def _sizes(model: Model, scheduler: SchedulerObj, depth: int = 0) -> List[Size]:
    call = scheduler.site
    kind = scheduler.kind
    # a torch scheduler, or a project subclass whose constructor names its length (``max_epochs``)
    if not isinstance(call, cst.Call) or not (is_torch_scheduler(scheduler) or kind.size_args):
        return []
    origins: Dict[int, cst.BaseExpression] = {}
    for event in model.constructions(scheduler):
        origins = event.data.get("origins") or origins
        if origins:
            break
    units = Units(origins, model)
    optimizer_position = kind.optimizer_arg[1]
    found: List[Size] = []
    if kind.cls == "OneCycleLR":
        total = _argument(call, "total_steps", 1, optimizer_position)
        if total is not None and not (isinstance(total, cst.Name) and total.value == "None"):
            unit = unit_of(units.dim(total))
            return [Size(unit, "total_steps", total, scheduler)] if unit else []
        epochs = _argument(call, "epochs", 2, optimizer_position)
        per_epoch = _argument(call, "steps_per_epoch", 3, optimizer_position)
        if epochs is None or per_epoch is None:
            return []
        # The keywords document the units: epochs x steps per epoch = steps, unless steps_per_epoch=1.
        if isinstance(per_epoch, cst.Integer) and per_epoch.value == "1":
            epochs_dim = units.dim(epochs)
            unit = EPOCHS if epochs_dim in (_E, LITERAL) else None
        else:
            unit = STEPS
        extra = ", steps_per_epoch=" + " ".join(model.text(per_epoch).split())
        return [Size(unit, "epochs", epochs, scheduler, extra=extra)] if unit else []
    if kind.cls == "LambdaLR" and scheduler.qualname == f"{LR_SCHEDULER}.LambdaLR":
        size = _lambda_size(model, scheduler, call, units, origins)
        return [size] if size is not None else []
    for keyword, position in kind.size_args:
        node = _argument(call, keyword, position, optimizer_position)
        if node is None:
            continue
        unit = unit_of(units.dim(node))
        if unit is not None:
            origin = origins.get(id(node)) if isinstance(node, cst.Name) else None
            if isinstance(node, cst.Attribute) and _is_self(node.value) and name_dim(node.attr.value) is None:
                origin = _self_attribute_origin(model, node.attr.value)  # what told the unit
            found.append(Size(unit, keyword, node, scheduler, origin))
    if kind.composite and depth < 3:
        for child in scheduler.children:
            for option in some(child, SchedulerObj):
                found.extend(_sizes(model, option, depth + 1))
    return found


def _lambda_function(model: Model, node: cst.BaseExpression, origins: Dict[int, cst.BaseExpression]):
    """The lambda (or ``def``) given as ``lr_lambda``: (its parameter names, the expressions it
    returns, the node to show); None when it cannot be read (a list of lambdas, a method, a factory)."""
    if isinstance(node, cst.Name):
        origin = origins.get(id(node))
        if isinstance(origin, cst.Lambda):
            node = origin
        elif origin is None and _assigned_lambdas(model, node):
            # ``lf = one_cycle(...)`` in one branch, ``lf = lambda x: ...`` in the other: the lambdas
            # tell the size (a factory's own size is unknown, and ignored).
            lambdas = _assigned_lambdas(model, node)
            params = frozenset(p.name.value for lam in lambdas for p in lam.params.params)
            return params, [lam.body for lam in lambdas], lambdas[0]
        elif origin is None:
            defs = [d for d in _function_defs(model) if d.name.value == node.value]
            if len(defs) != 1:
                return None
            funcdef = defs[0]
            params = [p.name.value for p in list(funcdef.params.posonly_params) + list(funcdef.params.params)]
            returns = [r.value for r in _returns(funcdef) if r.value is not None]
            return (frozenset(params), returns, node) if params and returns else None
    if isinstance(node, cst.Lambda):
        params = [p.name.value for p in list(node.params.posonly_params) + list(node.params.params)]
        return (frozenset(params), [node.body], node) if params else None
    return None


def _assigned_lambdas(model: Model, name: cst.Name) -> List[cst.Lambda]:
    """The lambdas ``name`` is assigned in the function that uses it, when every other assignment of
    it there is a call (a factory of schedule functions); [] otherwise."""
    function = model.enclosing(name, cst.FunctionDef)
    lambdas: List[cst.Lambda] = []
    for mention in model.mentions(name.value):
        target = model.parent(mention)
        if not isinstance(mention, cst.Name) or not isinstance(target, cst.AssignTarget) \
                or model.enclosing(mention, cst.FunctionDef) is not function:
            continue
        value = model.parent(target).value
        if isinstance(value, cst.Lambda):
            lambdas.append(value)
        elif not isinstance(value, cst.Call):
            return []
    return lambdas



def _function_defs(model: Model) -> List[cst.FunctionDef]:
    found: List[cst.FunctionDef] = []

    class _Defs(cst.CSTVisitor):
        def visit_FunctionDef(self, n: cst.FunctionDef) -> None:
            found.append(n)

    model.module.visit(_Defs())
    return found


def _returns(funcdef: cst.FunctionDef) -> List[cst.Return]:
    found: List[cst.Return] = []

    class _Returns(cst.CSTVisitor):
        def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
            return n is funcdef  # not the returns of nested functions

        def visit_Lambda(self, n: cst.Lambda) -> bool:
            return False

        def visit_Return(self, n: cst.Return) -> None:
            found.append(n)

    funcdef.visit(_Returns())
    return found


def _free_parts(node: cst.CSTNode, params: frozenset) -> List[cst.BaseExpression]:
    """The largest sub-expressions of ``node`` that do not read the lambda's parameter: in
    ``(1 - x / epochs) ** 0.9`` they are ``1``, ``epochs`` and ``0.9``; the callee of a call is not one."""
    if not any(isinstance(n, cst.Name) and n.value in params for n in _names_in(node)):
        return [node]
    if isinstance(node, cst.Call):
        children = [a.value for a in node.args]
    else:
        children = _expression_children(node)
    parts: List[cst.BaseExpression] = []
    for child in children:
        if not isinstance(child, cst.Name) or child.value not in params:
            parts.extend(_free_parts(child, params))
    return parts


def _expression_children(node: cst.CSTNode) -> List[cst.CSTNode]:
    """Sub-expressions of the arithmetic a schedule lambda is made of."""
    if isinstance(node, cst.BinaryOperation):
        return [node.left, node.right]
    if isinstance(node, cst.UnaryOperation):
        return [node.expression]
    if isinstance(node, cst.BooleanOperation):
        return [node.left, node.right]
    if isinstance(node, cst.Comparison):
        return [node.left] + [c.comparator for c in node.comparisons]
    if isinstance(node, cst.IfExp):
        return [node.test, node.body, node.orelse]
    if isinstance(node, (cst.Tuple, cst.List)):
        return [e.value for e in node.elements]
    if isinstance(node, cst.Subscript):
        return [node.value] + [e.slice.value for e in node.slice if isinstance(e.slice, cst.Index)]
    if isinstance(node, cst.Attribute):
        return [node.value]
    return []


def _names_in(node: cst.CSTNode) -> List[cst.Name]:
    stack, found = [node], []
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Name):
            found.append(current)
        elif isinstance(current, cst.Attribute):
            stack.append(current.value)
        else:
            stack.extend(_expression_children(current) if not isinstance(current, cst.Call)
                         else [current.func] + [a.value for a in current.args])
    return found


def _lambda_size(model: Model, scheduler: SchedulerObj, call: cst.Call, units: "Units",
                 origins: Dict[int, cst.BaseExpression]) -> Optional[Size]:
    """LambdaLR: the unit of the quantities its lambda divides its position by (``lambda x: (1 - x /
    epochs) ** 0.9`` is sized in epochs, ``lambda step: min(1.0, step / warmup_steps)`` in steps), when
    every such quantity with a unit agrees."""
    argument_node = _argument(call, "lr_lambda", 0, scheduler.kind.optimizer_arg[1])
    if argument_node is None:
        return None
    function = _lambda_function(model, argument_node, origins)
    if function is None:
        return None
    params, bodies, shown = function
    found = {}
    for body in bodies:
        for part in _free_parts(body, params):
            unit = unit_of(units.dim(part))
            if unit is not None:
                found.setdefault(unit, part)
    if len(found) != 1:
        return None
    unit = next(iter(found))
    origin = shown if shown is not argument_node else None
    return Size(unit, "lr_lambda", argument_node, scheduler, origin)


def schedule_size(model: Model, scheduler: SchedulerObj) -> Optional[Size]:
    """The unit the schedule is sized in, when every size argument that tells agrees."""
    sizes = _sizes(model, scheduler)
    if not sizes or len({s.unit for s in sizes}) != 1:
        return None
    return sizes[0]


# ---------------------------------------------------------------------------------------------------
# How often a scheduler step runs

EPOCH_LOOP = "epoch"
BATCH_LOOP = "batch"
STEP_LOOP = "step"
OTHER_LOOP = "other"
_LITERAL_ITERABLES = (cst.List, cst.Tuple, cst.Set, cst.Dict, cst.SimpleString)
_BATCH_TARGETS = {"batch", "batches", "minibatch", "mb", "batch_idx", "batch_id", "batch_index", "bidx",
                  "data_batch", "i_batch", "batch_data"}
_STEP_TARGETS = {"step", "it", "iteration", "iter", "itr", "global_step", "update", "i_iter", "cur_iter"}
_EPOCH_TARGETS = {"epoch", "ep", "epoch_idx", "epoch_id", "i_epoch", "cur_epoch", "current_epoch", "e_idx"}
_WRAPPERS = ("enumerate", "tqdm", "tqdm.tqdm", "iter")
_DATA_WORDS = {"data", "train", "dataset", "sampler", "iterator", "pbar", "prefetcher", "inputs", "samples"}


def _identifiers(node, origins: Optional[Dict[int, cst.BaseExpression]] = None, depth: int = 0) -> List[str]:
    """Names and identifier-like strings of a loop header, not keyword arguments nor f-strings
    (``tqdm(loader, desc=f"epoch {epoch}/{epochs}")`` iterates the loader). A name assigned from an
    expression stands for that expression (``for _ in train_iterator`` with ``train_iterator =
    trange(num_epochs)``)."""
    found: List[str] = []
    origins = origins or {}

    class _Ids(cst.CSTVisitor):
        def visit_Arg(self, n: cst.Arg) -> bool:
            return n.keyword is None

        def visit_FormattedString(self, n: cst.FormattedString) -> bool:
            return False

        def visit_Name(self, n: cst.Name) -> None:
            origin = origins.get(id(n))
            if origin is not None and depth < 2:
                expanded = _identifiers(origin, origins, depth + 1)
                if any(_says_epochs(i) or _says_batches(i) for i in expanded):
                    found.extend(expanded)
                    return
            found.append(n.value)

        def visit_SimpleString(self, n: cst.SimpleString) -> None:
            value = n.evaluated_value
            if isinstance(value, str) and value.isidentifier():
                found.append(value)

    if node is not None:
        node.visit(_Ids())
    return found


def _says_epochs(identifier: str) -> bool:
    return name_dim(identifier) == _E or identifier.lower() in ("epochs", "nepochs")


def _says_batches(identifier: str) -> bool:
    return _loader_like(identifier) or name_dim(identifier) == _PER_EPOCH_STEPS


def loop_kind(loop: Loop) -> str:
    """What a loop iterates, from its header: epochs, batches, optimizer steps, or something else."""
    node = loop.node
    header = node.test if isinstance(node, cst.While) else node.iter
    names = _identifiers(header, loop.origins)
    targets = {t.rsplit(".", 1)[-1].lower() for t in loop.targets}
    dims = [name_dim(n) for n in names]
    epoch = any(_says_epochs(n) for n in names) or bool(targets & _EPOCH_TARGETS)
    batch = any(_says_batches(n) for n in names) or bool(targets & _BATCH_TARGETS)
    if epoch and not batch:
        return EPOCH_LOOP
    if batch and not epoch:
        return BATCH_LOOP if isinstance(node, cst.For) else OTHER_LOOP
    if epoch or batch:
        return OTHER_LOOP
    if isinstance(node, cst.For):
        if _S in dims or targets & _STEP_TARGETS:
            return STEP_LOOP
        iterated = header
        while isinstance(iterated, cst.Call) and dotted_name(iterated.func) in _WRAPPERS:
            if not iterated.args:
                break
            iterated = iterated.args[0].value
        if isinstance(iterated, _LITERAL_ITERABLES):
            return OTHER_LOOP
        if any(set(_tokens(n)) & _DATA_WORDS for n in names):
            return BATCH_LOOP
    return OTHER_LOOP


class Granularity:
    def __init__(self, kind: str, loop: Optional[Loop], optimizer_step: Optional[Event]) -> None:
        self.kind = kind
        self.loop = loop  # the batch loop (per batch) or the epoch loop (per epoch)
        self.optimizer_step = optimizer_step


def granularity(model: Model, step: Event, optimizer_steps: List[Event]) -> Optional[Granularity]:
    """Per batch, per epoch, or None when the trace does not tell."""
    candidates = [o for o in optimizer_steps if not exclusive(o, step)]
    loop = innermost_loop(step)
    if loop is None:
        return None
    kind = loop_kind(loop)
    if not optimizer_steps:
        return _by_loops_alone(model, step, loop, kind)
    if not candidates:
        return None
    same = [o for o in candidates if innermost_loop(o) is loop]
    nested = [o for o in candidates if innermost_loop(o) is not loop and loop in innermost_loop(o).ancestors()] \
        if all(innermost_loop(o) is not None for o in candidates) else []
    if same and len(same) == len(candidates):
        if any(model.iteration_dependent(a) for o in same for a in arms_not_shared(step, o)):
            return None  # ``if i % 100 == 0: scheduler.step()``: neither per batch nor per epoch
        if model.in_accumulate_context(step) != any(model.in_accumulate_context(o) for o in same):
            return None
        outer = [loop_kind(a) for a in loop.ancestors() if isinstance(a, Loop)]
        if kind == BATCH_LOOP or (kind == STEP_LOOP and EPOCH_LOOP in outer):
            return Granularity(PER_BATCH, loop, same[0])
        return None
    if nested and len(nested) == len(candidates):
        inner = {loop_kind(innermost_loop(o)) for o in nested}
        if EPOCH_LOOP in inner:
            return None
        if kind == EPOCH_LOOP or (kind == OTHER_LOOP and inner == {BATCH_LOOP} and isinstance(loop.node, cst.For)):
            return Granularity(PER_EPOCH, loop, nested[0])
    return None


def _by_loops_alone(model: Model, step: Event, loop: Loop, kind: str) -> Optional[Granularity]:
    """No optimizer step in sight (it runs in an imported helper or a framework): the loop headers
    alone tell, when they plainly say epochs (``for epoch in range(args.epochs)``) or batches inside
    an epoch loop."""
    outer = [a for a in loop.ancestors() if isinstance(a, Loop)]
    if kind == EPOCH_LOOP and not any(loop_kind(a) in (BATCH_LOOP, STEP_LOOP) for a in outer):
        return Granularity(PER_EPOCH, loop, None)
    if kind == BATCH_LOOP and any(loop_kind(a) == EPOCH_LOOP for a in outer):
        if any(model.iteration_dependent(a) for a in step.arms() if loop in a.ancestors()):
            return None
        return Granularity(PER_BATCH, loop, None)
    return None


# ---------------------------------------------------------------------------------------------------
# Schedulers stepped by a framework: Lightning steps what ``configure_optimizers`` returns once per
# epoch unless its config says ``"interval": "step"``; the HF Trainer steps ``optimizers=(opt, sched)``
# after every optimizer step.

_LIGHTNING = ("lightning", "pytorch_lightning")
_HF_TRAINERS = frozenset({"transformers.Trainer", "transformers.Seq2SeqTrainer", "transformers.trainer.Trainer",
                          "trl.SFTTrainer", "trl.Trainer"})


class FrameworkStep:
    """A scheduler handed to a framework that steps it (``node``: the return or the call)."""

    def __init__(self, kind: str, node: cst.CSTNode, how: str) -> None:
        self.kind = kind
        self.node = node
        self.how = how


def _scheduler_config(value, scheduler: SchedulerObj, depth: int = 0):
    """In a value returned by ``configure_optimizers``: the dict holding ``scheduler`` under the
    ``"scheduler"`` key (a Lightning scheduler config), True when ``scheduler`` is returned bare (a
    list, a tuple, ``"lr_scheduler": scheduler``), None when not found."""
    bare = False
    for option in value.options():
        if option is scheduler:
            return True
        if isinstance(option, V.Container) and depth < 4:
            if option.keys is not None:
                for key, item in zip(option.keys, option.items):
                    if key == "scheduler" and any(o is scheduler for o in item.options()):
                        return option
            for item in option.items:
                found = _scheduler_config(item, scheduler, depth + 1)
                if isinstance(found, V.Container):
                    return found
                bare = bare or found is True
    return True if bare else None


def _closed_config(model: Model, config: V.Container, funcdef: cst.FunctionDef) -> bool:
    """Whether a scheduler config holds only the items the returning function shows: built from a
    dict literal there (no ``**other``) that reaches a ``return`` through literals and locals, each
    local used only to set or read an item under a literal key (``config["interval"] = "step"``, which
    the interpreter follows) or to be returned. Passed to a call, updated by a method, deleted from,
    aliased or closed over: other keys may be set where we cannot see, so the interval is unknown."""
    site = config.site
    if not isinstance(site, cst.Dict) or None in config.keys or model.enclosing(site, cst.FunctionDef) is not funcdef:
        return False
    return _reaches_return(model, site, funcdef, 0)


def _reaches_return(model: Model, node: cst.CSTNode, funcdef: cst.FunctionDef, depth: int) -> bool:
    """``node`` is an item of literals that is returned, or is bound to a local that only is."""
    parent = model.parent(node)
    while isinstance(parent, (cst.Element, cst.DictElement)) and parent.value is node:
        node = model.parent(parent)  # the list, tuple or dict literal holding it
        parent = model.parent(node)
    if isinstance(parent, cst.Return):
        return True
    if isinstance(parent, cst.Assign) and len(parent.targets) == 1:
        target = parent.targets[0].target
    elif isinstance(parent, cst.AnnAssign) and parent.value is node:
        target = parent.target
    else:
        return False
    if not isinstance(target, cst.Name) or depth >= 4:
        return False
    for mention in model.mentions(target.value):
        if not isinstance(mention, cst.Name) or not _within(model, mention, funcdef):
            continue  # ``self.config`` or another function's own local of that name
        if model.enclosing(mention, cst.FunctionDef) is not funcdef or not _plain_use(model, mention, funcdef, depth):
            return False
    return True


def _plain_use(model: Model, mention: cst.Name, funcdef: cst.FunctionDef, depth: int) -> bool:
    """A use of a config's local that cannot add keys the interpreter does not see."""
    parent = model.parent(mention)
    if isinstance(parent, cst.AssignTarget) or isinstance(parent, cst.AnnAssign) and parent.target is mention:
        return True  # a binding: the interpreter knows which dict each use then holds
    if isinstance(parent, cst.Subscript) and parent.value is mention:
        if len(parent.slice) != 1 or not isinstance(parent.slice[0].slice, cst.Index) \
                or not isinstance(parent.slice[0].slice.value, cst.SimpleString):
            return False
        holder = model.parent(parent)
        return isinstance(holder, cst.AssignTarget) or _read(model, parent)
    if isinstance(parent, (cst.Element, cst.DictElement, cst.Return)):
        return _reaches_return(model, mention, funcdef, depth + 1)
    return False


def _read(model: Model, node: cst.CSTNode) -> bool:
    """``node`` is read, not a target of ``del``, ``+=``, unpacking, ``for`` or ``as``."""
    parent = model.parent(node)
    while isinstance(parent, (cst.Element, cst.StarredElement, cst.Tuple, cst.List)):
        node, parent = parent, model.parent(parent)
    if isinstance(parent, (cst.Del, cst.AssignTarget, cst.AsName)):
        return False
    if isinstance(parent, (cst.AugAssign, cst.For, cst.CompFor)) and parent.target is node:
        return False
    return True


def _within(model: Model, node: cst.CSTNode, ancestor: cst.CSTNode) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = model.parent(node)
    return False


def framework_steps(model: Model, scheduler: SchedulerObj) -> List[FrameworkStep]:
    result: List[FrameworkStep] = []
    for event in model.events:
        if event.kind != "handoff" or event.target is not scheduler:
            continue
        how, value = event.data.get("how"), event.data.get("value")
        if (how == "returned" and value is not None and event.funcdef is not None
                and event.funcdef.name.value == "configure_optimizers"
                and any(model.imports.mentions(m) for m in _LIGHTNING)
                and not model.mentions("automatic_optimization")):
            config = _scheduler_config(value, scheduler)
            if config is True:
                result.append(FrameworkStep(PER_EPOCH, event.node, "returned to Lightning without an `interval` "
                                            "(the default is \"epoch\")"))
            elif isinstance(config, V.Container) and _closed_config(model, config, event.funcdef):
                # Reported at the config, where the interval belongs, when it is built before the return.
                where = event.node if _within(model, config.site, event.node) else config.site
                interval = dict(zip(config.keys, config.items)).get("interval")
                if interval is None:
                    result.append(FrameworkStep(PER_EPOCH, where, "returned to Lightning without an "
                                                "`interval` (the default is \"epoch\")"))
                elif isinstance(interval, Const) and interval.value in ("step", "epoch"):
                    kind = PER_BATCH if interval.value == "step" else PER_EPOCH
                    result.append(FrameworkStep(kind, where, f"returned to Lightning with "
                                                f"`\"interval\": \"{interval.value}\"`"))
        elif how == "passed" and isinstance(event.node, cst.Call):
            if model.imports.resolve_expr(event.node.func) in _HF_TRAINERS and any(
                a.keyword is not None and a.keyword.value == "optimizers" for a in event.node.args
            ):
                result.append(FrameworkStep(PER_BATCH, event.node, "handed to the transformers Trainer"))
    return result


# ---------------------------------------------------------------------------------------------------


class StepGranularityMismatch(StaticRule):
    """LR009: a schedule sized in epochs stepped per batch, or sized in steps stepped per epoch."""

    code = "LR009"

    def check(self, model: Model) -> Iterable[Report]:
        for scheduler in model.schedulers:
            if scheduler.parent is not None or not scheduler.kind.size_args and not scheduler.kind.composite \
                    and scheduler.kind.cls != "LambdaLR":
                continue
            steps = [s.event for s in model.scheduler_steps if s.scheduler is scheduler]
            if any(isinstance(e.call, cst.Call) and e.call.args for e in steps):
                continue  # ``step(epoch)`` sets the position itself
            size = schedule_size(model, scheduler)
            if size is None:
                continue
            found: List[Tuple[Event, Granularity]] = []
            for event in steps:
                optimizer_steps = model.steps_of_optimizers(model.optimizers_of(scheduler), event.root)
                grain = granularity(model, event, optimizer_steps)
                if grain is not None:
                    found.append((event, grain))
            handed = framework_steps(model, scheduler) if not steps else []
            if len({g.kind for _, g in found} | {h.kind for h in handed}) != 1:
                continue  # never told, or stepped at both granularities (a configuration switch)
            seen = set()
            for event, grain in found:
                if id(event.node) in seen:
                    continue
                seen.add(id(event.node))
                if grain.kind == PER_BATCH and size.unit == EPOCHS:
                    yield self.report(event.node, self._per_batch(model, scheduler, event, grain, size))
                elif grain.kind == PER_EPOCH and size.unit == STEPS:
                    yield self.report(event.node, self._per_epoch(model, scheduler, event, grain, size))
            for hand in handed:
                if id(hand.node) in seen or (hand.kind == PER_BATCH) != (size.unit == EPOCHS):
                    continue
                seen.add(id(hand.node))
                yield self.report(hand.node, self._framework(model, hand, size))

    @staticmethod
    def _size_text(model: Model, size: Size) -> str:
        text = _short(model, size.node) + size.extra
        if size.origin is not None:
            text += f"` = `{_short(model, size.origin)}"
        return f"`{size.keyword}={text}`, line {model.line(size.node)}"

    def _framework(self, model, hand: FrameworkStep, size: Size) -> str:
        name = describe_scheduler(size.scheduler)
        if hand.kind == PER_BATCH:
            return (f"{name} is sized in epochs ({self._size_text(model, size)}) but {hand.how}, so it steps "
                    "once per optimizer step: the schedule is used up after that many batches; size it in "
                    "optimizer steps")
        return (f"{name} is sized in optimizer steps ({self._size_text(model, size)}) but {hand.how}, so it "
                "steps once per epoch: only the start of the schedule is ever used; set "
                "`\"interval\": \"step\"` in its scheduler config")

    def _per_batch(self, model, scheduler, event, grain, size) -> str:
        name = describe_scheduler(size.scheduler)
        loop_text = " ".join(grain.loop.iter_text.split())
        loop_text = loop_text if len(loop_text) <= 50 else loop_text[:47] + "..."
        with_step = (f", with `{model.text(grain.optimizer_step.node).strip()[:40]}`"
                     if grain.optimizer_step is not None else "")
        return (f"`{receiver_text(model, event.call)}.step()` runs once per batch (in the loop over "
                f"`{loop_text}`{with_step}), but {name} is sized in epochs ({self._size_text(model, size)}): "
                "the schedule is used up after that many batches; size it in optimizer steps "
                "(epochs * len(loader)) or step it once per epoch")

    def _per_epoch(self, model, scheduler, event, grain, size) -> str:
        name = describe_scheduler(size.scheduler)
        if grain.optimizer_step is not None:
            where = (f"runs once per epoch while `{model.text(grain.optimizer_step.node).strip()[:40]}` "
                     f"(line {model.line(grain.optimizer_step.node)}) runs per batch")
        else:
            loop_text = " ".join(grain.loop.iter_text.split())
            loop_text = loop_text if len(loop_text) <= 50 else loop_text[:47] + "..."
            where = f"runs once per epoch (in the loop over `{loop_text}`)"
        return (f"`{receiver_text(model, event.call)}.step()` {where}, but {name} is sized in optimizer steps "
                f"({self._size_text(model, size)}): only the start of the schedule is ever used; step it after "
                "every optimizer step or size it in epochs")
