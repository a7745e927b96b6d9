"""Capture a training step once, then replay it.

``step = compile_step(model, loss_fn, optimizer)``; ``loss = step(x, y)`` does what
``optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()`` does, with
the same numbers, and returns the loss as a float.

The first call for a given key (shapes and dtypes of x and y, every module's and the
loss's settings and mode, the parameters' arrays and ``requires_grad``: everything the
plan read besides the values) runs the step eagerly inside ``tensor.recording()``, which
hands over every result the engine made with its kernel, and turns the recording into a
``Plan``:

- forward: each primitive's kernel, the forward function of ``ops.py`` that computed it,
  called again to write its output *into the array the eager step produced*, so that
  the VJPs the eager step bound, which hold those arrays, stay valid;
- backward: those very VJPs of ``ops.py`` (the one definition of every derivative),
  read through ``Tensor.inputs`` and ``Tensor.vjps``, in the order ``Tensor.backward``
  calls them, the gradients summed as it sums them, the parameters' gradients written
  into fixed arrays (the optimizer's flat gradient buffer when it has one);
- update: the optimizer's own ``step()``, on flat buffers.

``compile/lowering.py`` turns a plan into one function, for a target: Python (the
replay) or Numba (``compile/numba_step.py``). Later calls run it: no Tensor, no graph,
no closure is created per step. The Numba function comes at the first step with
``numba=True``, and with ``numba="auto"`` (the default, and ``fit``'s) for a step
expected to run ``NUMBA_FROM`` times, made in the background (a thread that loads it,
a worker process that compiles what the disk cache lacks) and adopted by the step after
it is ready.

A plan is only made when it cannot differ from the eager step. The step stays eager
(``TrainStep.reason`` says why) for a model or loss that is not made of the library's
own modules (a user's ``forward`` may branch on values), a primitive without a kernel
(dropout in training mode draws a mask, for instance), any array a kernel reads or a
VJP holds that the plan does not rewrite, ``retain_grad``, a leaf that requires a
gradient and is not an optimized parameter, or an input that requires grad. A new key
(the last, smaller batch of an epoch; a parameter replaced or frozen; a setting changed)
captures a new plan.
"""

import threading
import weakref
from operator import attrgetter

from backprop.backend import xp
from backprop.compile.lowering import Plan
from backprop.nn.layers import Dropout
from backprop.nn.module import _BUILTIN, Module, edits, settings
from backprop.ops import vjp_parts
from backprop.optim.optimizer import _numba_installed, _require_numba
from backprop.tensor import Tensor, array_of, recording

__all__ = ["compile_step", "TrainStep", "fit_step"]

_MAX_PLANS = 8  # keys (batch shapes...) kept per step; more than this and the step stays eager
# numba="auto" makes a plan's Numba function once its step is expected to run this many
# times. In the background, the compile never stalls a step, but on 2 cores it takes
# time from the replay: importing Numba and loading a cached function costs about 0.5 s,
# a first compile about 10 s, and the function saves 20-100 us a step on small networks
# (bench/NOTES.md).
NUMBA_FROM = 20_000
_NOT_YET = f"numba='auto' makes the compiled function for a step expected to run {NUMBA_FROM:,} times"
_DATA, _REQUIRES_GRAD = attrgetter("data"), attrgetter("requires_grad")
_FIT_STEPS = weakref.WeakKeyDictionary()  # optimizer -> the TrainStep fit last used with it


def compile_step(model, loss_fn, optimizer, numba="auto"):
    """A ``TrainStep``: ``step(x, y)`` trains on one batch and returns the loss (a float).

    Each plan runs as one Numba function where the plan allows (``compile/numba_step.py``;
    ``TrainStep.numba_reason`` says why not), the update staying the optimizer's:
    ``numba="auto"`` (the default) once the step has run, or is expected to run
    (``TrainStep.expect``), ``NUMBA_FROM`` times with Numba installed, the function made
    in the background while the replay goes on;
    ``numba=True`` at the first step of each plan, waiting for the compiler (Numba
    required); ``numba=False`` never."""
    return TrainStep(model, loss_fn, optimizer, numba=numba)


def train_step_for(model, loss_fn, optimizer, settings, compiled=True, steps=0):
    """The ``TrainStep`` that ``fit`` uses: kept for the optimizer (``fit_step``) and reused
    by the next ``fit`` with the same model, loss and modules' ``settings``
    (``module_settings``), so that repeated short fits (``partial_fit``) capture their plans
    once. ``compiled`` is True (``compile_step``'s ``numba="auto"``), False or "numba"
    (``numba=True``); ``steps`` is how many steps the fit will take at most (``expect``).
    """
    step = _FIT_STEPS.get(optimizer)
    key = (model, loss_fn, compiled, settings)
    if step is None or step.reuse_key != key:
        step = _FIT_STEPS[optimizer] = TrainStep(model, loss_fn, optimizer, bool(compiled),
                                                 numba=True if compiled == "numba" else "auto")
        step.reuse_key = key
    step.expect(steps)
    return step


def fit_step(optimizer):
    """The ``TrainStep`` the last ``fit`` with ``optimizer`` trained by (None if none)."""
    return _FIT_STEPS.get(optimizer)


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

    def __init__(self, model, loss_fn, optimizer, compiled=True, numba="auto"):
        if numba not in (True, False, "auto"):
            raise ValueError(f"compile_step: numba must be True, False or 'auto'; got {numba!r}")
        if numba is True:
            _require_numba("numba=True")
        self.model, self.loss_fn, self.optimizer, self.compiled = model, loss_fn, optimizer, compiled
        self.numba, self.numba_reason = numba, {False: "numba=False", "auto": _NOT_YET}.get(numba)
        self.replayed, self.expected = 0, 0  # steps replayed so far; steps the caller said are coming
        self.reuse_key = None  # what train_step_for made this step for
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.modules = _modules(model, loss_fn)
        if not compiled:
            self.unsupported = "compiled=False"
        else:
            self.unsupported = _unsupported(self.modules + ([] if isinstance(loss_fn, Module) else [loss_fn]))
        self.plans = {}
        self.edits, self.settings, self.known_settings = None, None, {}  # the modules' settings, numbered
        self.path = self.reason = self.output = None
        self.counts = {"compiled": 0, "eager": 0}
        if self.unsupported is None:
            optimizer.use_flat_buffers(fused=self.numba is True)

    def __call__(self, x, y):
        if self.unsupported or (isinstance(x, Tensor) and x.requires_grad):
            return self._eager(x, y, self.unsupported or "the input requires grad")
        if self.params and self.params[0].device != "cpu":  # plans are NumPy-only
            return self._eager(x, y, f"the parameters are on {self.params[0].device}")
        x, y = array_of(x), array_of(y)  # a Tensor's array, as Tensor(x) would hold it
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
        self.replayed += 1
        if plan.numba_reason is _NOT_YET and (self.replayed >= NUMBA_FROM or self.expected >= NUMBA_FROM):
            self._numba_in_background(plan)
        self.output = plan.output
        self.numba_reason = plan.numba_reason
        return plan.loss_value()

    def expect(self, steps):
        """Say that about ``steps`` more steps are coming (``fit`` does): a step expected to
        run ``NUMBA_FROM`` times in all makes its plans' Numba functions from now on."""
        self.expected = self.replayed + steps

    def _numba_in_background(self, plan):
        """Make the plan's Numba function in a thread (which imports Numba, and waits for a
        worker process to compile what the disk cache does not hold) while the replay goes
        on; the first step after it is ready adopts it."""
        if not _numba_installed():
            plan.numba_reason = "Numba is not installed"
            return
        plan.numba_reason = "the compiled function is being made in the background"
        threading.Thread(target=_make_numba, args=(plan,), name="backprop compile", daemon=True).start()

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
        self.optimizer.step()
        self.output = output.data
        return loss.item()


def _make_numba(plan):
    from backprop.compile import numba_step

    plan.compiled = numba_step.make(plan, in_worker=True)


def _unsupported(modules):
    """Why a step of these modules cannot be captured (None if it can): a user's forward
    may branch on values, which a recording would not see."""
    for module in modules:
        if _BUILTIN.get(type(module).__name__) is not type(module):
            return f"{type(module).__name__} is not one of the library's modules (its forward may branch on values)"
    return None


# -- capture --------------------------------------------------------------------------------
def _capture(step, x, y):
    """Run this step eagerly while recording it, and by its plan from the backward pass on;
    return (the Plan or the reason there is none, the loss), the loss None when the step
    was not run."""
    optimizer = step.optimizer
    if any(isinstance(m, Dropout) and m.training and m.p > 0 for m in step.modules):
        return "Dropout in training mode draws a new mask every step", None
    grad_buffers = {}
    for group in optimizer.param_groups:
        flat = optimizer.flat_buffers(group)
        if flat is not None:
            grad_buffers.update(zip(map(id, flat.params), flat.grad_views))
    inputs = Tensor(xp.array(x)), Tensor(xp.array(y))
    with recording() as calls:
        output = step.model(inputs[0])
        loss = step.loss_fn(output, inputs[1])
    plan = _plan(step, calls, inputs, output, loss, grad_buffers)
    step.output = output.data
    if isinstance(plan, str):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return plan, loss.item()
    plan.gradients()
    if step.numba is True:
        from backprop.compile import numba_step

        plan.adopt(numba_step.make(plan))
    elif step.numba == "auto":
        plan.numba_reason = _NOT_YET
        if step.replayed >= NUMBA_FROM or step.expected >= NUMBA_FROM:
            step._numba_in_background(plan)
    step.numba_reason = plan.numba_reason
    optimizer.step()
    return plan, plan.loss_value()


def _plan(step, calls, inputs, output, loss, grad_buffers):
    """The Plan of a recorded step, or a sentence saying why it cannot be replayed."""
    params = {id(p): p for p in step.params}
    known = {id(t.data) for t in inputs} | {id(p.data) for p in params.values()}  # rewritten or updated in place
    forward, written, order = [], [], {}  # written: every array a kernel writes, for Plan.verify
    for i, (node, op, kernel) in enumerate(calls):
        if kernel is None:
            return f"the primitive {op} has no kernel for these arguments"
        reason = _unknown(kernel.args, known)
        if reason:
            return f"{op} reads {reason} that the plan does not rewrite"
        writes = [node.data, *(a for a in kernel.keywords.values() if isinstance(a, xp.ndarray))]
        known.update(map(id, writes))
        written += writes
        forward.append((op, kernel, node.data))
        order[id(node)] = i
    if id(loss) not in order or not loss.requires_grad:
        return "the loss is not computed by primitives the plan knows"
    nodes, leaves = [], []
    seen, stack = {id(loss)}, [loss]
    while stack:
        node = stack.pop()
        if node.has_hooks:
            return "a backward hook is registered on a Tensor of the step (it must run in backward)"
        if node.is_leaf:
            if id(node) not in params:
                return "a leaf that requires grad is not a parameter of the optimizer"
            leaves.append(node)
            continue
        if id(node) not in order:
            return f"the primitive {node.op} was not computed in this step"
        if node.retains_grad:
            return "retain_grad() asks for an intermediate gradient"
        nodes.append(node)
        for parent, vjp in zip(node.inputs, node.vjps):
            function, bound = vjp_parts(vjp)
            if getattr(function, "__closure__", None) or getattr(vjp, "keywords", None):
                return f"{node.op}'s derivative holds values the plan cannot see"
            reason = _unknown(bound, known)
            if reason:
                return f"{node.op}'s derivative holds {reason} that the plan does not rewrite"
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    if id(output.data) not in known:
        return "the model's output is not computed by primitives the plan knows"
    nodes.sort(key=lambda node: -order[id(node)])  # newest first: the order Tensor.backward visits them in
    plan = Plan(step, inputs, forward, loss, output.data, nodes, leaves, grad_buffers)
    return plan.verify(written) or plan


def _unknown(values, known):
    """Which of ``values`` (a kernel's or a VJP's bound arguments) is an array the plan does
    not rewrite, in words (None if none is): a 0-d array that no primitive made is a
    number lifted to a Tensor, the same every step."""
    for value in values:
        if isinstance(value, xp.generic):
            return "a NumPy scalar"
        if isinstance(value, xp.ndarray) and id(value) not in known and value.ndim:
            return "an array"
    return None
