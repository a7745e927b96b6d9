"""backprop.nn.functional against torch.nn.functional in float64: values and gradients."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backprop
from backprop import Tensor
from backprop.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

REDUCTIONS = ["mean", "sum", "none"]


def assert_matches_torch(ours, theirs, *arrays, differentiable=None):
    """Run ``ours`` on backprop Tensors and ``theirs`` on torch tensors built from the same
    float64 arrays; compare the outputs and the gradients of sum(out * v), v random."""
    differentiable = range(len(arrays)) if differentiable is None else differentiable
    ours_in = [Tensor(a.copy(), requires_grad=i in differentiable) for i, a in enumerate(arrays)]
    theirs_in = [torch.tensor(a, requires_grad=i in differentiable) for i, a in enumerate(arrays)]
    out, expected = ours(*ours_in), theirs(*theirs_in)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert out.dtype == np.float64
    v = np.random.default_rng(1).standard_normal(out.shape)
    (out * v).sum().backward()
    (expected * torch.tensor(v)).sum().backward()
    for i in differentiable:
        np.testing.assert_allclose(ours_in[i].grad, theirs_in[i].grad.numpy(), rtol=1e-10, atol=1e-12)


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def probabilities(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.02, 0.98, shape)


def one_hot_probabilities(n, c, seed=0):
    logits = randn(n, c, seed=seed)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


# -- activations -----------------------------------------------------------------------
ACTIVATIONS = [
    ("relu", F.relu, TF.relu),
    ("leaky_relu", F.leaky_relu, TF.leaky_relu),
    ("leaky_relu_0.2", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    ("sigmoid", F.sigmoid, torch.sigmoid),
    ("tanh", F.tanh, torch.tanh),
    ("gelu", F.gelu, TF.gelu),
    ("softmax", F.softmax, lambda x: TF.softmax(x, dim=-1)),
    ("softmax_dim0", lambda x: F.softmax(x, dim=0), lambda x: TF.softmax(x, dim=0)),
    ("log_softmax", F.log_softmax, lambda x: TF.log_softmax(x, dim=-1)),
    ("log_softmax_dim0", lambda x: F.log_softmax(x, dim=0), lambda x: TF.log_softmax(x, dim=0)),
]


@pytest.mark.parametrize("name,ours,theirs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@settings(max_examples=8, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_activation_matches_torch(name, ours, theirs, shape, seed):
    assert_matches_torch(ours, theirs, randn(*shape, seed=seed) * 3)


@pytest.mark.parametrize("name,ours,theirs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_passes_gradcheck(name, ours, theirs):
    assert backprop.gradcheck(ours, [Tensor(randn(3, 4) + 0.05, requires_grad=True)])


def test_linear_matches_torch_with_and_without_bias():
    x, w, b = randn(5, 3, seed=1), randn(4, 3, seed=2), randn(4, seed=3)
    assert_matches_torch(F.linear, TF.linear, x, w, b)
    assert_matches_torch(F.linear, TF.linear, x, w)


def test_activations_keep_float32():
    x = Tensor(np.ones((2, 3), dtype=np.float32))
    for fn in (F.relu, F.leaky_relu, F.sigmoid, F.tanh, F.gelu, F.softmax, F.log_softmax, F.dropout):
        assert fn(x).dtype == np.float32


def test_the_functional_api_has_one_public_path_backprop_nn_functional():
    from pathlib import Path

    assert backprop.nn.functional is F and all(callable(getattr(F, name)) for name in F.__all__)
    assert not (Path(backprop.__file__).parent / "functional.py").exists()


# -- dropout ---------------------------------------------------------------------------
def test_dropout_is_identity_when_not_training_or_p_is_zero():
    x = Tensor(randn(4, 5))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


def test_dropout_keeps_the_expected_value_and_zeroes_about_p():
    backprop.manual_seed(0)
    x = Tensor(np.ones((200, 500)))
    y = F.dropout(x, p=0.3).data
    assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.005
    assert abs(y.mean() - 1.0) < 0.01


def test_dropout_gradient_is_the_mask():
    backprop.manual_seed(3)
    x = Tensor(randn(6, 7), requires_grad=True)
    y = F.dropout(x, p=0.4)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.where(y.data != 0, 1 / 0.6, 0.0))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\)"):
        F.dropout(Tensor(np.ones(3)), p)


# -- losses ----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@settings(max_examples=5, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 4), seed=st.integers(0, 1000))
def test_mse_loss_matches_torch(reduction, n, d, seed):
    assert_matches_torch(
        lambda x, y: F.mse_loss(x, y, reduction=reduction),
        lambda x, y: TF.mse_loss(x, y, reduction=reduction),
        randn(n, d, seed=seed),
        randn(n, d, seed=seed + 1),
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_torch(reduction):
    assert_matches_torch(
        lambda x, y: F.binary_cross_entropy(x, y, reduction=reduction),
        lambda x, y: TF.binary_cross_entropy(x, y, reduction=reduction),
        probabilities(6, 3),
        probabilities(6, 3, seed=1).round(),
        differentiable=[0],
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_soft_targets_matches_torch(reduction):
    assert_matches_torch(
        lambda x, y: F.binary_cross_entropy(x, y, reduction=reduction),
        lambda x, y: TF.binary_cross_entropy(x, y, reduction=reduction),
        probabilities(7),
        probabilities(7, seed=5),
        differentiable=[0],
    )


def test_binary_cross_entropy_clamps_the_log_at_minus_100_like_torch():
    x, y = np.array([0.0, 1.0, 0.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    ours = F.binary_cross_entropy(Tensor(x, requires_grad=True), y, reduction="none")
    expected = TF.binary_cross_entropy(torch.tensor(x), torch.tensor(y), reduction="none")
    np.testing.assert_allclose(ours.data, expected.numpy())
    np.testing.assert_allclose(ours.data[:2], [100.0, 100.0])
    x_tensor = Tensor(x, requires_grad=True)
    F.binary_cross_entropy(x_tensor, y).backward()
    assert np.isfinite(x_tensor.grad).all()


def test_binary_cross_entropy_rejects_values_outside_0_1():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: the input must hold probabilities in \[0, 1\]"):
        F.binary_cross_entropy(Tensor([0.5, 1.5]), np.array([0.0, 1.0]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_matches_torch(reduction):
    assert_matches_torch(
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction=reduction),
        lambda x, y: TF.binary_cross_entropy_with_logits(x, y, reduction=reduction),
        randn(5, 2) * 4,
        probabilities(5, 2, seed=2),
        differentiable=[0],
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@settings(max_examples=5, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(2, 5), seed=st.integers(0, 1000))
def test_cross_entropy_with_class_indices_matches_torch(reduction, n, c, seed):
    labels = np.random.default_rng(seed).integers(0, c, n)
    assert_matches_torch(
        lambda x: F.cross_entropy(x, labels, reduction=reduction),
        lambda x: TF.cross_entropy(x, torch.tensor(labels), reduction=reduction),
        randn(n, c, seed=seed) * 2,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_probabilities_matches_torch(reduction):
    assert_matches_torch(
        lambda x, y: F.cross_entropy(x, y, reduction=reduction),
        lambda x, y: TF.cross_entropy(x, y, reduction=reduction),
        randn(5, 4),
        one_hot_probabilities(5, 4, seed=7),
        differentiable=[0],
    )


@pytest.mark.parametrize("target", ["indices", "probabilities"])
def test_cross_entropy_with_label_smoothing_matches_torch(target):
    y = np.array([2, 0, 1, 2]) if target == "indices" else one_hot_probabilities(4, 3, seed=2)
    assert_matches_torch(
        lambda x: F.cross_entropy(x, y, label_smoothing=0.1),
        lambda x: TF.cross_entropy(x, torch.tensor(y), label_smoothing=0.1),
        randn(4, 3),
    )


def test_cross_entropy_is_stable_at_logits_of_plus_minus_1000():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0], [0.0, 0.0, -1000.0]])
    labels = np.array([1, 2, 0])
    assert_matches_torch(
        lambda x: F.cross_entropy(x, labels),
        lambda x: TF.cross_entropy(x, torch.tensor(labels)),
        logits,
    )
    x = Tensor(logits.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x, labels)
    loss.backward()
    assert np.isfinite(loss.data) and np.isfinite(x.grad).all()
    assert loss.dtype == np.float32


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_torch(reduction):
    labels = np.array([3, 0, 1, 1, 2])
    assert_matches_torch(
        lambda x: F.nll_loss(F.log_softmax(x, dim=1), labels, reduction=reduction),
        lambda x: TF.nll_loss(TF.log_softmax(x, dim=1), torch.tensor(labels), reduction=reduction),
        randn(5, 4),
    )


def test_nll_loss_gradient_counts_repeated_classes():
    x = Tensor(randn(4, 2), requires_grad=True)
    F.nll_loss(x, np.array([1, 1, 1, 0]), reduction="sum").backward()
    np.testing.assert_array_equal(x.grad, [[0, -1], [0, -1], [0, -1], [-1, 0]])


LABELS = np.array([0, 2, 1, 2])
LOSSES = [
    ("mse", lambda x, r: F.mse_loss(x, randn(4, 3, seed=9), reduction=r)),
    ("bce", lambda x, r: F.binary_cross_entropy(F.sigmoid(x), probabilities(4, 3, seed=9), reduction=r)),
    ("bce_logits", lambda x, r: F.binary_cross_entropy_with_logits(x, probabilities(4, 3, seed=9), reduction=r)),
    ("ce_indices", lambda x, r: F.cross_entropy(x, LABELS, reduction=r)),
    ("ce_probabilities", lambda x, r: F.cross_entropy(x, one_hot_probabilities(4, 3, seed=9), reduction=r)),
    ("ce_smoothing", lambda x, r: F.cross_entropy(x, LABELS, reduction=r, label_smoothing=0.2)),
    ("nll", lambda x, r: F.nll_loss(F.log_softmax(x, dim=1), LABELS, reduction=r)),
]


@pytest.mark.parametrize("name,loss", LOSSES, ids=[loss[0] for loss in LOSSES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_passes_gradcheck(name, loss, reduction):
    assert backprop.gradcheck(lambda x: loss(x, reduction), [Tensor(randn(4, 3), requires_grad=True)])


def test_mse_loss_gives_a_target_that_requires_grad_its_gradient():
    x, y = Tensor(randn(3), requires_grad=True), Tensor(randn(3, seed=1), requires_grad=True)
    F.mse_loss(x, y).backward()
    np.testing.assert_allclose(y.grad, -x.grad)


def test_losses_accept_tensor_and_ndarray_targets_and_keep_float32():
    x = Tensor(randn(4, 3).astype(np.float32), requires_grad=True)
    y = randn(4, 3, seed=1)  # float64 target: the loss stays in the input's dtype
    assert F.mse_loss(x, y).dtype == np.float32
    assert F.mse_loss(x, Tensor(y)).item() == pytest.approx(F.mse_loss(x, y).item())
    labels = np.array([0, 1, 2, 1])
    assert F.cross_entropy(x, Tensor(labels)).item() == F.cross_entropy(x, labels).item()
    assert F.binary_cross_entropy_with_logits(x, y > 0).dtype == np.float32


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.mse_loss(Tensor(np.ones((4, 1))), np.ones(4)),
        lambda: F.binary_cross_entropy(Tensor(np.full((4,), 0.5)), np.ones((4, 1))),
        lambda: F.binary_cross_entropy_with_logits(Tensor(np.ones((2, 3))), np.ones((3, 2))),
        lambda: F.cross_entropy(Tensor(np.ones((4, 3))), np.ones((4, 2))),
        lambda: F.cross_entropy(Tensor(np.ones((4, 3))), np.array([0, 1, 2])),
    ],
)
def test_losses_name_both_shapes_when_they_differ(call):
    with pytest.raises(ValueError, match=r"target has shape \(.*\), but the input has shape \("):
        call()


def test_cross_entropy_names_a_class_out_of_range():
    with pytest.raises(ValueError, match=r"target contains class 7, but the input has 5 classes \(expected 0\.\.4\)"):
        F.cross_entropy(Tensor(np.zeros((3, 5))), np.array([1, 7, 2]))
    with pytest.raises(ValueError, match="target contains class -1"):
        F.nll_loss(Tensor(np.zeros((2, 5))), np.array([-1, 0]))
    for dtype in (np.int8, np.int32, np.uint8, np.uint64):  # the range check reads them as unsigned
        with pytest.raises(ValueError, match="target contains class 5"):
            F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([0, 5], dtype=dtype))
    with pytest.raises(ValueError, match="target contains class -3"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([0, -3], dtype=np.int16))


@pytest.mark.parametrize("dtype", [">i8", ">i4", ">u2"])
def test_cross_entropy_takes_class_indices_in_either_byte_order(dtype):
    logits = np.random.default_rng(0).normal(size=(4, 5))
    native = np.array([0, 4, 2, 1])
    expected = F.cross_entropy(Tensor(logits), native).item()
    assert F.cross_entropy(Tensor(logits), native.astype(dtype)).item() == expected  # (a file may hold either)
    with pytest.raises(ValueError, match="target contains class 5"):
        F.cross_entropy(Tensor(logits), np.array([0, 5, 1, 1], dtype=dtype))


def test_cross_entropy_asks_for_integer_indices_when_given_float_labels():
    with pytest.raises(ValueError, match=r"must hold integer class indices; got dtype float64"):
        F.cross_entropy(Tensor(np.zeros((3, 5))), np.array([1.0, 2.0, 0.0]))


def test_losses_reject_an_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none'; got 'avg'"):
        F.mse_loss(Tensor(np.ones(2)), np.ones(2), reduction="avg")
