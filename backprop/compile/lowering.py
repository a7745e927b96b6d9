"""A captured step (``Plan``) and its one lowering: the plan as the source of one function,
for a target.

``lower(plan, target)`` writes the step once: each primitive's forward kernel into its
array, then the VJPs in the order ``Tensor.backward`` calls them, a local per gradient,
the contributions to one gradient summed in that order, and the parameters' gradients
written into their buffers. Every array and number it reads is an argument ``a<k>`` and
every function a name ``f<k>``; the target supplies the functions (the same ones of
``ops.py``), the seed and how the source becomes a function:

- ``PYTHON`` (this module): the replay, the functions and arrays as the globals of one
  generated Python function;
- ``numba_step.TARGET``: the same source compiled by Numba into one machine-code function.
"""

import inspect
from collections import Counter

from backprop.backend import xp
from backprop.ops import vjp_parts
from backprop.tensor import Tensor, grad_assignments


class PythonTarget:
    """The replay: the generated function calls ``ops.py``'s functions from Python."""

    def forward(self, plan, op, kernel, out):
        """(function, arguments, keywords) of the call that recomputes ``out``: the
        primitive's own kernel."""
        return kernel.func, kernel.args, {**kernel.keywords, "out": out}

    def seed(self, plan):
        return plan.seed

    def bound(self, plan, values):
        """The arguments a VJP was bound to, as the target passes them."""
        return values

    def build(self, plan, body, functions, arguments):
        """(a function of no arguments running ``body``, [], no moved arrays): the arguments
        and functions are its globals, which Python looks up faster than it passes them."""
        scope = {**functions, **{f"a{k}": value for k, value in enumerate(arguments)}}
        exec(compile("def step():\n" + body, "<backprop.compile plan>", "exec"), scope)
        return scope["step"], [], []


PYTHON = PythonTarget()


def lower(plan, target):
    """(the step as one function of ``target``, the arguments to call it with, the plan's
    arrays the target moved: [(array, its replacement)]). A kernel refuses a batch it
    cannot take (a class index out of range) with an IndexError."""
    arguments, argument_names, functions, function_names = [], {}, {}, {}

    def name_of(value):
        if value is None or isinstance(value, _Local):
            return value or "None"
        key = id(value)
        if key not in argument_names:
            argument_names[key] = f"a{len(arguments)}"
            arguments.append(value)
        return argument_names[key]

    def function_name(function):
        if id(function) not in function_names:
            function_names[id(function)] = name = f"f{len(functions)}"
            functions[name] = function
        return function_names[id(function)]

    def call(function, args, keywords=()):
        listed = [*map(name_of, args), *(f"{key}={name_of(value)}" for key, value in dict(keywords).items())]
        return f"{function_name(function)}({', '.join(listed)})"

    lines = []
    for op, kernel, out in plan.forward:
        lines.append(call(*target.forward(plan, op, kernel, out)))
    lines.append(f"g0 = {name_of(target.seed(plan))}")
    for i, (source, vjp, slot, first) in enumerate(plan.instructions):
        function, bound = vjp_parts(vjp)
        text = call(function, [*target.bound(plan, bound), _Local(f"g{source}")],
                    {"out": plan.written[i]} if i in plan.written else ())
        lines.append(f"g{slot} = {text}" if first else f"g{slot} = g{slot} + {text}")
    in_place = set(map(id, plan.written.values()))
    for slot, _, buffer in plan.leaves:
        if id(buffer) not in in_place:
            lines.append(f"{name_of(buffer)}[...] = g{slot}")
    body = "".join(f"    {line}\n" for line in lines)
    return target.build(plan, body, functions, arguments)


class _Local(str):
    """A local variable's name among a call's arguments (written as it is)."""


class Plan:
    """One captured step: forward kernels, the VJPs in backward order, the update; ``run``
    is the lowered function (the Python replay, or one Numba function once adopted) with
    the batch copied in and the update after it. A function made by a thread is put in
    ``compiled``, and the next ``run`` adopts it on its batch."""

    def __init__(self, step, inputs, forward, loss, output, nodes, leaves, grad_buffers):
        self.optimizer = step.optimizer
        self.x, self.y = (t.data for t in inputs)
        self.forward = forward  # (the primitive's name, its kernel, the array it writes)
        self.loss, self.output = loss.data, output
        self.dtype = self.loss.dtype.type
        self.seed = xp.ones(self.loss.shape, self.loss.dtype)
        self.seed.flags.writeable = False  # shared by every step: no VJP may write into it
        slot = {id(t): i for i, t in enumerate(nodes + leaves)}
        self.instructions = []  # (from slot, vjp, to slot, first contribution)
        filled = set()
        for node in nodes:
            for parent, vjp in zip(node.inputs, node.vjps):
                k = slot[id(parent)]
                self.instructions.append((slot[id(node)], vjp, k, k not in filled))
                filled.add(k)
        self.leaves = []  # (slot, parameter, the array its gradient is written into)
        for leaf in leaves:
            buffer = grad_buffers.get(id(leaf))
            self.leaves.append((slot[id(leaf)], leaf, xp.empty_like(leaf.data) if buffer is None else buffer))
        self.written = _written_into(self.instructions, self.leaves, nodes + leaves)
        self.grads = [(p, Tensor(buffer)) for _, p, buffer in self.leaves]  # each p.grad, over its buffer
        self._shared = None  # grad_assignments() when they were last shared
        self.idle = [p for p in step.params if id(p) not in slot]  # zero_grad() leaves them no gradient
        self.passes = self.run = None
        self.compiled = None  # what a thread made for ``adopt``: (function, arguments, moved) or why not
        self._use(*lower(self, PYTHON))
        self.numba_reason = "numba=False"

    def verify(self, arrays):
        """Run the kernels on the recorded batch: None if they reproduce every array of the
        eager forward pass (outputs and what the VJPs hold), else the reason (and the eager
        values are put back)."""
        saved = [a.copy() for a in arrays]
        for _, kernel, out in self.forward:
            kernel(out=out)
        if all(xp.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True) for a, b in zip(arrays, saved)):
            return None
        for array, value in zip(arrays, saved):
            xp.copyto(array, value)
        return "the kernels do not reproduce the eager forward pass"

    def loss_value(self):
        return float(self.loss)

    def gradients(self):
        """The forward and backward passes on the batch already in the plan's arrays: the
        parameters' gradients, without the update (the capture's first step)."""
        self.passes()
        self._share_gradients()

    def _share_gradients(self):
        if self._shared == grad_assignments():  # each p.grad is still its buffer's
            return
        for p, grad in self.grads:
            p.grad = grad
        for p in self.idle:
            p.grad = None
        self._shared = grad_assignments()

    def adopt(self, made):
        """Run the step by the function ``made`` = (function, arguments, moved) from now on,
        the optimizer's update fused, if it reproduces the loss and gradients the replay left
        in the plan's arrays; else (or if ``made`` is the reason there is none) restore them
        and say why in ``numba_reason``."""
        if isinstance(made, str):
            self.numba_reason = made
            return
        function, arguments, moved = made
        grads, loss = [buffer.copy() for _, _, buffer in self.leaves], self.loss.copy()
        for original, copy in moved:  # what it works in instead of the plan's arrays, as the replay left them
            xp.copyto(copy, original)
        function(*arguments)
        if xp.allclose(self.loss, loss, rtol=1e-5) and all(
            xp.allclose(buffer, g, rtol=1e-4, atol=1e-6) for (_, _, buffer), g in zip(self.leaves, grads)
        ):
            self.numba_reason = None
            self.optimizer.use_flat_buffers(fused=True)
            self._use(function, arguments, moved)
            return
        for (_, _, buffer), g in zip(self.leaves, grads):
            xp.copyto(buffer, g)
        xp.copyto(self.loss, loss)
        self.numba_reason = "the compiled function does not reproduce the replayed step"

    def _use(self, function, arguments, moved):
        """Run the step by ``function(*arguments)`` from now on. ``moved`` pairs plan arrays
        with the copies the function works in instead. The batch is handed to the function as
        it is when it is one of its arguments and the caller's array is C-ordered, writable
        and aligned (the same shape and dtype, by the plan's key), sparing a copy (110 us for
        512 x 784 float32); otherwise it is copied into the plan's array."""
        copies = {id(original): copy for original, copy in moved}
        self.x, self.y, self.output = (copies.get(id(a), a) for a in (self.x, self.y, self.output))
        X, Y, update = self.x, self.y, self.optimizer.step
        arguments = list(arguments)
        batch = [(i, buffer, k) for k, buffer in enumerate((X, Y)) for i, a in enumerate(arguments) if a is buffer]
        copied = [(buffer, k) for k, buffer in enumerate((X, Y)) if not any(b is buffer for _, b, _ in batch)]
        self.passes = lambda: function(*arguments)

        def run(x, y):
            given = x, y
            for buffer, k in copied:
                xp.copyto(buffer, given[k])
            for i, buffer, k in batch:
                flags = given[k].flags
                if flags.c_contiguous and flags.writeable and flags.aligned:
                    arguments[i] = given[k]
                else:
                    xp.copyto(buffer, given[k])
            try:
                function(*arguments)
            except IndexError:  # a kernel refused the batch (a class index out of range)
                return False
            finally:
                for i, buffer, _ in batch:  # no reference to the caller's batch outlives the step
                    arguments[i] = buffer
            if self.compiled is not None:  # made in the background: adopted on this batch
                made, self.compiled = self.compiled, None
                self.adopt(made)
            self._share_gradients()
            update()
            return True

        self.run = run


def _written_into(instructions, leaves, tensors):
    """{instruction's index: the leaf's gradient buffer} for each VJP that can write a
    parameter's whole gradient into its buffer itself (it takes ``out``, it is the
    parameter's only contribution, and what it reads has the buffer's dtype), sparing a
    copy of the gradient. ``tensors`` are the plan's, by slot."""
    buffers = {k: buffer for k, _, buffer in leaves}
    contributions = Counter(target for _, _, target, _ in instructions)
    written = {}
    for i, (source, vjp, target, _) in enumerate(instructions):
        function, bound = vjp_parts(vjp)
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
