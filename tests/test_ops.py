"""Every primitive's value and gradient against finite differences and against PyTorch.

One helper, ``check``, runs an expression in backprop and (when installed) in PyTorch on
the same float64 inputs, compares the outputs and the vector-Jacobian products for a
random vector, and runs ``gradcheck`` (central differences) on it. Each case is a line.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import backprop as bp
from backprop import backend, loss_ops, ops

try:
    import torch
except ImportError:  # the PyTorch comparison is skipped; finite differences still run
    torch = None


def _inputs(shapes, domain, rng):
    low, high = {"any": (-2, 2), "positive": (0.2, 2)}[domain if domain != "away_from_zero" else "positive"]
    arrays = [rng.uniform(low, high, size=shape) for shape in shapes]
    if domain == "away_from_zero":  # keep kinks (|x|, relu, clip) out of the difference quotient
        arrays = [a * rng.choice([-1.0, 1.0], size=a.shape) for a in arrays]
    return arrays


def check(fn, shapes, torch_fn=None, domain="any", seed=0):
    """``fn`` on backprop Tensors vs ``torch_fn`` (default: ``fn``) on torch tensors, float64."""
    rng = np.random.default_rng(seed)
    arrays = _inputs(shapes, domain, rng)
    assert bp.gradcheck(fn, [bp.Tensor(a.copy(), requires_grad=True) for a in arrays])
    if torch is None:
        return
    ours = [bp.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*ours)
    v = rng.standard_normal(out.shape)
    (out * v).sum().backward()
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = (torch_fn or fn)(*theirs)
    (expected * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad, reference.grad.numpy(), rtol=1e-10, atol=1e-12)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((), (2, 3))])
def test_binary_op_gradients_match_torch_with_broadcasting(op, shapes):
    check(BINARY[op], shapes, domain="positive")


@settings(max_examples=25, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), op=st.sampled_from(list(BINARY)))
def test_binary_op_gradients_on_random_broadcast_shapes(shapes, op):
    check(BINARY[op], shapes.input_shapes, domain="positive")


@pytest.mark.parametrize("scalar", [2.5, -1, 3])
def test_python_scalars_mix_on_either_side(scalar):
    check(lambda a: scalar - a * scalar + scalar / a + a / scalar - (scalar + a), [(2, 3)], domain="positive")


UNARY = [
    ("neg", lambda a: -a, None, "any"),
    ("exp", lambda a: a.exp(), None, "any"),
    ("log", lambda a: a.log(), None, "positive"),
    ("sqrt", lambda a: a.sqrt(), None, "positive"),
    ("abs", lambda a: a.abs(), None, "away_from_zero"),
    ("relu", lambda a: a.relu(), None, "away_from_zero"),
    ("sigmoid", lambda a: a.sigmoid(), None, "any"),
    ("tanh", lambda a: a.tanh(), None, "any"),
    ("gelu", lambda a: ops.gelu(a), lambda a: torch.nn.functional.gelu(a), "any"),
    ("leaky_relu", lambda a: a.leaky_relu(0.1), lambda a: torch.nn.functional.leaky_relu(a, 0.1), "away_from_zero"),
    ("pow_2", lambda a: a**2, None, "any"),
    ("pow_3", lambda a: a**3, None, "any"),
    ("pow_half", lambda a: a**0.5, None, "positive"),
    ("pow_negative", lambda a: a**-1.5, None, "positive"),
    ("clip", lambda a: a.clip(-0.7, 0.9), lambda a: a.clamp(-0.7, 0.9), "any"),
    ("clip_min_only", lambda a: a.clip(min=0.3), lambda a: a.clamp(min=0.3), "any"),
    ("softmax_last", lambda a: a.softmax(-1), lambda a: a.softmax(-1), "any"),
    ("softmax_first", lambda a: a.softmax(0), lambda a: a.softmax(0), "any"),
    ("log_softmax_last", lambda a: a.log_softmax(-1), lambda a: a.log_softmax(-1), "any"),
    ("log_softmax_middle", lambda a: a.log_softmax(1), lambda a: a.log_softmax(1), "any"),
]


@pytest.mark.parametrize("name,fn,torch_fn,domain", UNARY, ids=[case[0] for case in UNARY])
def test_elementwise_gradients_match_torch(name, fn, torch_fn, domain):
    check(fn, [(2, 3, 4)], torch_fn=torch_fn, domain=domain)


REDUCTIONS = [
    (None, False),
    (0, False),
    (1, True),
    ((0, 2), False),
    (-1, True),
]


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axis,keepdims", REDUCTIONS)
def test_reduction_gradients_match_torch(name, axis, keepdims):
    torch_name = {"max": "amax", "min": "amin"}.get(name, name)

    def torch_fn(a):
        if axis is None:
            return getattr(a, torch_name)()
        return getattr(a, torch_name)(dim=axis, keepdim=keepdims)

    check(lambda a: getattr(a, torch_name)(axis=axis, keepdims=keepdims), [(2, 3, 4)], torch_fn=torch_fn)


def test_amax_shares_the_gradient_between_ties_like_torch_amax():
    x = bp.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True)
    x.amax(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [0.5, 0, 0.5]])


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((5, 1, 3, 4), (2, 4, 6)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradients_match_torch(shapes):
    check(lambda a, b: a @ b, shapes)


@pytest.mark.parametrize("x_shape", [(5, 3), (3,), (2, 5, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch_functional_linear(x_shape, with_bias):
    shapes = [x_shape, (4, 3)] + ([(4,)] if with_bias else [])
    check(ops.linear, shapes, torch_fn=torch and torch.nn.functional.linear)


SHAPE_OPS = [
    ("reshape", lambda a: a.reshape(4, 6), None),
    ("reshape_tuple", lambda a: a.reshape((3, -1)), None),
    ("T", lambda a: a.T, lambda a: a.permute(2, 1, 0)),
    ("permute", lambda a: a.permute(1, 2, 0), lambda a: a.permute(1, 2, 0)),
    ("transpose_two_dims", lambda a: a.transpose(0, 2), lambda a: a.transpose(0, 2)),
    ("int_index", lambda a: a[1], None),
    ("slices", lambda a: a[:, 1:3, ::2], None),
    ("negative_step", lambda a: a[::-1, 1], lambda a: a.flip(0)[:, 1]),
    ("int_array_with_repeats", lambda a: a[[0, 1, 0, 0]], lambda a: a[torch.tensor([0, 1, 0, 0])]),
    ("pairs_of_int_arrays", lambda a: a[np.array([0, 1, 1]), np.array([2, 0, 2])], lambda a: a[[0, 1, 1], [2, 0, 2]]),
    ("boolean_mask", lambda a: a[a.data > 0], lambda a: a[a > 0]),
    ("mixed", lambda a: a[1, [0, 2, 2], 1:], lambda a: a[1, [0, 2, 2], 1:]),
]


@pytest.mark.parametrize("name,fn,torch_fn", SHAPE_OPS, ids=[case[0] for case in SHAPE_OPS])
def test_shape_and_indexing_gradients_match_torch(name, fn, torch_fn):
    check(fn, [(2, 3, 4)], torch_fn=torch_fn)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack_gradients_match_torch(axis):
    check(lambda a, b, c: bp.concatenate([a, b, c], axis=axis), [(2, 3, 2)] * 3,
          torch_fn=lambda a, b, c: torch.cat([a, b, c], dim=axis))
    check(lambda a, b: bp.stack([a, b], axis=axis), [(2, 3), (2, 3)],
          torch_fn=lambda a, b: torch.stack([a, b], dim=axis))


def test_where_routes_the_gradient_to_the_chosen_side():
    condition = np.array([[True, False, True], [False, False, True]])
    check(lambda a, b: bp.where(condition, a, b), [(2, 3), (3,)],
          torch_fn=lambda a, b: torch.where(torch.tensor(condition), a, b))


def test_where_takes_a_number_on_either_side_and_a_tensor_condition_as_torch():
    pytest.importorskip("torch")
    x = bp.Tensor(np.array([-1.0, 2.0, -3.0], np.float32), requires_grad=True)
    condition = x > 0
    y = bp.where(condition, x, 0.5) + bp.where(condition, 0.25, x)
    y.sum().backward()
    xt = torch.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    yt = torch.where(xt > 0, xt, 0.5) + torch.where(xt > 0, 0.25, xt)
    yt.sum().backward()
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    np.testing.assert_array_equal(x.grad, xt.grad.numpy())


def test_softmax_cross_entropy_with_indices_and_probabilities_matches_torch():
    labels = np.array([2, 0, 1, 2])
    probabilities = np.random.default_rng(1).dirichlet(np.ones(3), size=4)
    for target in (labels, probabilities):
        check(lambda z: loss_ops.softmax_cross_entropy(z, target), [(4, 3)],
              torch_fn=lambda z: torch.nn.functional.cross_entropy(z, torch.tensor(target), reduction="none"))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softmax_cross_entropy_reduces_inside_one_node_like_torch(reduction, smoothing):
    labels = np.array([2, 0, 1, 2])
    probabilities = np.random.default_rng(1).dirichlet(np.ones(3), size=4)
    for target in (labels, probabilities):
        check(lambda z: loss_ops.softmax_cross_entropy(z, target, smoothing, reduction), [(4, 3)],
              torch_fn=lambda z: torch.nn.functional.cross_entropy(
                  z, torch.tensor(target), reduction=reduction, label_smoothing=smoothing))
    z = bp.Tensor(np.zeros((4, 3)), requires_grad=True)
    loss = loss_ops.softmax_cross_entropy(z, labels, smoothing, reduction)
    assert loss.op == "softmax_cross_entropy" and loss.inputs[0] is z


def test_softmax_cross_entropy_is_stable_at_huge_logits():
    z = bp.Tensor(np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]]), requires_grad=True)
    loss = loss_ops.softmax_cross_entropy(z, np.array([1, 2])).sum()
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(z.grad).all()
    np.testing.assert_allclose(loss.item(), 2000.0 + 1.0 + np.log1p(np.exp(-1.0)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [0.9, 1.1])  # inside and outside the range where no shift is needed
def test_softmax_cross_entropy_with_and_without_the_shift_matches_torch(dtype, scale):
    bound = np.log(np.finfo(dtype).max) / 2
    logits = np.random.default_rng(3).uniform(-1, 1, (6, 4)).astype(dtype) * dtype(scale * bound)
    logits[:, 0] = scale * bound  # close logits at the edge: the case the shift protects
    assert (backend.softmax_shift(logits) is logits) == (scale < 1)
    labels = np.array([0, 1, 2, 3, 0, 1])
    z = bp.Tensor(logits, requires_grad=True)
    loss = loss_ops.softmax_cross_entropy(z, labels, reduction="mean")
    loss.backward()
    zt = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    expected.backward()
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=rtol)
    np.testing.assert_allclose(z.grad, zt.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)


def test_binary_cross_entropy_with_logits_matches_torch_and_is_stable():
    target = np.array([[1.0, 0.0, 1.0], [0.0, 0.3, 1.0]])
    check(lambda z: loss_ops.binary_cross_entropy_with_logits(z, target), [(2, 3)],
          torch_fn=lambda z: torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(target), reduction="none"))
    z = bp.Tensor(np.array([1000.0, -1000.0]), requires_grad=True)
    loss = loss_ops.binary_cross_entropy_with_logits(z, np.array([0.0, 1.0]))
    np.testing.assert_allclose(loss.data, [1000.0, 1000.0])


def test_matmul_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 2\)"):
        bp.Tensor(np.ones((3, 4))) @ bp.Tensor(np.ones((5, 2)))


def test_linear_shape_error_names_the_feature_counts():
    with pytest.raises(ValueError, match="3 features.*expects 4"):
        ops.linear(bp.Tensor(np.ones((2, 3))), bp.Tensor(np.ones((5, 4))))


def test_a_tensor_exponent_differentiates_both_sides_as_torch():
    check(lambda a, b: a ** b, [(2, 3), (3,)], domain="positive")
    check(lambda a, b: a.pow(b), [(3,), (2, 3)], domain="positive")


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                      (lambda a, b: b - a, "sub"), (lambda a, b: a / b, "div")])
def test_shapes_that_cannot_broadcast_together_are_one_error_naming_the_operation(op, name):
    with pytest.raises(ValueError, match=rf"^{name}: shapes \(\d, ?\d?\)? ?and .* cannot be broadcast together$"):
        op(bp.Tensor(np.zeros((2, 3))), bp.Tensor(np.zeros(4)))
