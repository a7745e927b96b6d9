"""``backprop.autograd``, as ``torch.autograd``: ``Function``, a primitive of one's own, and
``gradcheck``.

A ``Function`` is what every primitive in ``ops.py`` is, written by its user: a forward
that computes y from the inputs and saves what the derivative needs (``ctx``), and a
backward that maps g = dL/dy to dL/dinput for each input, the vector-Jacobian product::

    class Cube(backprop.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3 * x ** 2       # dL/dx = g dy/dx

    y = Cube.apply(x)

The graph holds the result as one node, named after the class, whose VJPs call
``backward`` (once per gradient, shared by the inputs); ``forward`` and ``backward`` run
without recording a graph of their own.
"""

from backprop.gradcheck import gradcheck
from backprop.tensor import Tensor, array_of, no_grad


class FunctionCtx:
    """What ``forward`` hands to ``backward``: ``save_for_backward(*tensors)`` then
    ``saved_tensors``, ``needs_input_grad`` (one bool per input), and any attribute set."""

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors):
        pass  # the outputs of Function.apply have a gradient only through backward anyway


class Function:
    """Subclass with static ``forward(ctx, *inputs)`` (returning one Tensor) and
    ``backward(ctx, grad_output)`` (returning one gradient, or None, per input); call
    ``apply(*inputs)``."""

    @staticmethod
    def forward(ctx, *inputs):
        raise NotImplementedError("a Function must define forward(ctx, *inputs)")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("a Function must define backward(ctx, grad_output)")

    @classmethod
    def apply(cls, *inputs):
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
        with no_grad():
            output = cls.forward(ctx, *inputs)
        if not isinstance(output, Tensor):
            raise TypeError(f"{cls.__name__}.forward must return one Tensor; got {type(output).__name__}")
        tensors = [(k, x) for k, x in enumerate(inputs) if isinstance(x, Tensor)]
        if not tensors:
            return output
        last = {}  # the gradients of the last g: backward runs once for all inputs

        def gradients(g):
            if last.get("g") is not g:
                with no_grad():
                    grads = cls.backward(ctx, Tensor(g))
                last.update(g=g, grads=grads if isinstance(grads, tuple) else (grads,))
            grads = last["grads"]
            if len(grads) != len(inputs):
                raise RuntimeError(
                    f"{cls.__name__}.backward returned {len(grads)} gradients; forward took {len(inputs)} inputs"
                )
            return grads

        def vjp(k, x):
            def input_vjp(g):
                grad = gradients(g)[k]
                if grad is None:
                    return x.data * 0
                grad = array_of(grad, x.dtype)
                if grad.shape != x.shape:
                    raise RuntimeError(
                        f"{cls.__name__}.backward: the gradient of input {k} has shape {grad.shape}; "
                        f"the input has {x.shape}"
                    )
                return grad

            return input_vjp

        return tensors[0][1]._from_op(output.data, cls.__name__, [(x, vjp(k, x)) for k, x in tensors])


__all__ = ["Function", "FunctionCtx", "gradcheck"]
