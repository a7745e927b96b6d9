"""The engine's bookkeeping: the reverse walk, accumulation, no_grad, dtypes, release."""

import gc
import weakref

import numpy as np
import pytest

import backprop as bp


def test_backward_through_a_chain_of_100000_operations():
    x = bp.Tensor(1.5, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == pytest.approx(1.0)


def test_scalar_backward_defaults_to_one_and_nonscalar_needs_grad():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar output; got shape \(2,\)"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])


def test_backward_grad_of_the_wrong_shape_is_refused():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        (x * 2).backward(np.ones(3))


def test_an_operation_on_a_parameter_gives_a_plain_tensor():
    weight = bp.nn.Parameter(np.ones(2))
    for result in (weight * 2, 2 * weight, weight.exp(), weight[0], bp.stack([weight, weight])):
        assert type(result) is bp.Tensor and result.requires_grad


def test_gradients_accumulate_across_backward_calls():
    x = bp.Tensor([1.0, -2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)


def test_retain_graph_allows_a_second_backward_and_its_absence_refuses_it():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * (np.exp(x.data) * (1 + x.data)), rtol=1e-6)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_releases_the_intermediate_values_unless_retained():
    for retain, released in [(False, True), (True, False)]:
        x = bp.Tensor(np.ones(10), requires_grad=True)
        hidden = x.tanh()
        alive = weakref.ref(hidden)
        loss = (hidden * 2).sum()
        del hidden
        loss.backward(retain_graph=retain)
        gc.collect()
        assert (alive() is None) == released


def test_a_shared_subexpression_collects_gradient_from_every_path():
    x = bp.Tensor(3.0, requires_grad=True)
    a = x * x  # used twice below: da/dx contributes along both paths
    (a * a + a).backward()
    assert x.grad == pytest.approx(4 * 3.0**3 + 2 * 3.0)


def test_two_leaves_never_share_one_gradient_array():
    a = bp.Tensor([1.0, 2.0], requires_grad=True)
    b = bp.Tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad *= 10  # e.g. gradient clipping in place
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_leaf_gradient_is_writable_and_owns_its_memory_after_a_broadcast():
    w = bp.Tensor(np.ones(3), requires_grad=True)
    (w * np.ones((4, 3))).sum().backward()
    w.grad += 1
    np.testing.assert_array_equal(w.grad, [5.0, 5.0, 5.0])


def test_no_grad_records_nothing():
    x = bp.Tensor([1.0], requires_grad=True)
    with bp.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert (x * 2).requires_grad


def test_no_grad_works_as_a_decorator_and_restores_the_mode():
    @bp.no_grad()
    def double(t):
        return t * 2

    assert not double(bp.Tensor([1.0], requires_grad=True)).requires_grad
    assert bp.is_grad_enabled()


def test_retain_grad_keeps_an_intermediate_gradient():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)
    np.testing.assert_array_equal(x.grad, 18 * x.data)


def test_detach_cuts_the_graph():
    x = bp.Tensor([2.0], requires_grad=True)
    (x * x.detach()).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0])


def test_python_data_is_float32_and_arrays_keep_their_dtype():
    assert bp.Tensor([1.0, 2.0]).dtype == np.float32
    assert bp.Tensor(2.5).dtype == np.float32
    assert bp.Tensor([1, 2]).dtype == np.int64
    assert bp.Tensor(np.zeros(2)).dtype == np.float64
    assert bp.Tensor([1.0], dtype=np.float64).dtype == np.float64


def test_python_scalars_never_upcast_float32():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    y = (2.5 * x + 1) / 3.0 - 0.5
    y = y**2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float64_is_kept_through_every_step():
    x = bp.Tensor(np.array([[0.5, -1.0]]), requires_grad=True)
    y = (x @ np.ones((2, 3))).sigmoid().log_softmax(-1).mean()
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float64


def test_ndarray_on_the_left_of_an_operator_gives_a_tensor():
    x = bp.Tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], dtype=np.float32) * x
    assert isinstance(y, bp.Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_only_float_tensors_may_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        bp.Tensor([1, 2], requires_grad=True)


def test_backward_on_a_tensor_without_graph_is_refused():
    with pytest.raises(RuntimeError, match="does not require grad"):
        bp.Tensor([1.0]).sum().backward()


def test_item_and_numpy_and_repr():
    t = bp.Tensor([[3.0]])
    assert t.item() == 3.0 and isinstance(t.numpy(), np.ndarray)
    assert "Tensor(" in repr(t)
    with pytest.raises(ValueError, match="one element"):
        bp.Tensor([1.0, 2.0]).item()
    assert float(bp.Tensor([[2.5]])) == 2.5 and f"{float(bp.Tensor(0.25)):.2f}" == "0.25"
    with pytest.raises(ValueError, match="one element"):
        float(bp.Tensor([1.0, 2.0]))


# -- what a Tensor can hold: numbers, as torch.tensor ----------------------------------------------------
NOT_NUMBERS = {
    "str": "abc",
    "bytes": b"ab",
    "None": None,
    "dict": {"a": 1},
    "mixed list": [1, "a"],
    "object array": np.array([object()]),
    "str array": np.array(["a", "b"]),
    "bytes array": np.array([b"a"]),
    "datetime array": np.array([1], dtype="M8[s]"),
    "structured array": np.array([(1, 2)], dtype="i4,i4"),
    "ragged list": [[1, 2], [3]],
}


@pytest.mark.parametrize("data", NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
def test_data_that_torch_tensor_refuses_is_one_clear_error(data):
    torch = pytest.importorskip("torch")
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        torch.tensor(data)
    with pytest.raises((TypeError, ValueError)) as error:
        bp.Tensor(data)
    assert str(error.value).startswith("Tensor: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("data", [True, 3, 2.5, [], [[1, 2], [3, 4]], np.float16(1), np.arange(3, dtype=np.uint8), 1 + 2j])
def test_numbers_that_torch_tensor_accepts_are_accepted(data):
    torch = pytest.importorskip("torch")
    assert tuple(torch.tensor(data).shape) == bp.Tensor(data).shape


def test_a_recording_sees_every_result_however_the_op_was_imported_and_only_its_own_thread():
    import threading

    from backprop.ops import relu  # bound before the recording: nothing is replaced
    from backprop.tensor import recording

    def compute(seed, results):
        x = bp.Tensor(np.random.default_rng(seed).normal(size=(3, 2)), requires_grad=True)
        barrier.wait()  # both threads record at the same time
        with recording() as calls:
            for _ in range(200):
                y = relu(x * 2.0).sum()
        results[seed] = (calls, y)

    barrier, results = threading.Barrier(2), {}
    threads = [threading.Thread(target=compute, args=(seed, results)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [1, 2]
    for calls, y in results.values():
        assert [op for _, op, _ in calls] == ["mul", "relu", "sum"] * 200
        assert calls[-1][0] is y
        for node, _, kernel in calls:  # each kernel recomputes its own result
            np.testing.assert_array_equal(kernel(out=np.empty_like(node.data)), node.data)
    with recording() as outside:
        pass
    assert outside == []


# -- in place, as PyTorch: the updates of its beginner examples ------------------------------------
def test_the_raw_tensor_cubic_fit_updates_in_place_as_torch_does():
    """"Learning PyTorch with Examples": a cubic fitted to sin(x) with raw tensors, updated
    with ``with no_grad(): a -= lr * a.grad``."""
    torch = pytest.importorskip("torch")
    x = np.linspace(-np.pi, np.pi, 200)
    results = []
    for lib in (bp, torch):
        X, Y = lib.tensor(x), lib.tensor(np.sin(x))
        a, b, c, d = (lib.tensor(np.float64(v), requires_grad=True) for v in (0.1, -0.2, 0.3, 0.05))
        for _ in range(50):
            loss = (a + b * X + c * X**2 + d * X**3 - Y).pow(2).sum() if lib is torch else \
                ((a + b * X + c * X**2 + d * X**3 - Y) ** 2).sum()
            loss.backward()
            with lib.no_grad():
                for p in (a, b, c, d):
                    p -= 1e-6 * p.grad
                    p.grad = None
        results.append([float(p.item()) for p in (a, b, c, d)] + [loss.item()])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-10)


def test_a_models_parameters_updated_in_place_under_no_grad_train_as_torch():
    torch = pytest.importorskip("torch")
    from backprop import nn

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    with torch.no_grad():
        for p, q in zip(model.parameters(), reference.parameters()):
            q.copy_(torch.tensor(p.data))
    for _ in range(5):
        for net, lib, loss_fn in ((model, bp, nn.CrossEntropyLoss()), (reference, torch, torch.nn.CrossEntropyLoss())):
            net.zero_grad()
            loss_fn(net(lib.tensor(X)), lib.tensor(y)).backward()
            with lib.no_grad():
                for p in net.parameters():
                    p -= 0.5 * p.grad
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-5, atol=1e-6)
        assert p.data.base is not None or p.data.flags.owndata  # the Parameter's own array, changed in place


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_in_place_arithmetic_equals_torch_and_keeps_the_tensor(op):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 4)).astype(np.float32), rng.uniform(0.5, 2, size=4).astype(np.float32)
    ours, theirs = bp.Tensor(a.copy()), torch.tensor(a.copy())
    before, array = id(ours), ours.data
    exec(f"ours {op} bp.Tensor(b)\ntheirs {op} torch.tensor(b)")
    assert id(ours) == before and ours.data is array
    np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_in_place_on_a_leaf_that_requires_grad_is_refused_outside_no_grad_as_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.ones(2, requires_grad=True).sub_(1)
    w = bp.Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place operation is not recorded"):
        w -= 1.0
    with pytest.raises(RuntimeError, match="in-place operation is not recorded"):
        x = bp.Tensor([1.0, 2.0])
        x += w
    np.testing.assert_array_equal(w.data, [1.0, 2.0])


def test_backward_after_a_saved_value_changed_in_place_is_refused_as_torch():
    """As PyTorch's version check: refused when a value the gradient needs changed; a value
    it does not need (w, for the gradient of w * x) may change."""
    torch = pytest.importorskip("torch")
    for lib in (bp, torch):
        w, x = lib.tensor([1.0, 2.0], requires_grad=True), lib.tensor([3.0, 4.0])
        loss = (w * x).sum()
        with lib.no_grad():
            x *= 2.0  # dL/dw = x: now wrong
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()
        loss = (w * x).sum()
        with lib.no_grad():
            w -= 0.5  # not needed for dL/dw
        loss.backward()
        np.testing.assert_array_equal(np.asarray(w.grad), [6.0, 8.0])
        y = w.exp()
        with lib.no_grad():
            y *= 2.0  # exp's derivative is its output
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


def test_equality_is_elementwise_as_torch_and_tensors_stay_keys_by_identity():
    torch = pytest.importorskip("torch")
    a, b = np.array([[1, 2, 3], [4, 5, 6]]), np.array([1, 0, 3])
    assert (bp.tensor(a) == bp.tensor(b)).tolist() == (torch.tensor(a) == torch.tensor(b)).tolist()
    assert (bp.tensor(a) != 2).tolist() == (torch.tensor(a) != 2).tolist()
    assert int((bp.tensor(a).max(axis=1) == bp.tensor([3, 6])).data.sum()) == 2
    t, u = bp.tensor([1.0]), bp.tensor([1.0])
    assert len({t: 1, u: 2}) == 2


def test_the_truth_of_a_tensor_is_its_one_element_or_an_error_as_torch():
    torch = pytest.importorskip("torch")
    for lib in (bp, torch):
        assert bool(lib.tensor([2.0]) == 2.0) and not bool(lib.tensor(0.0))
        with pytest.raises(RuntimeError):
            bool(lib.tensor([1.0, 2.0]) == lib.tensor([1.0, 2.0]))


def test_grad_is_a_tensor_accumulated_in_place_and_assigned_only_as_one():
    x = bp.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    grad = x.grad
    (x * x).sum().backward()
    assert isinstance(grad, bp.Tensor) and x.grad is grad and not grad.requires_grad
    np.testing.assert_array_equal(grad.numpy(), [5.0, 7.0])
    with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None; got ndarray"):
        x.grad = np.zeros(2)
    with pytest.raises(ValueError, match=r"assigned grad has shape \(3,\)"):
        x.grad = bp.zeros(3, dtype=bp.float64)
    x.grad = None
    assert x.grad is None


@pytest.mark.parametrize("edit", [
    lambda x: x.add_(1), lambda x: x.mul_(2), lambda x: x.zero_(), lambda x: x.fill_(3.0),
    lambda x: x.copy_(x * 2), lambda x: x.__setitem__(0, 7.0), lambda x: x.clamp_(0, 0.5),
])
def test_every_named_in_place_edit_of_a_saved_value_makes_backward_raise_as_torch(edit):
    torch = pytest.importorskip("torch")
    for lib in (bp, torch):
        w = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        x = lib.tensor([0.1, 0.2, 0.3], dtype=lib.float64)
        y = (w * x).sum()  # mul saves x for w's gradient
        with lib.no_grad():
            edit(x)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_views_share_memory_with_their_tensor_as_torch():
    torch = pytest.importorskip("torch")
    for lib in (bp, torch):
        v = lib.arange(6.0)
        v.view(2, 3)[0, 1] = 10.0
        v.unsqueeze(0)[0, 2] = 20.0
        v.reshape(3, 2).t()[1, 0] = 30.0
        v[4:][0] = 40.0
        assert v.tolist() == [0.0, 30.0, 20.0, 3.0, 40.0, 5.0], lib.__name__
