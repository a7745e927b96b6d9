"""backprop.compile: a captured and replayed step trains exactly as the eager engine does,
and every case it cannot replay safely runs eagerly instead."""

import time
from functools import partial

import numpy as np
import pytest

import backprop
from backprop import backend, loss_ops, nn, ops, optim
from backprop.compile import TrainStep, compile_step, fit_step
from backprop.sklearn._network import SklearnLoss

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 6)).astype(np.float32)
LABELS = rng.integers(0, 3, 40)
STEPS = 6

OPTIMIZERS = {
    "SGD": dict(lr=0.1),
    "SGD-momentum": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "Adam": dict(lr=0.01),
    "AdamW": dict(lr=0.01, amsgrad=True),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adagrad": dict(lr=0.1, lr_decay=0.01),
}
LAYERS = {
    "relu": lambda: [nn.ReLU()],
    "leaky_relu": lambda: [nn.LeakyReLU(0.1)],
    "sigmoid": lambda: [nn.Sigmoid()],
    "tanh": lambda: [nn.Tanh()],
    "gelu": lambda: [nn.GELU()],
    "identity": lambda: [nn.Identity()],
    "flatten": lambda: [nn.Flatten()],
    "dropout_p0": lambda: [nn.Dropout(0.0)],
}
LOSSES = {  # loss and the targets it takes
    "cross_entropy": (lambda: nn.CrossEntropyLoss(), LABELS),
    "cross_entropy_sum_smoothed": (lambda: nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1), LABELS),
    "cross_entropy_probabilities": (lambda: nn.CrossEntropyLoss(), np.eye(3, dtype=np.float32)[LABELS]),
    "mse": (lambda: nn.MSELoss(), rng.normal(size=(40, 3)).astype(np.float32)),
    "bce_with_logits": (lambda: nn.BCEWithLogitsLoss(), (rng.random((40, 3)) > 0.5).astype(np.float32)),
    # a full sum's scalar divided by the batch size: a scalar read by the next primitive
    "sum_then_divided": (lambda: SklearnLoss("squared_error"), rng.normal(size=(40, 3)).astype(np.float32)),
    "sums_then_divided": (lambda: SklearnLoss("binary_log_loss"), (rng.random((40, 3)) > 0.5).astype(np.float32)),
}


def build(layer="relu", rule="SGD", loss="cross_entropy", **flags):
    backprop.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), *LAYERS[layer](), nn.Linear(5, 3))
    config = OPTIMIZERS[rule]
    optimizer = getattr(optim, rule.split("-")[0])(model.parameters(), **config, **flags)
    return model, LOSSES[loss][0](), optimizer


def eager_step(model, loss_fn, optimizer, x, y):
    loss = loss_fn(model(backprop.Tensor(x)), backprop.Tensor(y))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def assert_trains_as_eager(make, batches, path="compiled", exact=True):
    """Train two copies, one by eager steps and one by a TrainStep; compare after every step."""
    reference, step_model = make(), make()
    step = TrainStep(*step_model)
    for x, y in batches:
        expected = eager_step(*reference, x, y)
        got = step(backprop.Tensor(x), backprop.Tensor(y))
        assert step.path == path, step.reason
        compare = np.testing.assert_array_equal if exact else (
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7))
        compare(got, expected)
        for p, q in zip(reference[0].parameters(), step_model[0].parameters()):
            compare(q.data, p.data)
    return step


def batches(targets=LABELS, size=8, steps=STEPS):
    return [(X[i : i + size], targets[i : i + size]) for i in range(0, size * steps, size) if i < len(X)]


@pytest.mark.parametrize("rule", OPTIMIZERS)
@pytest.mark.parametrize("layer", LAYERS)
def test_compiled_step_equals_the_eager_step_for_every_optimizer_and_layer(rule, layer):
    step = assert_trains_as_eager(lambda: build(layer, rule), batches())
    assert step.counts == {"compiled": 5, "eager": 0}


@pytest.mark.parametrize("loss", LOSSES)
def test_compiled_step_equals_the_eager_step_for_every_loss(loss):
    assert_trains_as_eager(lambda: build(loss=loss), batches(LOSSES[loss][1]))


@pytest.mark.parametrize("rule", ["SGD-momentum", "Adam", "AdamW"])
def test_compiled_step_with_a_fused_optimizer_equals_eager_to_float32_rounding(rule):
    pytest.importorskip("numba")
    reference, compiled = build(rule=rule), build(rule=rule, fused=True)
    step = compile_step(*compiled)
    for x, y in batches():
        eager_step(*reference, x, y)
        step(x, y)
        assert step.path == "compiled"
    for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", list(OPTIMIZERS))  # RMSprop, Adagrad: no fused kernel, their NumPy update
def test_one_numba_function_per_step_trains_as_eager_to_float32_rounding(rule):
    pytest.importorskip("numba")
    reference, compiled = build(rule=rule), build(rule=rule)
    step = compile_step(*compiled, numba=True)
    for x, y in batches():
        expected = eager_step(*reference, x, y)
        np.testing.assert_allclose(step(x, y), expected, rtol=1e-5)
        assert step.path == "compiled" and step.numba_reason is None
    for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("numba", [False, True])
def test_a_compiled_step_leaves_the_eager_gradients_written_in_place_into_the_flat_buffer(numba):
    if numba:
        pytest.importorskip("numba")
    reference, compiled = build(rule="Adam"), build(rule="Adam")
    step = compile_step(*compiled, numba=numba)
    for x, y in batches()[:3]:
        eager_step(*reference, x, y)
        step(x, y)
    (plan,) = step.plans.values()
    assert sorted(b.shape for b in plan.written.values()) == [(3,), (3, 5), (5,), (5, 6)]  # every weight and bias
    flat = compiled[2].flat_group(compiled[2].param_groups[0])
    for p, q, view in zip(reference[0].parameters(), compiled[0].parameters(), flat.grad_views):
        assert q.grad.data is view
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-5, atol=1e-7)


def test_a_float64_batch_into_float32_weights_is_not_written_in_place_and_trains_as_eager():
    step = assert_trains_as_eager(lambda: build(rule="Adam"), [(x.astype(np.float64), y) for x, y in batches()])
    (plan,) = step.plans.values()
    assert plan.written == {}  # the gradients arrive in float64; the buffers are float32


def test_one_numba_function_serves_every_batch_size_of_a_structure():
    pytest.importorskip("numba")
    from backprop.compile import numba_step

    step = compile_step(*build(rule="Adam"), numba=True)
    step(X[:8], LABELS[:8])
    compiled = set(map(id, numba_step._STEPS.values()))
    for size in (5, 3):  # the short last batch of an epoch: a new plan, the same compiled function
        step(X[:size], LABELS[:size])
        assert step.numba_reason is None
    assert len(step.plans) == 3 and set(map(id, numba_step._STEPS.values())) == compiled


def test_a_numba_step_works_in_aligned_copies_of_its_arrays_and_shows_the_output_as_eager():
    pytest.importorskip("numba")
    reference, compiled = build(rule="Adam"), build(rule="Adam")
    step = compile_step(*compiled, numba=True)
    for x, y in batches():
        expected = reference[0](backprop.Tensor(x)).data  # the output before this step's update
        eager_step(*reference, x, y)
        step(x, y)
        np.testing.assert_allclose(step.output, expected, rtol=1e-5, atol=1e-6)
    (plan,) = step.plans.values()
    assert step.output is plan.output and plan.x.ctypes.data % backend.ALIGN == 0


def test_a_numba_step_takes_any_batch_layout_as_eager_and_keeps_no_reference_to_it():
    pytest.importorskip("numba")
    import weakref

    def read_only(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    layouts = [np.copy, np.asfortranarray, read_only, np.copy, lambda a: a.copy()[::-1][::-1]]  # each a new array
    reference, compiled = build(rule="Adam"), build(rule="Adam")
    step = compile_step(*compiled, numba=True)
    for layout, (x, y) in zip(layouts, batches()):  # handed over as they are, or copied into the plan's buffer
        expected = eager_step(*reference, x, y)
        given = layout(x)
        np.testing.assert_allclose(step(given, y), expected, rtol=1e-5)
        assert step.numba_reason is None
        alive = weakref.ref(given)
        del given
        assert alive() is None
    for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, features, inputs", [(8, 256, 784), (1, 64, 600), (33, 256, 784), (8, 5, 6)])
def test_the_compiled_linear_forward_equals_numpy_as_itself_and_as_its_transpose(rows, features, inputs, dtype):
    pytest.importorskip("numba")
    from backprop.compile import numba_step

    linear_forward = numba_step.COMPILED[numba_step.qualified_name(ops.linear_forward)]  # ops.py's, compiled
    x, w, b = (rng.normal(size=shape).astype(dtype) for shape in [(rows, inputs), (features, inputs), features])
    mirrored = rows <= numba_step.MIRRORED_UP_TO and w.size >= numba_step.MIRRORED_FROM
    assert mirrored == (rows <= 8 and features == 256 or rows == 1)  # both forms are taken here
    for bias in (b, None):
        out = np.empty((rows, features), dtype)
        linear_forward(x, w, bias, out)
        expected = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if bias is None else bias)
        np.testing.assert_allclose(out, expected, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)


def test_a_product_run_on_one_thread_gives_openblas_its_thread_count_back():
    pytest.importorskip("numba")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from backprop.compile import numba_step

    a, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
        out = np.empty((4, 5), np.float32)
        numba_step._GEMM_INTO[np.float32](a, b, out)  # far below SERIAL_BELOW
        after = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    assert after == before
    np.testing.assert_allclose(out, a @ b, rtol=1e-6)


def test_a_plan_numba_cannot_compile_replays_in_python_and_says_why():
    pytest.importorskip("numba")
    step = assert_trains_as_eager(lambda: build("tanh"), batches())
    numba_step = compile_step(*build("tanh"), numba=True)
    numba_step(X[:8], LABELS[:8])
    assert numba_step.numba_reason == "tanh with these arguments has no kernel in one compiled function"
    assert step.numba_reason.startswith("numba='auto'")  # not yet: a step expected to run 20,000 times


def test_a_numba_step_of_big_endian_targets_replays_in_python_and_trains_as_eager():
    pytest.importorskip("numba")
    reference, compiled = build(), build()
    step = compile_step(*compiled, numba=True)
    for x, y in batches():
        expected = eager_step(*reference, x, y)
        assert step(x, y.astype(">i8")) == expected
        assert step.path == "compiled" and step.numba_reason == ">i8 arrays (Numba takes only the machine's byte order)"


def test_a_numba_step_refuses_a_class_out_of_range_as_eager_does():
    pytest.importorskip("numba")
    step = compile_step(*build(), numba=True)
    step(X[:8], LABELS[:8])
    assert step.numba_reason is None
    with pytest.raises(ValueError, match="target contains class 7"):
        step(X[:8], np.full(8, 7))
    assert step.path == "eager"


def test_fit_compiled_numba_says_which_path_in_history():
    pytest.importorskip("numba")
    history = backprop.fit(*build(), (X[:32], LABELS[:32]), epochs=2, batch_size=8, shuffle=False,
                           metrics=(), progress=False, compiled="numba")
    assert history.steps == {"compiled": 8, "eager": 0} and history.numba_reason is None


@pytest.mark.parametrize("compiled", [True, "numba"])
def test_repeated_fits_keep_one_step_and_its_plans(compiled):
    if compiled == "numba":
        pytest.importorskip("numba")
    model, loss_fn, optimizer = build()
    steps = []
    for _ in range(3):
        backprop.fit(model, loss_fn, optimizer, (X[:16], LABELS[:16]), epochs=1, batch_size=8, shuffle=False,
                     metrics=(), progress=False, compiled=compiled)
        steps.append(fit_step(optimizer))
    assert steps[0] is steps[1] is steps[2] and len(steps[0].plans) == 1
    assert steps[0].counts == {"compiled": 2, "eager": 0}  # the last fit's two steps, both replayed


def test_a_fit_of_numba_from_steps_moves_to_one_numba_function_made_in_the_background(monkeypatch):
    """The replay goes on while a worker process compiles; a later step adopts the function
    (each of these fits is 2 epochs of 4 batches); the weights stay the eager engine's."""
    pytest.importorskip("numba")
    monkeypatch.setattr(backprop.compile, "NUMBA_FROM", 8)
    (model, loss_fn, optimizer), reference = build(rule="Adam"), build(rule="Adam")
    deadline = time.monotonic() + 180  # a first compile takes about 10 s
    while True:
        history = backprop.fit(model, loss_fn, optimizer, (X[:32], LABELS[:32]), epochs=2, batch_size=8,
                               shuffle=False, metrics=(), progress=False)
        backprop.fit(*reference, (X[:32], LABELS[:32]), epochs=2, batch_size=8, shuffle=False, metrics=(),
                     progress=False, compiled=False)
        for p, q in zip(reference[0].parameters(), model.parameters()):
            np.testing.assert_allclose(q.data, p.data, rtol=1e-4, atol=1e-6)
        assert history.steps == {"compiled": 8, "eager": 0}
        if history.numba_reason is None or time.monotonic() > deadline:
            break
        assert history.numba_reason == "the compiled function is being made in the background"
        time.sleep(0.5)
    assert history.numba_reason is None


def test_a_short_fit_of_a_structure_not_compiled_yet_stays_in_the_replay(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(backprop.compile, "NUMBA_FROM", 9)  # this fit: 8 steps
    backprop.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 7), nn.ReLU(), nn.Linear(7, 7), nn.ReLU(),
                          nn.Linear(7, 3))  # a structure no other test compiles
    history = backprop.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (X[:32], LABELS[:32]),
                           epochs=2, batch_size=8, metrics=(), progress=False)
    assert history.steps == {"compiled": 8, "eager": 0}
    assert history.numba_reason.startswith("numba='auto'")


def test_a_compiled_step_moves_to_numba_after_numba_from_replays(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(backprop.compile, "NUMBA_FROM", 3)

    def make():  # a structure no other test compiles
        backprop.manual_seed(0)
        model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(6, 6), nn.ReLU())], nn.Linear(6, 3))
        return model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1)

    reference, compiled = make(), make()
    step = compile_step(*compiled)
    deadline = time.monotonic() + 180  # a first compile takes about 10 s
    for i in range(100_000):
        x, y = X[8 * (i % 5) : 8 * (i % 5) + 8], LABELS[8 * (i % 5) : 8 * (i % 5) + 8]
        np.testing.assert_allclose(step(x, y), eager_step(*reference, x, y), rtol=1e-4)
        if i < 2:
            assert step.numba_reason.startswith("numba='auto'")
        if step.numba_reason is None or time.monotonic() > deadline:
            break
        time.sleep(0.01 if i >= 3 else 0)
    assert step.numba_reason is None
    for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-4, atol=1e-6)


def test_the_replayed_step_is_the_kernels_and_vjps_of_the_primitives():
    step = compile_step(*build("gelu"))
    step(X[:8], LABELS[:8])
    (plan,) = step.plans.values()
    homes = {ops.__file__, loss_ops.__file__}
    vjps = [getattr(vjp, "func", vjp).__code__.co_filename for _, vjp, *_ in plan.instructions]
    kernels = [kernel.func for _, kernel, _ in plan.forward]
    assert vjps and set(vjps) <= homes
    assert kernels == [ops.linear_forward, ops.gelu_forward, ops.linear_forward, loss_ops.class_cross_entropy]


def test_fit_compiled_equals_fit_eager_and_history_says_which_path():
    histories, models = [], []
    for compiled in (True, False):
        model, loss_fn, optimizer = build(rule="Adam")
        histories.append(backprop.fit(model, loss_fn, optimizer, (X, LABELS), epochs=3, batch_size=16,
                                      shuffle=False, progress=False, compiled=compiled))
        models.append(model)
    assert histories[0].history == histories[1].history
    for p, q in zip(*(m.parameters() for m in models)):
        np.testing.assert_array_equal(p.data, q.data)
    # 40 examples in batches of 16: two plans (16 and the last 8), every step compiled
    assert histories[0].steps == {"compiled": 9, "eager": 0} and histories[0].eager_reason is None
    assert histories[1].steps == {"compiled": 0, "eager": 9} and histories[1].eager_reason == "compiled=False"


# -- falling back --------------------------------------------------------------------------------
def test_a_new_batch_shape_is_captured_anew():
    step = assert_trains_as_eager(build, [(X[:8], LABELS[:8]), (X[8:13], LABELS[8:13]), (X[13:21], LABELS[13:21])])
    assert len(step.plans) == 2


def test_freezing_a_layer_captures_a_new_plan():
    reference, compiled = build(rule="Adam"), build(rule="Adam")
    step = compile_step(*compiled)
    for i, (x, y) in enumerate(batches()):
        if i == 2:
            for model, _, _ in (reference, compiled):
                model[0].weight.requires_grad = False
        eager_step(*reference, x, y)
        step(x, y)
        assert step.path == "compiled"
    assert len(step.plans) == 2
    for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
        np.testing.assert_array_equal(q.data, p.data)


def test_a_replaced_parameter_array_and_a_new_learning_rate_are_followed():
    reference, compiled = build(rule="SGD-momentum"), build(rule="SGD-momentum")
    step = compile_step(*compiled)
    for i, (x, y) in enumerate(batches()):
        if i == 3:
            for model, _, optimizer in (reference, compiled):
                model[0].weight.data = model[0].weight.data * 0.5
                optimizer.param_groups[0]["lr"] = 0.03
        eager_step(*reference, x, y)
        step(x, y)
    for p, q in zip(reference[0].parameters(), compiled[0].parameters()):
        np.testing.assert_array_equal(q.data, p.data)


def test_dropout_in_training_mode_runs_eagerly_with_the_same_masks():
    def make():
        backprop.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.3), nn.Linear(5, 3))
        return model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1)

    reference = make()
    eager = [eager_step(*reference, x, y) for x, y in batches()]
    model, loss_fn, optimizer = make()
    step = compile_step(model, loss_fn, optimizer)
    assert [step(x, y) for x, y in batches()] == eager
    assert step.path == "eager" and "Dropout" in step.reason
    model.eval()  # the identity in eval mode: that step is captured
    step(X[:8], LABELS[:8])
    assert step.path == "compiled"


class Residual(nn.Module):
    """A user's module: its forward could branch on values, and asks for an intermediate gradient."""

    def __init__(self):
        self.inner = nn.Linear(6, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = self.inner(x)
        h.retain_grad()
        return self.out(h.relu() + x)


def test_a_user_defined_module_with_retain_grad_runs_eagerly():
    def make():
        backprop.manual_seed(0)
        model = Residual()
        return model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.01)

    step = assert_trains_as_eager(make, batches(), path="eager")
    assert "Residual" in step.reason and step.plans == {}


@pytest.mark.parametrize("closure", [True, False])
def test_a_vjp_holding_an_array_the_plan_does_not_rewrite_is_refused(monkeypatch, closure):
    """If a primitive's VJP keeps a derived array that no kernel refreshes (here a mask), the
    plan would replay stale values: the step must stay eager."""
    relu = ops.relu

    def relu_with_mask(a):
        mask = a.data > 0
        vjp = (lambda g: g * mask) if closure else partial(np.multiply, mask)
        return backprop.Tensor._from_op(relu(a).data, "relu", ((a, vjp),), partial(backend.relu, a.data))

    monkeypatch.setattr(ops, "relu", relu_with_mask)
    step = assert_trains_as_eager(build, batches(), path="eager")
    assert ("values the plan cannot see" if closure else "an array") in step.reason


def test_an_input_that_requires_grad_runs_eagerly():
    model, loss_fn, optimizer = build()
    x = backprop.Tensor(X[:8], requires_grad=True)
    step = compile_step(model, loss_fn, optimizer)
    step(x, LABELS[:8])
    assert step.path == "eager" and x.grad is not None


def test_a_class_index_out_of_range_in_a_later_batch_raises_as_eager():
    step = compile_step(*build())
    step(X[:8], LABELS[:8])
    bad = LABELS[8:16].copy()
    for value in (3, -1):
        bad[2] = value
        with pytest.raises(ValueError, match="class"):
            step(X[8:16], bad)


def test_repeated_fits_reuse_the_plans_unless_a_module_setting_changed():
    model, loss_fn, optimizer = build("leaky_relu")
    reference = build("leaky_relu")
    for slope in (0.1, 0.1, 0.3):
        for m in (model, reference[0]):
            m[1].negative_slope = slope
        backprop.fit(model, loss_fn, optimizer, (X[:16], LABELS[:16]), epochs=1, batch_size=8, shuffle=False,
                     metrics=(), progress=False)
        for i in range(0, 16, 8):
            eager_step(*reference, X[i : i + 8], LABELS[i : i + 8])
        for p, q in zip(reference[0].parameters(), model.parameters()):
            np.testing.assert_array_equal(q.data, p.data)
        if slope == 0.1:
            plans = fit_step(optimizer).plans
    assert fit_step(optimizer).plans is not plans and len(plans) == 1


def test_a_kernel_that_does_not_reproduce_the_eager_forward_pass_is_refused(monkeypatch):
    relu = ops.relu

    def relu_with_a_wrong_kernel(a):
        node = relu(a)
        wrong = partial(np.maximum, a.data, 0.01)  # not relu
        return backprop.Tensor._from_op(node.data, "relu", tuple(zip(node.inputs, node.vjps)), wrong)

    monkeypatch.setattr(ops, "relu", relu_with_a_wrong_kernel)
    step = assert_trains_as_eager(build, batches(), path="eager")
    assert "do not reproduce" in step.reason


def test_an_optimizer_after_a_compiled_fit_pickles_and_trains_on_as_before():
    import pickle

    model, loss_fn, optimizer = build(rule="Adam")
    backprop.fit(model, loss_fn, optimizer, (X, LABELS), epochs=1, batch_size=8, shuffle=False, progress=False)
    copy_model, copy_optimizer = pickle.loads(pickle.dumps((model, optimizer)))
    for m, o in ((model, optimizer), (copy_model, copy_optimizer)):
        backprop.fit(m, loss_fn, o, (X, LABELS), epochs=1, batch_size=8, shuffle=False, progress=False)
    for p, q in zip(model.parameters(), copy_model.parameters()):
        np.testing.assert_array_equal(q.data, p.data)


# -- the fast paths of fit: arrays in, the fused update by default for large groups ---------------
@pytest.mark.parametrize("rule", ["SGD", "Adam"])
def test_a_step_on_plain_arrays_equals_the_eager_step(rule):
    reference, arrays = build(rule=rule), build(rule=rule)
    step = compile_step(*arrays)
    for x, y in batches():
        expected = eager_step(*reference, x, y)
        assert step(x, y) == expected and step.path == "compiled"
    for p, q in zip(reference[0].parameters(), arrays[0].parameters()):
        np.testing.assert_array_equal(q.data, p.data)


@pytest.mark.parametrize("rule", ["SGD", "Adam"])
def test_fit_with_a_loader_that_overrides_iter_gets_tensors_and_trains_as_eager(rule):
    seen = []

    class Loader(backprop.data.DataLoader):  # an __iter__ of its own: fit iterates it as it is
        def __iter__(self):
            return Recorded(super().__iter__())

    class Recorded:
        def __init__(self, batches):
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            return self

        def __next__(self):
            x, y = next(self.batches)
            seen.append(type(x))
            return x, y

    models = []
    for compiled, loader in ((True, Loader(backprop.data.TensorDataset(X, LABELS), 16)), (False, (X, LABELS))):
        model, loss_fn, optimizer = build(rule=rule)
        history = backprop.fit(model, loss_fn, optimizer, loader, epochs=2, batch_size=16, shuffle=False,
                               progress=False, compiled=compiled)
        models.append((model, history))
    assert seen and set(seen) == {backprop.Tensor} and models[0][1].steps["eager"] == 0
    assert models[0][1].history == models[1][1].history
    for p, q in zip(models[0][0].parameters(), models[1][0].parameters()):
        np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.parametrize("rule", ["SGD-momentum", "Adam"])
def test_fit_fuses_a_large_group_by_default_and_equals_eager_to_float32_rounding(rule, monkeypatch):
    pytest.importorskip("numba")
    from backprop.optim import optimizer as base

    monkeypatch.setattr(base, "FUSED_FROM", 1)  # every group counts as large
    kernel, calls = getattr(optim, rule.split("-")[0])._fused_update, []
    monkeypatch.setattr(type(build(rule=rule)[2]), "_fused_update", lambda self, *a: calls.append(1) or kernel(self, *a))
    models = []
    for compiled in (True, False):
        calls.clear()
        model, loss_fn, optimizer = build(rule=rule)
        backprop.fit(model, loss_fn, optimizer, (X, LABELS), epochs=2, batch_size=8, shuffle=False,
                     progress=False, compiled=compiled)
        models.append(model)
        assert bool(calls) == compiled  # the eager engine's per-parameter update stays NumPy
    for p, q in zip(*(m.parameters() for m in models)):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)
