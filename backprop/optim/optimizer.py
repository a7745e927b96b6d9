"""``Optimizer``: the parameters to update, grouped, and each parameter's state.

Every update rule (``sgd.py``, ``adam.py``, ...) subclasses ``Optimizer`` and writes
only ``step()``. The base class holds what they share, as in ``torch.optim``:

- ``param_groups``: a list of dicts, each with ``"params"`` (a list of Tensors) and
  the rule's hyperparameters (``"lr"``, ...), so that groups may differ in them;
- ``state``: a dict from parameter to that parameter's state (moment estimates,
  step count), filled in by the rule on its first step;
- ``zero_grad()``, ``add_param_group()``, ``state_dict()``, ``load_state_dict()``;
- the hyperparameters' checks, as ``torch.optim``'s (NaN refused too), for every group
  added and every ``state_dict`` loaded.

Rules update ``p.data`` in place and never write into ``p.grad``. Their temporaries
live in preallocated work arrays (``_scratch``), one set per parameter, so a step
allocates nothing once the first step has run.
"""

import numbers
from collections import defaultdict

from backprop.backend import xp
from backprop.tensor import Tensor

# torch.optim's range checks, one per hyperparameter name (the same in every rule), written
# `not 0 <= value` as torch writes them, so NaN is refused too.
_AT_LEAST_ZERO = {
    "lr": "learning rate",
    "momentum": "momentum value",
    "eps": "epsilon value",
    "weight_decay": "weight_decay value",
    "alpha": "alpha value",
    "lr_decay": "lr_decay value",
    "initial_accumulator_value": "initial_accumulator_value value",
}
_FLAGS = ("nesterov", "maximize", "amsgrad", "centered")

_UNORDERED = (
    "optimizer parameters need to be organized in ordered collections, but the "
    "ordering of tensors in sets will change between runs; use a list instead"
)


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of Tensors, or of dicts (parameter groups) each with a
    ``"params"`` entry and any hyperparameters that differ from ``defaults``.
    """

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors "
                "or dicts, but got a Tensor"
            )
        if isinstance(params, set):
            raise TypeError(_UNORDERED)
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        self._work = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group):
        """Add a group of parameters, with hyperparameters defaulting to ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, set):
            raise TypeError(_UNORDERED)
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear more than once in the optimizer's parameter groups")
        group = {**self.defaults, **param_group, "params": params}
        _check_hyperparameters(group)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: set ``p.grad`` to None (or fill it with zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.fill(0)

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        raise NotImplementedError

    def _scratch(self, p, i=0):
        """The i-th work array of parameter ``p`` (same shape and dtype), allocated once."""
        work = self._work.get((p, i))
        if work is None or work.shape != p.data.shape or work.dtype != p.data.dtype:
            work = self._work[p, i] = xp.empty_like(p.data)
        return work

    def _weight_decayed(self, p, g, lam, slot=1):
        """g + λθ (L2 weight decay entering the gradient) in work array ``slot``; g when λ = 0."""
        if lam == 0:
            return g
        return xp.add(g, xp.multiply(p.data, lam, out=self._scratch(p, 1 - slot)), out=self._scratch(p, slot))

    def state_dict(self):
        """A snapshot of the optimizer in PyTorch's form, storable without pickle.

        ``{"state": {index: {name: ndarray or number}}, "param_groups": [{hyperparameters...,
        "params": [index, ...]}]}``, where parameters are numbered in group order. The
        arrays are copies; tuples become lists.
        """
        index = {}
        param_groups = []
        for group in self.param_groups:
            packed = {key: _plain(value) for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            param_groups.append(packed)
        state = {
            index[id(p)]: {name: _plain(value) for name, value in values.items()}
            for p, values in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``: hyperparameters per group and a copy of each state."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} parameter groups; "
                f"this optimizer has {len(self.param_groups)}"
            )
        params = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"state_dict's parameter group {i} has {len(saved['params'])} parameters; "
                    f"this optimizer's has {len(group['params'])}"
                )
            params.update(zip((int(k) for k in saved["params"]), group["params"]))
        state = defaultdict(dict)
        for key, values in state_dict["state"].items():
            p = params[int(key)]
            state[p] = {name: _restored(value, p, name) for name, value in values.items()}
        restored = []
        for group, saved in zip(self.param_groups, saved_groups):
            values = {key: tuple(value) if isinstance(group.get(key), tuple) else value
                      for key, value in saved.items() if key != "params"}
            _check_hyperparameters({**group, **values})
            restored.append(values)
        self.state = state
        for group, values in zip(self.param_groups, restored):
            group.update(values)


def _check_hyperparameters(group):
    """Raise as ``torch.optim``'s constructors do for a hyperparameter out of range (NaN
    included), and ``TypeError`` for one that is not a real number (or a bool flag)."""
    for key, value in group.items():
        if key in _AT_LEAST_ZERO:
            _check_real(key, value)
            if not 0.0 <= value:
                raise ValueError(f"Invalid {_AT_LEAST_ZERO[key]}: {value}")
        elif key == "dampening":
            _check_real(key, value)
            if value != value:  # torch lets a NaN dampening through; it would poison every step
                raise ValueError(f"Invalid dampening value: {value}")
        elif key in _FLAGS and not isinstance(value, (bool, xp.bool_)):
            raise TypeError(f"{key} must be True or False; got {value!r}")
    if "betas" in group:
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        for i, beta in enumerate(betas):
            _check_real(f"betas[{i}]", beta)
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    if group.get("nesterov") and (group["momentum"] <= 0 or group["dampening"] != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def _check_real(name, value):
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")


def _plain(value):
    """``value`` as ndarrays, Python numbers, strings, bools, lists and None only."""
    if isinstance(value, xp.ndarray):
        return value.copy()
    if isinstance(value, xp.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _restored(value, p, name):
    """A saved state entry for parameter ``p``: float arrays copied in ``p``'s dtype."""
    if isinstance(value, xp.generic):
        return value.item()
    if not isinstance(value, xp.ndarray):
        return value
    if value.dtype.kind != "f":  # a step count, saved as a 0-d integer array
        return value.item() if value.ndim == 0 else value.copy()
    if value.shape != p.data.shape:
        raise ValueError(
            f"state_dict's state {name!r} has shape {value.shape}; its parameter has shape {p.data.shape}"
        )
    return value.astype(p.data.dtype, copy=True)
