"""backprop.optim against torch.optim: same float64 parameters, same loss, every step compared."""

import numpy as np
import pytest

import backprop
from backprop import backend, optim

STEPS = 25
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
W0, B0 = rng.normal(size=(3, 5)) * 0.5, rng.normal(size=3) * 0.1


def loss_of(x, w, b, y):
    """A small fixed loss, written once for both libraries: mean((tanh(x W^T + b) - y)^2)."""
    return (((x @ w.T + b).tanh() - y) ** 2).mean()


def ours(rule, config, dtype=np.float64):
    params = [backprop.Tensor(W0.astype(dtype), requires_grad=True), backprop.Tensor(B0.astype(dtype), requires_grad=True)]
    return params, getattr(optim, rule)(params, **config)


def theirs(rule, config):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(W0, requires_grad=True), torch.tensor(B0, requires_grad=True)]
    return params, getattr(torch.optim, rule)(params, **config)


def train_step(params, optimizer, x, y):
    optimizer.zero_grad()
    loss_of(x, *params, y).backward()
    optimizer.step()


def assert_matches_torch(rule, config, steps=STEPS):
    torch = pytest.importorskip("torch")
    params, optimizer = ours(rule, config)
    reference, reference_optimizer = theirs(rule, config)
    x, y = backprop.Tensor(X), backprop.Tensor(Y)
    tx, ty = torch.tensor(X), torch.tensor(Y)
    for step in range(steps):
        train_step(params, optimizer, x, y)
        train_step(reference, reference_optimizer, tx, ty)
        for p, q in zip(params, reference):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-13, err_msg=f"step {step + 1}")
    assert not np.allclose(params[0].data, W0)


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.8, weight_decay=0.1, nesterov=True)),
    ("SGD", dict(lr=0.1, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1)),
]
RULES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]
RICH = {  # one configuration per rule that fills every kind of state
    "SGD": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "Adam": dict(lr=0.05, amsgrad=True, weight_decay=0.01),
    "AdamW": dict(lr=0.05, amsgrad=True),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adagrad": dict(lr=0.1, lr_decay=0.01),
}


@pytest.mark.parametrize("rule, config", CONFIGS, ids=[f"{r}-{c}" for r, c in CONFIGS])
def test_optimizer_matches_torch_over_25_steps(rule, config):
    assert_matches_torch(rule, config)


FUSED_RULES = ("SGD", "Adam", "AdamW")
FLAT = [(rule, {**config, "foreach": True}) for rule, config in CONFIGS]
FLAT += [(rule, {**config, "fused": True}) for rule, config in CONFIGS if rule in FUSED_RULES]


@pytest.mark.parametrize("rule, config", FLAT, ids=[f"{r}-{c}" for r, c in FLAT])
def test_foreach_and_fused_match_torch_step_by_step_over_25_steps(rule, config):
    if config.get("fused"):
        pytest.importorskip("numba")
    assert_matches_torch(rule, config)


@pytest.mark.parametrize("flag", ["foreach", "fused"])
@pytest.mark.parametrize("rule", RULES)
def test_flat_update_views_parameters_and_state_into_one_buffer_each(rule, flag):
    if flag == "fused" and rule not in FUSED_RULES:
        return
    if flag == "fused":
        pytest.importorskip("numba")
    params, optimizer = ours(rule, {**RICH[rule], flag: True})
    plain_params, plain = ours(rule, RICH[rule])
    x, y = backprop.Tensor(X), backprop.Tensor(Y)
    for _ in range(3):
        train_step(params, optimizer, x, y)
        train_step(plain_params, plain, x, y)
    flat = optimizer.flat_group(optimizer.param_groups[0])
    assert all(np.shares_memory(p.data, flat.param) for p in params)
    views = [p.data for p in params] + flat.grad_views
    for key, value in flat.state.items():
        if isinstance(value, np.ndarray):
            assert all(np.shares_memory(optimizer.state[p][key], value) for p in params)
            views += [optimizer.state[p][key] for p in params]
        else:
            assert all(optimizer.state[p][key] == value for p in params)
    assert all(view.ctypes.data % backend.ALIGN == 0 for view in views)  # each on a vector boundary
    owned = np.zeros(flat.param.size, bool)
    for start, stop in flat.bounds:
        owned[start:stop] = True
    assert not owned.all() and not flat.param[~owned].any() and not flat.grad[~owned].any()  # gaps stay zeros
    for p, q in zip(params, plain_params):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12)
        assert set(optimizer.state[p]) == set(plain.state[q])


def test_foreach_with_a_parameter_without_grad_updates_the_others_as_the_loop_does():
    w, frozen = backprop.Tensor(W0, requires_grad=True), backprop.Tensor(B0, requires_grad=True)
    optimizer = optim.Adam([w, frozen], lr=0.1, foreach=True)
    for _ in range(2):
        optimizer.zero_grad()
        (w * w).sum().backward()
        optimizer.step()
    np.testing.assert_array_equal(frozen.data, B0)
    assert frozen not in optimizer.state and optimizer.state[w]["step"] == 2


@pytest.mark.parametrize("rule", RULES)
def test_foreach_continues_identically_after_load_state_dict_and_replaced_arrays(rule):
    x, y = backprop.Tensor(X), backprop.Tensor(Y)
    params, optimizer = ours(rule, {**RICH[rule], "foreach": True})
    reference_params, reference = ours(rule, RICH[rule])
    for _ in range(5):
        train_step(params, optimizer, x, y)
        train_step(reference_params, reference, x, y)
    optimizer.load_state_dict(optimizer.state_dict())  # new state arrays: the flat buffers are rebuilt
    params[0].data = params[0].data.copy()  # as Module.to() or a user would do
    for _ in range(5):
        train_step(params, optimizer, x, y)
        train_step(reference_params, reference, x, y)
    for p, q in zip(params, reference_params):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12)


def test_fused_float32_stays_float32_and_equals_foreach_to_rounding():
    pytest.importorskip("numba")
    results = []
    for flag in ("foreach", "fused"):
        params, optimizer = ours("Adam", {**RICH["Adam"], flag: True}, dtype=np.float32)
        for _ in range(10):
            train_step(params, optimizer, backprop.Tensor(X.astype(np.float32)), backprop.Tensor(Y.astype(np.float32)))
        assert all(p.data.dtype == np.float32 for p in params)
        results.append([p.data for p in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_param_groups_with_different_lr_match_torch(rule):
    torch = pytest.importorskip("torch")
    w, b = backprop.Tensor(W0, requires_grad=True), backprop.Tensor(B0, requires_grad=True)
    tw, tb = torch.tensor(W0, requires_grad=True), torch.tensor(B0, requires_grad=True)
    groups = lambda first, second: [{"params": [first]}, {"params": [second], "lr": 0.003}]
    optimizer = getattr(optim, rule)(groups(w, b), **RICH[rule])
    reference = getattr(torch.optim, rule)(groups(tw, tb), **RICH[rule])
    assert [g["lr"] for g in optimizer.param_groups] == [RICH[rule]["lr"], 0.003]
    for _ in range(STEPS):
        train_step([w, b], optimizer, backprop.Tensor(X), backprop.Tensor(Y))
        train_step([tw, tb], reference, torch.tensor(X), torch.tensor(Y))
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("rule", RULES)
def test_float32_parameters_and_state_stay_float32(rule):
    params, optimizer = ours(rule, RICH[rule], dtype=np.float32)
    x, y = backprop.Tensor(X.astype(np.float32)), backprop.Tensor(Y.astype(np.float32))
    for _ in range(3):
        train_step(params, optimizer, x, y)
    for p in params:
        assert p.data.dtype == np.float32
        assert all(v.dtype == np.float32 for v in optimizer.state[p].values() if isinstance(v, np.ndarray))


@pytest.mark.parametrize("rule", RULES)
def test_step_updates_parameters_in_place_and_leaves_grad_untouched(rule):
    params, optimizer = ours(rule, RICH[rule])
    arrays = [p.data for p in params]
    for _ in range(3):
        optimizer.zero_grad()
        loss_of(backprop.Tensor(X), *params, backprop.Tensor(Y)).backward()
        grads = [p.grad.numpy().copy() for p in params]
        optimizer.step()
        for p, g in zip(params, grads):
            np.testing.assert_array_equal(p.grad, g)
    assert all(p.data is a for p, a in zip(params, arrays))


@pytest.mark.parametrize("rule", RULES)
def test_state_dict_then_load_state_dict_continues_identically(rule):
    x, y = backprop.Tensor(X), backprop.Tensor(Y)
    params, optimizer = ours(rule, RICH[rule])
    for _ in range(10):
        train_step(params, optimizer, x, y)
    saved_params, saved = [p.data.copy() for p in params], optimizer.state_dict()
    resumed_params, resumed = ours(rule, dict(lr=0.5))  # hyperparameters come from the state_dict
    for p, data in zip(resumed_params, saved_params):
        p.data[...] = data
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == RICH[rule]["lr"]
    for _ in range(15):
        train_step(params, optimizer, x, y)
        train_step(resumed_params, resumed, x, y)
        for p, q in zip(params, resumed_params):
            np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.parametrize("rule", RULES)
def test_state_dict_holds_only_arrays_numbers_strings_and_lists(rule):
    params, optimizer = ours(rule, RICH[rule])
    train_step(params, optimizer, backprop.Tensor(X), backprop.Tensor(Y))
    saved = optimizer.state_dict()

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (np.ndarray, bool, int, float, str))

    assert plain(saved)
    assert sorted(saved["state"]) == [0, 1]
    assert saved["param_groups"][0]["params"] == [0, 1]
    state = next(iter(optimizer.state.values()))
    arrays = [k for k, v in state.items() if isinstance(v, np.ndarray)]
    assert arrays and all(saved["state"][0][k] is not state[k] for k in arrays)  # a snapshot


def test_load_state_dict_accepts_string_keys_and_array_step_counts():
    """As from a file: JSON object keys are strings, npz stores numbers as 0-d arrays."""
    params, optimizer = ours("Adam", dict(lr=0.05))
    train_step(params, optimizer, backprop.Tensor(X), backprop.Tensor(Y))
    saved = optimizer.state_dict()
    saved["state"] = {str(k): {n: np.asarray(v) for n, v in s.items()} for k, s in saved["state"].items()}
    resumed_params, resumed = ours("Adam", dict(lr=0.05))
    resumed.load_state_dict(saved)
    assert resumed.state[resumed_params[0]]["step"] == 1 and type(resumed.state[resumed_params[0]]["step"]) is int


def test_load_state_dict_rejects_mismatched_groups_and_shapes():
    params, optimizer = ours("Adam", dict())
    train_step(params, optimizer, backprop.Tensor(X), backprop.Tensor(Y))
    saved = optimizer.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": [params[0]]}, {"params": [params[1]]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="2 parameters"):
        optim.Adam([params[0]]).load_state_dict(saved)
    swapped = optim.Adam([params[1], params[0]])
    with pytest.raises(ValueError, match="shape"):
        swapped.load_state_dict(saved)


def test_parameters_without_grad_are_skipped_and_get_no_state():
    w, frozen = backprop.Tensor(W0, requires_grad=True), backprop.Tensor(B0, requires_grad=True)
    optimizer = optim.Adam([w, frozen], lr=0.1)
    (w * w).sum().backward()
    optimizer.step()
    np.testing.assert_array_equal(frozen.data, B0)
    assert frozen not in optimizer.state and w in optimizer.state


def test_step_calls_the_closure_and_returns_its_loss():
    params, optimizer = ours("SGD", dict(lr=0.1))

    def closure():
        optimizer.zero_grad()
        loss = loss_of(backprop.Tensor(X), *params, backprop.Tensor(Y))
        loss.backward()
        return loss

    first = optimizer.step(closure).item()
    assert optimizer.step(closure).item() < first


def test_zero_grad_sets_grads_to_none_or_to_zeros():
    params, optimizer = ours("SGD", dict())
    loss_of(backprop.Tensor(X), *params, backprop.Tensor(Y)).backward()
    grad = params[0].grad
    optimizer.zero_grad(set_to_none=False)
    assert params[0].grad is grad and not grad.any()
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


def test_add_param_group_fills_defaults_and_refuses_duplicates():
    w, b = backprop.Tensor(W0, requires_grad=True), backprop.Tensor(B0, requires_grad=True)
    optimizer = optim.SGD([w], lr=0.1, momentum=0.9)
    optimizer.add_param_group({"params": b, "lr": 0.01})
    assert optimizer.param_groups[1]["params"] == [b]
    assert optimizer.param_groups[1]["lr"] == 0.01 and optimizer.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than once"):
        optimizer.add_param_group({"params": [w]})
    assert "Parameter Group 1" in repr(optimizer)


@pytest.mark.parametrize("params, error, message", [
    ([], ValueError, "empty parameter list"),
    (backprop.Tensor([1.0], requires_grad=True), TypeError, "iterable of Tensors"),
    ({backprop.Tensor([1.0], requires_grad=True)}, TypeError, "use a list"),
    ([np.zeros(3)], TypeError, "ndarray"),
    ([backprop.Tensor([1.0], requires_grad=True) * 2], ValueError, "non-leaf"),
])
def test_bad_params_are_refused(params, error, message):
    with pytest.raises(error, match=message):
        optim.SGD(params)


P = [backprop.Tensor([1.0], requires_grad=True)]


@pytest.mark.parametrize("make, message", [
    (lambda: optim.SGD(P, lr=-1.0), "Invalid learning rate: -1.0"),
    (lambda: optim.SGD(P, momentum=-0.1), "momentum"),
    (lambda: optim.SGD(P, weight_decay=-0.1), "weight_decay"),
    (lambda: optim.SGD(P, nesterov=True), "Nesterov momentum requires a momentum"),
    (lambda: optim.SGD(P, momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
    (lambda: optim.Adam(P, lr=-0.1), "learning rate"),
    (lambda: optim.Adam(P, eps=-1.0), "epsilon"),
    (lambda: optim.Adam(P, betas=(1.0, 0.999)), "beta parameter at index 0"),
    (lambda: optim.Adam(P, betas=(0.9, -0.1)), "beta parameter at index 1"),
    (lambda: optim.Adam(P, weight_decay=-1.0), "weight_decay"),
    (lambda: optim.AdamW(P, betas=(0.9, 1.5)), "beta parameter at index 1"),
    (lambda: optim.AdamW(P, weight_decay=-1.0), "weight_decay"),
    (lambda: optim.RMSprop(P, alpha=-0.5), "alpha"),
    (lambda: optim.RMSprop(P, momentum=-0.5), "momentum"),
    (lambda: optim.RMSprop(P, eps=-1e-8), "epsilon"),
    (lambda: optim.Adagrad(P, lr_decay=-1.0), "lr_decay"),
    (lambda: optim.Adagrad(P, initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: optim.Adagrad(P, eps=-1.0), "epsilon"),
])
def test_bad_hyperparameters_are_named_in_the_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- hyperparameters are checked as torch.optim checks them --------------------------------------------
HYPERPARAMETERS = {
    "SGD": ["lr", "momentum", "dampening", "weight_decay"],
    "Adam": ["lr", "eps", "weight_decay"],
    "AdamW": ["lr", "eps", "weight_decay"],
    "RMSprop": ["lr", "alpha", "eps", "weight_decay", "momentum"],
    "Adagrad": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
}
VALUES = [float("nan"), float("inf"), -float("inf"), -1.0, -1e-12, -0.0, 0.0, 0.5, 1.0, 1.5, 1e9, 3, True]


def refuses(make):
    try:
        make()
    except (ValueError, TypeError):
        return True
    return False


@pytest.mark.parametrize("rule, name", [(rule, name) for rule, names in HYPERPARAMETERS.items() for name in names])
def test_a_hyperparameter_is_refused_where_torch_refuses_it_and_nan_everywhere(rule, name):
    torch = pytest.importorskip("torch")
    weights = [torch.zeros(2, requires_grad=True)]
    for value in VALUES:
        theirs = refuses(lambda: getattr(torch.optim, rule)(weights, **{name: value}))
        mine = refuses(lambda: getattr(optim, rule)(P, **{name: value}))
        # torch's SGD lets NaN through (its checks are `lr < 0`); it would turn every weight into NaN
        # torch lets NaN and infinity through (its checks are `lr < 0`); either turns every weight into NaN
        assert mine == (theirs or not abs(value) < float("inf")), (rule, name, value, mine, theirs)


@pytest.mark.parametrize("rule", ["Adam", "AdamW"])
def test_betas_are_refused_where_torch_refuses_them(rule):
    torch = pytest.importorskip("torch")
    weights = [torch.zeros(2, requires_grad=True)]
    for value in VALUES:
        for index in (0, 1):
            betas = [0.9, 0.999]
            betas[index] = value
            theirs = refuses(lambda: getattr(torch.optim, rule)(weights, betas=tuple(betas)))
            assert refuses(lambda: getattr(optim, rule)(P, betas=tuple(betas))) == theirs, (rule, index, value)


@pytest.mark.parametrize("make, error, message", [
    (lambda: optim.Adam(P, lr=float("nan")), ValueError, "Invalid learning rate: nan"),
    (lambda: optim.SGD(P, lr=float("nan")), ValueError, "Invalid learning rate: nan"),
    (lambda: optim.SGD(P, momentum=0.9, dampening=float("nan")), ValueError, "Invalid dampening value: nan"),
    (lambda: optim.SGD(P, lr="0.1"), TypeError, "lr must be a real number; got '0.1'"),
    (lambda: optim.Adam(P, eps=None), TypeError, "eps must be a real number; got None"),
    (lambda: optim.Adam(P, betas=0.9), TypeError, r"betas must be a pair \(beta1, beta2\); got 0.9"),
    (lambda: optim.Adam(P, betas=(0.9,)), TypeError, "betas must be a pair"),
    (lambda: optim.Adam(P, betas=(0.9, "x")), TypeError, r"betas\[1\] must be a real number"),
    (lambda: optim.Adam(P, amsgrad="yes"), TypeError, "amsgrad must be True or False; got 'yes'"),
    (lambda: optim.SGD(P, momentum=0.9, nesterov=1), TypeError, "nesterov must be True or False"),
    (lambda: optim.SGD([{"params": P, "lr": -1.0}]), ValueError, "Invalid learning rate: -1.0"),
])
def test_hyperparameters_of_the_wrong_type_or_nan_are_one_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_load_state_dict_refuses_invalid_hyperparameters_and_changes_nothing():
    optimizer = optim.Adam(P, lr=0.01)
    state = optimizer.state_dict()
    state["param_groups"][0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        optimizer.load_state_dict(state)
    assert optimizer.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("rule, config, moment", [("Adam", {"lr": 1e-3}, "exp_avg"),
                                                  ("SGD", {"lr": 0.1, "momentum": 0.9}, "momentum_buffer")])
def test_fused_moments_of_a_parameter_whose_gradient_stays_zero_reach_zero_not_a_subnormal(rule, config, moment):
    pytest.importorskip("numba")
    tiny = np.finfo(np.float32).tiny
    weights = {}
    for flag in ("foreach", "fused"):
        params, optimizer = ours(rule, {**config, flag: True}, dtype=np.float32)
        for step in range(1000):  # one gradient, then none: the moment decays by 0.9 a step
            for p in params:
                p.grad = backprop.Tensor((W0 if p.ndim == 2 else B0).astype(np.float32) * (step == 0))
            optimizer.step()
        m = np.concatenate([optimizer.state[p][moment].ravel() for p in params])
        subnormal = (m != 0) & (np.abs(m) < tiny)
        assert subnormal.all() if flag == "foreach" else not m.any()  # NumPy stops at 2^-149; the kernel at 0
        weights[flag] = [p.data.copy() for p in params]
    for a, b in zip(weights["foreach"], weights["fused"]):
        np.testing.assert_allclose(b, a, rtol=1e-6)


@pytest.mark.parametrize("rule", ["SGD", "Adam"])
def test_fused_none_fuses_a_large_flat_group_when_numba_is_installed(rule, monkeypatch):
    """fused=None: the Numba kernel from FUSED_FROM elements on (here lowered to 1), the
    weights equal to the NumPy path's to float32 rounding after 10 steps; fused=False and
    a group below the size, or Numba missing, stay NumPy."""
    pytest.importorskip("numba")
    from backprop.optim import optimizer as base

    calls = []
    kernel = getattr(optim, rule)._fused_update
    monkeypatch.setattr(getattr(optim, rule), "_fused_update",
                        lambda self, *args: calls.append(1) or kernel(self, *args))
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(10)]

    def train(fused, fused_from, numba=True):
        monkeypatch.setattr(base, "FUSED_FROM", fused_from)
        monkeypatch.setattr(base, "_numba_installed", lambda: numba)
        calls.clear()
        p = backprop.Tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), requires_grad=True)
        opt = getattr(optim, rule)([p], lr=0.05, foreach=True, fused=fused)
        for g in grads:
            p.grad = backprop.Tensor(g)
            opt.step()
        return p.data, len(calls)

    numpy_weights, fused_calls = train(None, 13)
    assert fused_calls == 0
    weights, fused_calls = train(None, 1)
    assert fused_calls == 10
    np.testing.assert_allclose(weights, numpy_weights, rtol=1e-5, atol=1e-6)
    assert train(False, 1)[1] == 0 and train(None, 1, numba=False)[1] == 0
