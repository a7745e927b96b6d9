"""Capture a training step once for fixed shapes and dtypes, then replay it.

``step = compile_step(model, loss_fn, optimizer)``; ``loss = step(x, y)`` does what
``optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()`` does, with
the same numbers, and returns the loss as a float.

The first call for a given key (shapes and dtypes of x and y, every module's and the
loss's settings and mode, the parameters' arrays and ``requires_grad``: everything the
plan read besides the values) runs the step eagerly while
recording every primitive of ``ops.py`` it calls, and turns the recording into a
``Plan``:

- forward: per primitive, a kernel (``compile/kernels.py``) that recomputes its output
  *into the array the eager step produced* (``out=``), so that the VJP closures the
  eager step created, which hold those arrays, stay valid;
- backward: those very closures from ``ops.py`` (the one definition of every
  derivative), called in the order ``Tensor.backward`` calls them, the gradients
  summed as it sums them, the parameters' gradients written into fixed arrays (the
  optimizer's flat gradient buffer when it has one);
- update: the optimizer's own ``step()``, on flat buffers (``foreach=None`` becomes
  flat for a compiled step).

Later calls copy the batch into the captured input arrays and run the plan as one
generated Python function: no Tensor, no graph, no closure is created per step.

A plan is only made when it cannot differ from the eager step. The step stays eager
(``TrainStep.reason`` says why) for a model or loss that is not made of the library's
own modules (a user's ``forward`` may branch on values), a primitive without a kernel
here (dropout in training mode draws a mask, for instance), any array a closure holds
that the plan does not rewrite, ``retain_grad``, a leaf that requires a gradient and
is not an optimized parameter, or an input that requires grad. A new key (the last,
smaller batch of an epoch; a parameter replaced or frozen) captures a new plan.
"""

import contextlib
import inspect
from collections import Counter
from functools import partial
from operator import attrgetter

from backprop import ops
from backprop.backend import xp
from backprop.compile.kernels import KERNELS, REFRESHED
from backprop.nn.layers import Dropout
from backprop.nn.module import _BUILTIN, Module, edits, settings
from backprop.optim.optimizer import _require_numba
from backprop.tensor import Tensor, _as_array, unbroadcast

__all__ = ["compile_step", "TrainStep"]

_MAX_PLANS = 8  # keys (batch shapes...) kept per step; more than this and the step stays eager
_DATA, _REQUIRES_GRAD = attrgetter("data"), attrgetter("requires_grad")


def compile_step(model, loss_fn, optimizer, numba=False):
    """A ``TrainStep``: ``step(x, y)`` trains on one batch and returns the loss (a float).
    ``numba=True`` runs each plan's forward and backward passes as one Numba function
    where the plan allows (``compile/numba_step.py``; ``TrainStep.numba_reason`` says why
    not), the update staying the optimizer's."""
    return TrainStep(model, loss_fn, optimizer, numba=numba)


def train_step_for(model, loss_fn, optimizer, settings, compiled=True, after_backward=None):
    """The ``TrainStep`` that ``fit`` uses: kept on the optimizer and reused by the next
    ``fit`` with the same model, loss and modules' ``settings`` (``module_settings``), so
    that repeated short fits (``partial_fit``) capture their plans once. ``compiled`` is True, False or "numba"
    (``compile_step``'s ``numba=True``). ``after_backward`` (distributed training's
    gradient averaging) runs between backward and the update, on the eager path."""
    step = getattr(optimizer, "_train_step", None)
    key = (model, loss_fn, compiled, after_backward, settings)
    if step is None or step.reuse_key != key:
        step = optimizer._train_step = TrainStep(model, loss_fn, optimizer, bool(compiled), after_backward,
                                                 numba=compiled == "numba")
        step.reuse_key = key
    return step


def module_settings(model, loss_fn):
    """Each module's class and constructor arguments (of the model, and of the loss when it
    is a module): what decides whether a step captured earlier still applies."""
    return [(type(m).__name__, m._args()) for m in _modules(model, loss_fn)]


def _modules(model, loss_fn):
    return list(model.modules()) + (list(loss_fn.modules()) if isinstance(loss_fn, Module) else [])


class TrainStep:
    """zero_grad, forward, loss, backward and update of one batch, captured and replayed.

    ``path`` is "compiled" when the last call replayed a plan and "eager" when it ran
    the ordinary engine; ``reason`` says why a step was eager (None otherwise).
    ``output`` is the model's output of the last call (an array, valid until the next).
    """

    def __init__(self, model, loss_fn, optimizer, compiled=True, after_backward=None, numba=False):
        if numba:
            _require_numba("numba=True")
        self.model, self.loss_fn, self.optimizer, self.compiled = model, loss_fn, optimizer, compiled
        self.numba, self.numba_reason = bool(numba), (None if numba else "numba=False")
        self.after_backward = after_backward
        self.reuse_key = None  # what train_step_for made this step for
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.modules = _modules(model, loss_fn)
        if not compiled:
            self.unsupported = "compiled=False"
        elif after_backward is not None:
            self.unsupported = "the gradients are averaged across ranks between backward and the update"
        else:
            self.unsupported = _unsupported(self.modules + ([] if isinstance(loss_fn, Module) else [loss_fn]))
        self.plans = {}
        self.edits, self.settings, self.known_settings = None, None, {}  # the modules' settings, numbered
        self.path = self.reason = self.output = None
        self.counts = {"compiled": 0, "eager": 0}
        if self.unsupported is None:
            optimizer._flat_by_default = True
            optimizer._fused_by_default = optimizer._fused_by_default or self.numba

    def __call__(self, x, y):
        if self.unsupported or (isinstance(x, Tensor) and x.requires_grad):
            return self._eager(x, y, self.unsupported or "the input requires grad")
        if self.params and self.params[0].device != "cpu":  # plans are NumPy-only
            return self._eager(x, y, f"the parameters are on {self.params[0].device}")
        x, y = _as_array(x), _as_array(y)  # a Tensor's array, as Tensor(x) would hold it
        key = self._key(x, y)
        plan = self.plans.get(key)
        if plan is None:
            if len(self.plans) >= _MAX_PLANS:
                return self._eager(x, y, f"more than {_MAX_PLANS} different batch shapes or parameter sets")
            plan, loss = _capture(self, x, y)  # runs this step (unless it has no loss to show)
            self.plans[self._key(x, y)] = plan  # the capture may have moved the parameters into flat buffers
            if loss is None:
                return self._eager(x, y, plan)
            self._took(*(("eager", plan) if isinstance(plan, str) else ("compiled", None)))
            return loss
        if isinstance(plan, str) or not plan.run(x, y):
            return self._eager(x, y, plan if isinstance(plan, str) else "a kernel refused the batch")
        self._took("compiled", None)
        self.output = plan.output
        self.numba_reason = plan.numba_reason
        return plan.loss_value()

    def _took(self, path, reason):
        self.path, self.reason = path, reason
        self.counts[path] += 1

    def _key(self, x, y):
        """What a plan read besides the batch's values: the batch's shapes and dtypes, the
        modules' settings (``nn.module.settings``, read again only after a Module's attribute
        changed), the parameters' arrays and ``requires_grad``. A plan runs only for its key."""
        if self.edits != edits():
            self.edits = edits()
            self.settings = self.known_settings.setdefault(settings(self.modules), len(self.known_settings))
        return (x.shape, x.dtype, y.shape, y.dtype, self.settings,
                tuple(map(id, map(_DATA, self.params))), tuple(map(_REQUIRES_GRAD, self.params)))

    def _eager(self, x, y, reason):
        self._took("eager", reason)
        self.numba_reason = "the step ran eagerly"
        x, y = (a if isinstance(a, Tensor) else Tensor(a) for a in (x, y))
        if self.params:  # the batch goes to the parameters' device
            x, y = x.to(self.params[0].device), y.to(self.params[0].device)
        output = self.model(x)
        loss = self.loss_fn(output, y)
        self.optimizer.zero_grad()
        loss.backward()
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        self.output = output.data
        return loss.item()


def _unsupported(modules):
    """Why a step of these modules cannot be captured (None if it can): a user's forward
    may branch on values, which a recording would not see."""
    for module in modules:
        if _BUILTIN.get(type(module).__name__) is not type(module):
            return f"{type(module).__name__} is not one of the library's modules (its forward may branch on values)"
    return None


# -- capture --------------------------------------------------------------------------------
@contextlib.contextmanager
def _recording():
    """Within: every call of a primitive with a kernel appends (name, args, kwargs, result)."""
    calls, originals = [], {name: getattr(ops, name) for name in KERNELS}

    def recorder(name, primitive):
        def record(*args, **kwargs):
            result = primitive(*args, **kwargs)
            calls.append((name, args, kwargs, result))
            return result

        return record

    for name, primitive in originals.items():
        setattr(ops, name, recorder(name, primitive))
    try:
        yield calls
    finally:
        for name, primitive in originals.items():
            setattr(ops, name, primitive)


def _capture(step, x, y):
    """Run this step eagerly while recording it, and by its plan from the backward pass on;
    return (the Plan or the reason there is none, the loss), the loss None when the step
    was not run."""
    optimizer = step.optimizer
    if any(isinstance(m, Dropout) and m.training and m.p > 0 for m in step.modules):
        return "Dropout in training mode draws a new mask every step", None
    grad_buffers = {}
    for group in optimizer.param_groups:
        flat = optimizer.flat_group(group) if optimizer._wants_flat(group) else None
        if flat is not None:
            grad_buffers.update(zip(map(id, flat.params), flat.grad_views))
    inputs = Tensor(xp.array(x)), Tensor(xp.array(y))
    with _recording() as calls:
        output = step.model(inputs[0])
        loss = step.loss_fn(output, inputs[1])
    plan = _plan(step, calls, inputs, output, loss, grad_buffers)
    step.output = output.data
    if isinstance(plan, str):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return plan, loss.item()
    plan.backward(update=not step.numba)
    if step.numba:
        step.numba_reason = plan.compile_whole()
        optimizer.step()
    return plan, plan.loss_value()



def _plan(step, calls, inputs, output, loss, grad_buffers):
    """The Plan of a recorded step, or a sentence saying why it cannot be replayed."""
    params = {id(p): p for p in step.params}
    known = {id(t.data) for t in inputs} | {id(p.data) for p in params.values()}  # rewritten or updated in place
    constants, rewritten = set(), []  # rewritten: every array a kernel writes, for Plan.verify
    values, forward, produced, records = {}, [], {}, []  # records: (name, inputs, options, output, refreshed)
    scalars = {}  # id of a NumPy scalar a primitive returned -> the 0-d array its kernel writes
    for name, args, kwargs, result in calls:
        arrays = []
        for arg in list(args) + list(kwargs.values()):
            array = arg.data if isinstance(arg, Tensor) else arg
            array = scalars.get(id(array), array)  # a full reduction's value read by the next primitive
            if isinstance(array, (xp.ndarray, xp.generic)) and id(array) not in known:
                if not (isinstance(array, xp.ndarray) and array.ndim == 0 and isinstance(arg, Tensor) and arg.is_leaf):
                    return f"{name} reads an array the plan does not rewrite"
                constants.add(id(array))
            arrays.append(array)
        data = result.data
        if not isinstance(data, xp.ndarray):  # a NumPy scalar: the plan keeps the value in a 0-d array
            data = scalars[id(result.data)] = xp.array(data)
        refresh = {}  # the arrays the kernel rewrites besides the output, by their name in the VJP
        for _, vjp in result._parents:
            refresh.update((var, value) for var, value in _cells(vjp) if var in REFRESHED.get(name, ()))
        known.update(id(a) for a in refresh.values() if isinstance(a, xp.ndarray))
        rewritten += [data] + [a for a in refresh.values() if isinstance(a, xp.ndarray)]
        options = dict(zip(kwargs, arrays[len(args) :]))
        records.append((name, arrays[: len(args)], options, data, dict(refresh)))  # the kernel takes from refresh
        kernel = KERNELS[name](data, refresh, *arrays[: len(args)], **options)
        if kernel is None:
            return f"{name} with these arguments has no kernel"
        known.add(id(data))
        values[id(result)] = data
        produced[id(result)] = result
        forward.append(kernel)
    if id(loss) not in produced or not loss.requires_grad:
        return "the loss is not computed by primitives the plan knows"
    nodes, leaves = [], []
    seen, stack = {id(loss)}, [loss]
    while stack:
        node = stack.pop()
        if node._op is None:
            if id(node) not in params:
                return "a leaf that requires grad is not a parameter of the optimizer"
            leaves.append(node)
            continue
        if id(node) not in produced:
            return f"the primitive {node._op} has no kernel"
        if node._retains_grad:
            return "retain_grad() asks for an intermediate gradient"
        nodes.append(node)
        for parent, vjp in node._parents:
            reason = _unknown_array(vjp, known | constants)
            if reason:
                return f"{node._op}'s derivative holds {reason} that the plan does not rewrite"
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    output_array = values.get(id(output), output.data)
    if id(output_array) not in known:
        return "the model's output is not computed by primitives the plan knows"
    plan = Plan(step, inputs, forward, values, loss, output_array, nodes, leaves, grad_buffers)
    plan.records = records
    return plan.verify(rewritten) or plan


def _cells(function):
    """(name, value) of each variable ``function``'s closure holds (assigned ones only), or
    of each argument a ``partial`` binds (by the name of its parameter)."""
    if isinstance(function, partial):
        yield from zip(function.func.__code__.co_varnames, function.args)
        yield from function.keywords.items()
        return
    for var, cell in zip(function.__code__.co_freevars, function.__closure__ or ()):
        try:
            yield var, cell.cell_contents
        except ValueError:  # a variable of the enclosing function that was never assigned
            continue


def _unknown_array(function, known, depth=0):
    """The name of an array (or NumPy scalar) that ``function``'s closure holds and that is
    not in ``known``; None if there is none. Functions it holds are searched too."""
    for var, value in _cells(function):
        if isinstance(value, xp.generic) or (isinstance(value, xp.ndarray) and id(value) not in known):
            return f"an array ({var})"
        if (isinstance(value, partial) or hasattr(value, "__code__")) and depth < 3:
            reason = _unknown_array(value, known, depth + 1)
            if reason:
                return reason
    return None


def _written_into(instructions, leaves, tensors):
    """{instruction's index: the leaf's gradient buffer} for each VJP that can write a
    parameter's whole gradient into its buffer itself (it takes ``out``, it is the
    parameter's only contribution, and what it reads has the buffer's dtype), sparing a
    copy of the gradient. ``tensors`` are the plan's, by slot."""
    buffers = {k: buffer for k, _, buffer in leaves}
    contributions = Counter(target for _, _, target, _, _ in instructions)
    written = {}
    for i, (source, vjp, target, _, _) in enumerate(instructions):
        function, bound = ops.vjp_parts(vjp)
        buffer = buffers.get(target)
        if buffer is None or not buffer.flags.c_contiguous or contributions[target] != 1 or not _takes_out(function):
            continue  # (NumPy's dot writes only into a C-ordered array)
        if all(a.dtype == buffer.dtype for a in (tensors[source].data, *bound) if isinstance(a, xp.ndarray)):
            written[i] = buffer
    return written


def _takes_out(function):
    try:
        return "out" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a callable without a signature
        return False


class Plan:
    """One captured step: forward kernels, the VJPs in backward order, the update."""

    def __init__(self, step, inputs, forward, values, loss, output, nodes, leaves, grad_buffers):
        self.optimizer = step.optimizer
        self.x, self.y = (t.data for t in inputs)
        self.forward = forward
        self.loss, self.output = values[id(loss)], output
        self.seed = xp.ones(self.loss.shape, self.loss.dtype)
        self.seed.flags.writeable = False  # shared by every step: no VJP may write into it
        nodes.sort(key=lambda node: -node._seq)  # the order Tensor.backward visits them in
        slot = {id(t): i for i, t in enumerate(nodes + leaves)}
        self.instructions = []  # (from slot, vjp, to slot, the parent's shape, first contribution)
        filled = set()
        for node in nodes:
            for parent, vjp in node._parents:
                k = slot[id(parent)]
                self.instructions.append((slot[id(node)], vjp, k, parent.data.shape, k not in filled))
                filled.add(k)
        self.leaves = []  # (slot, parameter, the array its gradient is written into)
        for leaf in leaves:
            buffer = grad_buffers.get(id(leaf))
            self.leaves.append((slot[id(leaf)], leaf, xp.empty_like(leaf.data) if buffer is None else buffer))
        self.written = _written_into(self.instructions, self.leaves, nodes + leaves)
        self.idle = [p for p in step.params if id(p) not in slot]  # zero_grad() leaves them no gradient
        self.slots = len(slot)
        self.run = self._generate()
        self.numba_reason = "numba=False"

    def verify(self, arrays):
        """Run the kernels on the recorded batch: None if they reproduce every array of the
        eager forward pass (outputs and what the VJPs hold), else the reason (and the eager
        values are put back)."""
        saved = [a.copy() for a in arrays]
        if all(kernel() is not False for kernel in self.forward) and all(
            xp.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True) for a, b in zip(arrays, saved)
        ):
            return None
        for array, value in zip(arrays, saved):
            xp.copyto(array, value)
        return "the kernels do not reproduce the eager forward pass"

    def loss_value(self):
        return float(self.loss)

    def backward(self, update=True):
        """The VJPs in order, the gradients summed as Tensor.backward sums them (Design A:
        a loop over the instructions; used for the capture step), then the update."""
        grads = [None] * self.slots
        grads[0] = self.seed
        for source, vjp, target, shape, first in self.instructions:
            contribution = vjp(grads[source])
            if contribution.shape != shape:
                contribution = unbroadcast(contribution, shape)
            grads[target] = contribution if first else grads[target] + contribution
        for k, p, buffer in self.leaves:
            xp.copyto(buffer, grads[k])
            p.grad = buffer
        for p in self.idle:
            p.grad = None
        if update:
            self.optimizer.step()

    def compile_whole(self):
        """Design C: replace ``run`` by one Numba function for the forward and backward
        passes, once it reproduced, on this batch, the loss and gradients ``backward`` just
        left; return why not (None if done)."""
        from backprop.compile import numba_step

        self.numba_reason = numba_step.unsupported(self.records, self.instructions)
        if self.numba_reason is not None:
            return self.numba_reason
        grads, loss = [buffer.copy() for _, _, buffer in self.leaves], self.loss.copy()
        function, arguments, moved = numba_step.build(self.records, self.instructions, self.leaves, self.written,
                                                      self.seed)
        if function(*arguments) and xp.allclose(self.loss, loss, rtol=1e-5) and all(
            xp.allclose(buffer, g, rtol=1e-4, atol=1e-6) for (_, _, buffer), g in zip(self.leaves, grads)
        ):
            self.x, self.y, self.output = (moved.get(id(a), a) for a in (self.x, self.y, self.output))
            self.run = self._whole(function, arguments)
            return None
        for (_, _, buffer), g in zip(self.leaves, grads):
            xp.copyto(buffer, g)
        xp.copyto(self.loss, loss)
        self.numba_reason = "the compiled function does not reproduce the replayed step"
        return self.numba_reason

    def _whole(self, function, arguments):
        """``run(x, y)`` by the compiled function. The batch is handed to it as it is when
        Numba types it as the plan's buffer (the same shape and dtype, by the plan's key;
        C-ordered, writable and aligned), sparing a copy (110 us for 512 x 784 float32);
        otherwise it is copied into the buffer."""
        X, Y, update = self.x, self.y, self.optimizer.step
        leaves, idle = [(p, buffer) for _, p, buffer in self.leaves], self.idle
        arguments = list(arguments)
        batch = [(i, buffer, k) for k, buffer in enumerate((X, Y)) for i, a in enumerate(arguments) if a is buffer]

        def run(x, y):
            given = x, y
            for i, buffer, k in batch:
                flags = given[k].flags
                if flags.c_contiguous and flags.writeable and flags.aligned:
                    arguments[i] = given[k]
                else:
                    xp.copyto(buffer, given[k])
            done = function(*arguments)
            for i, buffer, _ in batch:  # no reference to the caller's batch outlives the step
                arguments[i] = buffer
            if not done:
                return False
            for p, buffer in leaves:
                p.grad = buffer
            for p in idle:
                p.grad = None
            update()
            return True

        return run

    def _generate(self):
        """``run(x, y)`` as one Python function (Design B): the batch copied in, the kernels,
        the VJPs with a local per gradient, the parameters' gradients, the update."""
        scope = {"copyto": xp.copyto, "unbroadcast": unbroadcast, "X": self.x, "Y": self.y,
                 "seed": self.seed, "update": self.optimizer.step}
        lines = ["def run(x, y):", "    copyto(X, x)", "    copyto(Y, y)"]
        for i, kernel in enumerate(self.forward):
            scope[f"k{i}"] = kernel
            lines.append(f"    if k{i}() is False: return False")
        lines.append("    g0 = seed")
        for i, (source, vjp, target, shape, first) in enumerate(self.instructions):
            scope[f"vjp{i}"], scope[f"shape{i}"] = vjp, shape
            if i in self.written:  # the parameter's gradient, written into its buffer
                scope[f"out{i}"] = self.written[i]
                lines.append(f"    g{target} = vjp{i}(g{source}, out=out{i})")
                continue
            lines.append(f"    c = vjp{i}(g{source})")
            lines.append(f"    if c.shape != shape{i}: c = unbroadcast(c, shape{i})")
            lines.append(f"    g{target} = c" if first else f"    g{target} = g{target} + c")
        written = set(map(id, self.written.values()))
        for i, (k, p, buffer) in enumerate(self.leaves):
            scope[f"p{i}"], scope[f"grad{i}"] = p, buffer
            lines += ([] if id(buffer) in written else [f"    copyto(grad{i}, g{k})"]) + [f"    p{i}.grad = grad{i}"]
        for i, p in enumerate(self.idle):
            scope[f"idle{i}"] = p
            lines.append(f"    idle{i}.grad = None")
        lines += ["    update()", "    return True"]
        exec(compile("\n".join(lines), "<backprop.compile plan>", "exec"), scope)
        return scope["run"]
