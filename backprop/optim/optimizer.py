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

A rule writes only ``_update(group, param, grad, state, scratch)``: its math on arrays,
updating ``param`` and the arrays of ``state`` in place, never writing into ``grad``.
Its temporaries are named work arrays (``Scratch``), allocated once, so a step allocates
nothing after the first.

``foreach`` and ``fused`` (as in ``torch.optim``): the group's parameters, gradients and
state become views of one flat contiguous buffer each (``FlatGroup``), and the rule runs
once on the flat arrays, a handful of NumPy calls whatever the number of layers. With
``fused`` a rule with a compiled kernel (``_fused.py``, Numba) updates in one pass over
memory instead of one pass per arithmetic operation; ``fused=None`` (the default) means
fused for a flat group of at least ``FUSED_FROM`` elements when Numba is installed, and
for any flat group once a step compiled by Numba (``compile_step(numba=True)``) uses the
optimizer. A step falls back to the per-parameter loop when the flat form does not apply
(a parameter without a gradient, parameters of different dtypes or step counts).
"""

import functools
import importlib.util
import numbers
from collections import defaultdict
from operator import attrgetter, getitem, is_

from backprop import backend
from backprop.backend import xp
from backprop.tensor import Tensor, grad_assignments

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
        self._scratch = {}  # parameter -> Scratch
        self._flat = {}  # id of a param group -> FlatGroup
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __getstate__(self):
        """For pickle and deepcopy (scikit-learn's estimators): without what a step rebuilds,
        the work arrays, the flat buffers and ``fit``'s compiled step (which holds closures)."""
        return {**self.__dict__, "_scratch": {}, "_flat": {}}

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
                    p.grad.data.fill(0)

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        loss = None if closure is None else closure()
        for group in self.param_groups:
            flat = self.flat_buffers(group)
            if flat is not None and flat.gather_grads():
                fused = _fuses(group, flat, self._fused_by_default) and self._fused_update
                (fused or self._update)(group, flat.param, flat.grad, flat.state, flat.scratch)
                flat.share_state(self.state)
                continue
            for p in group["params"]:
                if p.grad is not None:
                    scratch = self._scratch.get(p) or self._scratch.setdefault(p, Scratch())
                    self._update(group, p.data, p.grad.data, self.state[p], scratch)
        return loss

    def _update(self, group, param, grad, state, scratch):
        """The rule: update the array ``param`` (and ``state``) in place from ``grad``."""
        raise NotImplementedError

    _fused_update = None  # a rule with a one-pass kernel sets this to its method
    _flat_by_default = False  # foreach=None means flat buffers once a compiled step uses this optimizer
    _fused_by_default = False  # fused=None means fused whatever the size once a Numba-compiled step uses it

    def use_flat_buffers(self, fused=False):
        """From now on, groups with ``foreach=None`` update in flat buffers (and, with
        ``fused``, with the rule's Numba kernel whatever their size): what a compiled step
        asks of its optimizer, whose gradients it writes into the flat buffer."""
        self._flat_by_default = True
        self._fused_by_default = self._fused_by_default or fused

    def flat_buffers(self, group):
        """The ``FlatGroup`` that ``group`` updates in (``flat_group``), or None when it
        updates parameter by parameter."""
        foreach = group.get("foreach")
        if foreach or group.get("fused") or (foreach is None and self._flat_by_default):
            return self.flat_group(group)
        return None

    def flat_group(self, group):
        """The ``FlatGroup`` of ``group``, built (or rebuilt, if a parameter or its state was
        replaced) now; None when its parameters cannot share one buffer."""
        flat = self._flat.get(id(group))
        if flat is not None and flat.valid(self.state):
            return flat
        flat = FlatGroup.of(group["params"], self.state)
        if flat is None:
            self._flat.pop(id(group), None)
        else:
            self._flat[id(group)] = flat
        return flat

    @staticmethod
    def _weight_decayed(param, grad, lam, scratch):
        """g + λθ (L2 weight decay entering the gradient) in the work array "grad"; g when λ = 0."""
        if lam == 0:
            return grad
        decay = xp.multiply(param, lam, out=scratch("decay", param))
        return xp.add(grad, decay, out=scratch("grad", param))

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
            if not 0.0 <= value < float("inf"):  # torch takes an infinite one; every weight would become inf or NaN
                raise ValueError(f"Invalid {_AT_LEAST_ZERO[key]}: {value}")
        elif key == "dampening":
            _check_real(key, value)
            if not abs(value) < float("inf"):  # torch lets a NaN dampening through; it would poison every step
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


# fused=None on the flat path means fused from this many elements on, when Numba is installed:
# at 235,146 float32 weights Numba's Adam loop takes ~96 us against ~350 us for NumPy's 12
# passes, so importing Numba and loading its cached kernel (~1 s in a fresh process) pays
# for itself within ~4,000 steps; a small group (digits' 9,610 weights: 17 against 34 us a
# step) would need ~60,000, so below this size it stays NumPy (bench/NOTES.md, issue 12).
FUSED_FROM = 1 << 17


def _fuses(group, flat, by_default=False):
    """Whether ``group``'s flat update runs the rule's Numba kernel: ``fused=True`` (Numba
    required), or ``fused=None`` with at least ``FUSED_FROM`` elements and Numba installed,
    or ``by_default`` (a Numba-compiled step has paid for importing Numba already)."""
    fused = group.get("fused")
    if fused is None:
        return (by_default or flat.param.size >= FUSED_FROM) and _numba_installed()
    return bool(fused) and _require_numba()


@functools.cache
def _numba_installed():
    """Whether Numba is installed (looked up once, without importing it)."""
    return importlib.util.find_spec("numba") is not None


def prepare_fused(dtype):
    """Compile the one-pass update kernels for ``dtype`` now (or load them from the disk
    cache), so that a step switching to them later does not wait."""
    from backprop.optim import _fused

    _fused.prepare(xp.dtype(dtype))


def _require_numba(option="fused=True"):
    try:
        import numba  # noqa: F401
    except ImportError:
        raise ImportError(f"{option} compiles with Numba, a dependency of backprop that is not installed "
                          "here: pip install 'numba>=0.60,<0.70'") from None
    return True


class Scratch:
    """Named work arrays, each allocated once: ``scratch("sqrt_v", like)`` is an array of
    ``like``'s shape and dtype that holds whatever the rule last put there."""

    def __init__(self):
        self.arrays = {}

    def __call__(self, name, like):
        array = self.arrays.get(name)
        if array is None or array.shape != like.shape or array.dtype != like.dtype:
            array = self.arrays[name] = xp.empty_like(like)
        return array


class FlatGroup:
    """A parameter group as flat contiguous buffers: ``param`` and ``grad`` (1-D), and
    ``state`` (the rule's arrays, 1-D, and its step count). Each parameter's ``.data``
    and each of its state arrays become views of a slice of them, so updating the flat
    arrays updates every parameter; ``gather_grads`` copies the gradients in, unless
    ``p.grad`` already is its view of ``grad`` (a compiled step writes there). Each view
    starts on a multiple of ``backend.ALIGN`` bytes, so that the products writing into them
    run at full speed; the elements between views start at zero and belong to no parameter."""

    def __init__(self, params, state):
        self.params = params
        self.no_state = [()] * len(params)  # what valid() takes for a parameter without state
        dtype = params[0].data.dtype
        step = backend.ALIGN // dtype.itemsize
        self.bounds, end = [], 0
        for p in params:
            start = -(-end // step) * step
            end = start + p.data.size
            self.bounds.append((start, end))
        self.param = self._zeros(end, dtype)
        self.grad = self._zeros(end, dtype)
        self.param_views = self.views(self.param)
        for p, view in zip(params, self.param_views):
            view[...] = p.data
            p.data = view
        self.grad_views = self.views(self.grad)
        self.gathered = None  # grad_assignments() when every p.grad was its view of grad
        self.scratch = Scratch()
        self.state, self.state_views = {}, {}
        self.view_keys, self.view_list = [], []
        states = [state.get(p, {}) for p in params]
        for key, value in states[0].items():
            if isinstance(value, xp.ndarray) and value.ndim and value.dtype.kind == "f":
                self.state[key] = self._zeros(self.param.size, self.param.dtype)
                views = self.views(self.state[key])
                for view, values in zip(views, states):
                    view[...] = values[key]
            else:
                self.state[key] = value
        self.share_state(state)

    @classmethod
    def of(cls, params, state):
        """The flat form of ``params``, or None when they differ in dtype, state or step, or
        are not on the CPU (the flat buffers and fused kernels are NumPy-only)."""
        if not params or len({p.data.dtype for p in params}) != 1 or params[0].device != "cpu":
            return None
        states = [state.get(p, {}) for p in params]
        if any(set(s) != set(states[0]) for s in states):
            return None
        plain = [{k: v for k, v in s.items() if not isinstance(v, xp.ndarray) or not v.ndim} for s in states]
        if any(values != plain[0] for values in plain):  # e.g. parameters that stepped different times
            return None
        return cls(params, state)

    @staticmethod
    def _zeros(size, dtype):
        flat = backend.empty_aligned(size, dtype)
        flat[...] = 0
        return flat

    def views(self, flat):
        """Each parameter's slice of the flat array ``flat``, in the parameter's shape."""
        return [flat[start:stop].reshape(p.data.shape) for p, (start, stop) in zip(self.params, self.bounds)]

    def valid(self, state):
        """Whether every parameter and state array is still the view this group made (one
        identity test per array, by C-level ``map``: this runs every step)."""
        if not all(map(is_, map(_DATA, self.params), self.param_views)):
            return False
        dicts = list(map(state.get, self.params, self.no_state))
        if not all(map(len(self.state).__eq__, map(len, dicts))):
            return False
        try:
            return all(map(is_, map(getitem, dicts * len(self.state_views), self.view_keys), self.view_list))
        except KeyError:  # a parameter's state has other names than this group's
            return False

    def gather_grads(self):
        """Copy the parameters' gradients into ``grad``; False if one has none."""
        if self.gathered == grad_assignments():  # every p.grad is still its view of grad
            return True
        views = 0
        for g, view in zip(map(_GRAD, self.params), self.grad_views):
            if g is None:
                return False
            if g.data is view:  # a compiled step wrote it in place
                views += 1
            else:
                view[...] = g.data
        self.gathered = grad_assignments() if views == len(self.params) else None
        return True

    def share_state(self, state):
        """Give each parameter its views of new state arrays (after a first step) and the
        step count."""
        for key, value in self.state.items():
            if not (isinstance(value, xp.ndarray) and value.ndim):
                for p in self.params:
                    state[p][key] = value
            elif key not in self.state_views:
                value = self.state[key] = backend.aligned(value)  # made by the rule: onto the boundary
                self.state_views[key] = self.views(value)
                for p, view in zip(self.params, self.state_views[key]):
                    state[p][key] = view
                self.view_keys += [key] * len(self.params)  # valid()'s (name, view) pairs, in order
                self.view_list += self.state_views[key]


_DATA, _GRAD = attrgetter("data"), attrgetter("grad")


def _plain(value):
    """``value`` as ndarrays, Python numbers, strings, bools, lists and None only."""
    if isinstance(value, backend.namespace(value).ndarray):
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
    return backend.to_device(value.astype(p.data.dtype, copy=True), p.device)
