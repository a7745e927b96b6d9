"""The engine's hooks against PyTorch's: register_hook, register_post_accumulate_grad_hook,
and queue_callback at the end of a backward pass."""

import numpy as np
import pytest

import backprop as bp
from backprop import nn, optim
from backprop.compile import compile_step
from backprop.tensor import queue_callback

torch = pytest.importorskip("torch")


def run(lib):
    """A small graph with hooks that look at, and change, gradients; what they saw."""
    seen = []
    w = lib.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=lib.float64, requires_grad=True)
    x = lib.tensor([[1.0, 2.0], [3.0, -4.0]], dtype=lib.float64)
    h = (x @ w).tanh()
    h.register_hook(lambda g: seen.append(("h", g.tolist())))
    h.register_hook(lambda g: g * 2)  # doubles dL/dh before it flows on
    w.register_hook(lambda g: seen.append(("w", g.tolist())))
    w.register_post_accumulate_grad_hook(lambda p: seen.append(("after", p.grad.tolist())))
    handle = w.register_hook(lambda g: g * 100)
    handle.remove()
    (h * h).sum().backward()
    return seen, w.grad.tolist()


def test_hooks_see_and_replace_gradients_as_torchs():
    ours, theirs = run(bp), run(torch)
    assert [name for name, _ in ours[0]] == [name for name, _ in theirs[0]] == ["h", "w", "after"]
    for (_, a), (_, b) in zip(ours[0], theirs[0]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)


def test_post_accumulate_hooks_see_the_accumulated_gradient_and_callbacks_run_at_the_end():
    w = bp.tensor([1.0, 2.0], dtype=bp.float64, requires_grad=True)
    order = []

    def hook(p):
        order.append(("hook", p.grad.tolist()))
        queue_callback(lambda: order.append(("end", p.grad.tolist())))

    w.register_post_accumulate_grad_hook(hook)
    (w * 3).sum().backward()
    (w * w).sum().backward()
    assert order == [("hook", [3.0, 3.0]), ("end", [3.0, 3.0]), ("hook", [5.0, 7.0]), ("end", [5.0, 7.0])]
    with pytest.raises(RuntimeError, match="only during a backward pass"):
        queue_callback(lambda: None)


def test_hooks_are_refused_where_torch_refuses_them():
    with pytest.raises(RuntimeError, match="does not require grad"):
        bp.tensor([1.0]).register_hook(print)
    w = bp.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(TypeError, match="callable"):
        w.register_hook(3)


def test_a_step_with_a_hook_stays_eager_so_the_hook_runs():
    model = nn.Sequential(nn.Linear(3, 2))
    calls = []
    model[0].weight.register_post_accumulate_grad_hook(lambda p: calls.append(1))
    step = compile_step(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), numba=False)
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    for _ in range(3):
        step(x, y)
    assert len(calls) == 3 and "hook" in step.reason
