import numpy as np
import pytest

import backprop as bp
from backprop import ops
from backprop.gradcheck import numerical_gradient


def test_gradcheck_accepts_correct_gradients_of_a_composite_function():
    x = bp.Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    w = bp.Tensor(np.random.default_rng(1).standard_normal((2, 4)), requires_grad=True)
    assert bp.gradcheck(lambda x, w: ops.linear(x, w).tanh().softmax(-1), [x, w])


def test_gradcheck_names_the_input_element_and_both_values_of_a_wrong_gradient():
    def wrong_square(a):  # the VJP claims d(a^2)/da = a instead of 2a
        return bp.Tensor._from_op(a.data**2, "wrong_square", ((a, lambda g: g * a.data),))

    x = bp.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with pytest.raises(bp.GradcheckError, match=r"input 0, element \(0,\): analytic gradient 1 but numerical 2"):
        bp.gradcheck(lambda a: wrong_square(a).sum(), [x])


def test_gradcheck_runs_in_float64_even_for_float32_inputs():
    x = bp.Tensor([0.1, 0.2, 0.3], requires_grad=True)
    assert x.dtype == np.float32
    assert bp.gradcheck(lambda a: (a * 1e3).exp().log() ** 3, [x], atol=1e-7, rtol=1e-7)


def test_gradcheck_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        bp.gradcheck(lambda a: a * 2, [bp.Tensor([1.0])])


def test_numerical_gradient_is_the_central_difference_and_restores_the_array():
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = w.copy()
    numerical = numerical_gradient(lambda: float((w**3).sum()), w, eps=1e-4)
    np.testing.assert_allclose(numerical, 3 * w**2 + 1e-8, rtol=1e-7)  # d/dw w^3 = 3w^2 (+ eps^2)
    np.testing.assert_array_equal(w, before)


def test_numerical_gradient_checks_only_the_entries_asked_for():
    w = np.arange(6.0)
    numerical = numerical_gradient(lambda: float((2 * w).sum()), w, entries=[1, 4])
    np.testing.assert_allclose(numerical[[1, 4]], 2.0)
    assert np.isnan(numerical[[0, 2, 3, 5]]).all()


def test_numerical_gradient_refuses_an_array_it_cannot_nudge_in_place():
    w = np.ones((3, 4)).T  # reshape(-1) of a transposed array is a copy
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: float(w.sum()), w)
