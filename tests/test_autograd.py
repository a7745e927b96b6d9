"""backprop.autograd.Function: a user's primitive, against finite differences and PyTorch."""

import numpy as np
import pytest

import backprop
from backprop import Tensor
from backprop.autograd import Function
from backprop.explain import to_dot

torch = pytest.importorskip("torch")


def legendre(library):
    """PyTorch's tutorial Function P3(x) = (5x^3 - 3x) / 2, written for ``library``."""

    class LegendrePolynomial3(library.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)

    return LegendrePolynomial3


class ScaledProduct(Function):
    """y = s a b for Tensors a, b and a number s: two gradients, and None for s."""

    @staticmethod
    def forward(ctx, a, b, s):
        ctx.save_for_backward(a, b)
        ctx.s = s
        return a * b * s

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b * ctx.s, g * a * ctx.s, None


def test_a_function_gives_pytorchs_values_and_gradients():
    x = np.linspace(-1.5, 1.5, 7)
    ours = Tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, expected = legendre(backprop).apply(ours * 2), legendre(torch).apply(theirs * 2)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    np.testing.assert_allclose(y.numpy(), expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


def test_gradcheck_passes_a_right_backward_and_catches_a_wrong_one():
    x = Tensor(np.linspace(-1, 1, 5), requires_grad=True)
    assert backprop.autograd.gradcheck(legendre(backprop).apply, (x,))

    class Wrong(legendre(backprop)):
        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * 5 * input ** 2  # the -1 forgotten

    with pytest.raises(backprop.GradcheckError, match="analytic gradient"):
        backprop.autograd.gradcheck(Wrong.apply, (x,))


def test_several_inputs_get_their_own_gradients_and_backward_runs_once_per_gradient():
    calls = []

    class Counted(ScaledProduct):
        @staticmethod
        def backward(ctx, g):
            calls.append(1)
            return ScaledProduct.backward(ctx, g)

    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([3.0, -1.0]), requires_grad=True)
    y = Counted.apply(a, b, 2.0)
    y.sum().backward()
    assert len(calls) == 1
    np.testing.assert_array_equal(a.grad.numpy(), [6.0, -2.0])
    np.testing.assert_array_equal(b.grad.numpy(), [2.0, 4.0])
    assert backprop.gradcheck(lambda a, b: ScaledProduct.apply(a, b, 0.5), (a, b))


def test_needs_input_grad_and_a_none_gradient():
    seen = {}

    class Probe(ScaledProduct):
        @staticmethod
        def forward(ctx, a, b, s):
            seen["needs"] = ctx.needs_input_grad
            return ScaledProduct.forward(ctx, a, b, s)

    a = Tensor(np.ones(2), requires_grad=True)
    Probe.apply(a, Tensor(np.ones(2)), 1.0).sum().backward()
    assert seen["needs"] == (True, False, False)
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])


def test_the_graph_shows_the_function_as_one_stage():
    x = Tensor(np.ones(3), requires_grad=True)
    y = legendre(backprop).apply(x)
    assert y.op == "LegendrePolynomial3" and y.inputs == (x,)
    assert "LegendrePolynomial3" in to_dot(y.sum())


def test_a_backward_of_the_wrong_shape_or_count_is_one_clear_error():
    class BadShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g.sum()

    class BadCount(BadShape):
        @staticmethod
        def backward(ctx, g):
            return g, g

    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"BadShape.backward: the gradient of input 0 has shape \(\)"):
        BadShape.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match="BadCount.backward returned 2 gradients; forward took 1 inputs"):
        BadCount.apply(x).sum().backward()
    with pytest.raises(TypeError, match="must return one Tensor"):
        type("NoTensor", (Function,), {"forward": staticmethod(lambda ctx, x: 3.0)}).apply(x)
