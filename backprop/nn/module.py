"""``Module``, ``Parameter`` and ``Sequential``: the containers a network is built from.

A Module's parameters and submodules are its attributes: assigning a ``Parameter`` or
a ``Module`` to ``self.name`` registers it, in assignment order (the instance's
``__dict__`` keeps that order). ``named_parameters()`` walks the tree and names each
parameter by its path (``"0.weight"``), as PyTorch does.

Built-in modules can also describe their architecture as JSON-able data
(``config()``), and ``from_config`` rebuilds them from it by looking the type up in
a fixed table of the library's own classes: nothing named in a file is ever imported
or evaluated.
"""

import contextlib
from collections import namedtuple

from backprop import backend
from backprop.backend import xp
from backprop.tensor import Tensor, no_grad

_BUILTIN = {}  # type name -> class: the only classes from_config builds
_edits = 0  # counts the attributes set on any Module: a captured step's guard looks here first


def builtin(cls):
    """Register a library class so that ``config()`` describes it and ``from_config`` builds it."""
    _BUILTIN[cls.__name__] = cls
    return cls


class Parameter(Tensor):
    """A Tensor that is a trainable parameter of a Module (``requires_grad=True`` by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers, losses and networks: subclasses set attributes and define ``forward``."""

    training = True

    def __setattr__(self, name, value):
        global _edits
        object.__setattr__(self, name, value)
        _edits += 1

    def __delattr__(self, name):
        global _edits
        object.__delattr__(self, name)
        _edits += 1

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- the tree ----------------------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix=""):
        """This module and every module below it, each once, with its dotted path."""
        seen = set()

        def walk(module, path):
            if id(module) in seen:
                return
            seen.add(id(module))
            yield path, module
            for name, child in module.named_children():
                yield from walk(child, f"{path}.{name}" if path else name)

        yield from walk(self, prefix)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter of the tree, each once."""
        seen = set()
        for path, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{path}.{name}" if path else name), value

    def parameters(self):
        for _, parameter in self.named_parameters():
            yield parameter

    def apply(self, fn):
        """Call ``fn(module)`` on every module of the tree (children first), as PyTorch; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- mode, gradients, dtype ------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (Dropout active) for this module and all below it; returns self."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Forget the accumulated gradients (set them to None, or to zeros)."""
        for parameter in self.parameters():
            if set_to_none or parameter.grad is None:
                parameter.grad = None
            else:
                parameter.grad.data[...] = 0

    def to(self, device_or_dtype):
        """Move every parameter (and gradient) to a device ("cpu" or "cuda"), or convert it to
        a floating dtype, keeping the Parameter objects; returns self. An optimizer's state
        is made from the parameters on its first step, so build or step it after the move
        (as in PyTorch); ``Optimizer.load_state_dict`` puts saved state on their device."""
        if isinstance(device_or_dtype, str) and device_or_dtype.startswith(backend.DEVICES):
            device = backend.check_device(device_or_dtype)
            for parameter in self.parameters():
                parameter.data = backend.to_device(parameter.data, device)
                if parameter.grad is not None:
                    parameter.grad = Tensor(backend.to_device(parameter.grad.data, device))
            return self
        dtype = xp.dtype(device_or_dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to: expected a floating-point dtype; got {dtype}")
        for parameter in self.parameters():
            parameter.data = parameter.data.astype(dtype)
            if parameter.grad is not None:
                parameter.grad = Tensor(parameter.grad.data.astype(dtype))
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def double(self):
        return self.to(xp.float64)

    def float(self):
        return self.to(xp.float32)

    # -- weights as data -----------------------------------------------------------------
    def state_dict(self):
        """{dotted name: the parameter's values}, as PyTorch: detached Tensors sharing the
        parameters' memory, so later training changes them too (``clone()`` them, or save
        them, to keep a snapshot)."""
        return {name: parameter.detach() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of ``state_dict`` into the parameters, in place (optimizers keep
        their references). Every shape is checked before anything is copied. With
        ``strict``, the keys must match exactly; arrays from another device are moved to the
        parameters'. Returns (missing_keys, unexpected_keys)."""
        parameters = dict(self.named_parameters())
        missing = [name for name in parameters if name not in state_dict]
        unexpected = [name for name in state_dict if name not in parameters]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict: the state dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        values = {}
        for name, parameter in parameters.items():
            if name in state_dict:
                value = state_dict[name]
                value = value.data if isinstance(value, Tensor) else value
                if backend.device(value) == "cpu":  # host data of any kind (lists too) as an array
                    value = xp.asarray(value)
                value = backend.to_device(value, parameter.device)
                if value.shape != parameter.shape:
                    raise ValueError(
                        f"load_state_dict: {name} has shape {parameter.shape} in the model, "
                        f"but {value.shape} in the state dict"
                    )
                values[name] = value
        for name, value in values.items():
            parameters[name].data[...] = value
        return IncompatibleKeys(missing, unexpected)

    # -- architecture as data --------------------------------------------------------------
    def _args(self):
        """The constructor arguments of a built-in module (shown by repr, saved by config)."""
        return {}

    def _check_builtin(self):
        if _BUILTIN.get(type(self).__name__) is not type(self):
            raise NotImplementedError(
                f"{type(self).__name__} is a user-defined Module, so its architecture cannot be "
                "written as data; save its state_dict() and rebuild the model with your own code"
            )

    def config(self):
        """The architecture as JSON-able data: ``{"type": "Linear", "args": {...}}``."""
        self._check_builtin()
        return {"type": type(self).__name__, "args": self._args()}

    # -- repr ----------------------------------------------------------------------------
    def extra_repr(self):
        return ", ".join(f"{key}={value!r}" for key, value in self._args().items())

    def __repr__(self):
        extra = self.extra_repr().splitlines()
        children = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        if not children and len(extra) <= 1:
            return f"{type(self).__name__}({''.join(extra)})"
        lines = extra + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


@builtin
class Sequential(Module):
    """Modules applied one after another: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Its children are named ``"0"``, ``"1"``, ... (so parameters are ``"0.weight"``).
    Supports ``len``, iteration, ``seq[i]``, ``seq[i:j]`` (a new Sequential sharing
    the modules) and ``append``.
    """

    def __init__(self, *modules):
        self._layers = []  # the children in order, also attributes "0", "1", ... (the tree's names)
        for module in modules:
            self.append(module)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: expected a Module; got {type(module).__name__}")
        setattr(self, str(len(self._layers)), module)
        self._layers.append(module)
        return self

    def forward(self, input):
        for module in self._layers:
            input = module(input)
        return input

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self._layers[index])
        return self._layers[index]

    def config(self):
        """``{"type": "Sequential", "layers": [config of each layer, ...]}``."""
        self._check_builtin()
        return {"type": "Sequential", "layers": [module.config() for module in self]}


def from_config(config):
    """Build an untrained module from ``Module.config()``'s data (built-in types only)."""
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ValueError(f"from_config: expected a dict with a 'type' string; got {str(config)[:80]}")
    name = config["type"]
    cls = _BUILTIN.get(name)
    if cls is None:
        raise ValueError(
            f"from_config: unknown layer type {name!r}; expected one of {', '.join(sorted(_BUILTIN))}"
        )
    if cls is Sequential:
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"from_config: a Sequential needs a 'layers' list; got {str(layers)[:80]}")
        return Sequential(*(from_config(layer) for layer in layers))
    args = config.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"from_config: the args of {name} must be a dict; got {str(args)[:80]}")
    try:
        return cls(**args)
    except TypeError as error:
        raise ValueError(f"from_config: bad args for {name} {args}: {error}") from None


def edits():
    """A number that changes whenever an attribute of any Module is set or deleted (a
    setting, the mode, a submodule or a Parameter replaced): ``settings`` needs to be read
    again only when it changed."""
    return _edits


def settings(modules):
    """Everything a forward pass of these modules may read besides its inputs and the
    parameters' values, as one comparable value: each module's class, its mode, every
    attribute that is not a Module or a Tensor (slopes, probabilities, label smoothing,
    reduction, ...) by value, and each Module or Tensor attribute by identity. A captured
    step is valid exactly as long as this is unchanged."""
    return tuple((type(m), m.training, tuple((name, _setting(value)) for name, value in vars(m).items()))
                 for m in modules)


def _setting(value):
    if isinstance(value, (Module, Tensor)):
        return id(value)
    if isinstance(value, xp.ndarray):  # compared by content: == on arrays is no truth value
        return value.shape, value.dtype.str, value.tobytes()
    if isinstance(value, (list, tuple)):
        return tuple(map(_setting, value))
    if isinstance(value, dict):
        return tuple((key, _setting(item)) for key, item in value.items())
    try:
        hash(value)
    except TypeError:  # another mutable object: by identity
        return id(value)
    return value


def parameter_dtype(model):
    """The dtype of the model's first parameter (float32 for a model without parameters)."""
    parameter = next(iter(model.parameters()), None)
    return parameter.dtype if parameter is not None else xp.float32


def parameter_device(model):
    """The device of the model's first parameter ("cpu" for a model without parameters)."""
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else "cpu"


@contextlib.contextmanager
def evaluating(model):
    """Eval mode without recording a graph; then the model's mode as it was."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train(was_training)
