"""backprop.nn modules: layers and losses against torch.nn in float64, and Module's behaviour."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backprop
from backprop import Tensor, nn

torch = pytest.importorskip("torch")


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def torch_twin(module):
    """The torch.nn module of the same architecture, in float64, holding the same weights."""
    config = module.config()
    if config["type"] == "Sequential":
        return torch.nn.Sequential(*(torch_twin(layer) for layer in module))
    twin = getattr(torch.nn, config["type"])(**config["args"]).double().train(module.training)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            getattr(twin, name).copy_(torch.from_numpy(parameter.data))
    return twin


def assert_module_matches_torch(module, x, target=None):
    """Same outputs, and same gradients of sum(out * v) for the input and every parameter."""
    twin = torch_twin(module)
    ours_x, theirs_x = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    args, twin_args = (ours_x,), (theirs_x,)
    if target is not None:
        args, twin_args = (ours_x, target), (theirs_x, torch.from_numpy(target))
    out, expected = module(*args), twin(*twin_args)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    v = np.random.default_rng(1).standard_normal(out.shape)
    (out * v).sum().backward()
    (expected * torch.from_numpy(v)).sum().backward()
    np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, parameter in module.named_parameters():
        np.testing.assert_allclose(parameter.grad, twin.get_parameter(name).grad.numpy(), rtol=1e-10, atol=1e-12)


# -- layers ----------------------------------------------------------------------------
LAYERS = [
    lambda: nn.Linear(3, 4, dtype=np.float64),
    lambda: nn.Linear(3, 4, bias=False, dtype=np.float64),
    nn.ReLU,
    nn.LeakyReLU,
    lambda: nn.LeakyReLU(negative_slope=0.3),
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    lambda: nn.Softmax(dim=1),
    lambda: nn.Softmax(dim=0),
    nn.Identity,
    nn.Flatten,
    lambda: nn.Flatten(0),
    lambda: nn.Dropout(0.3).eval(),
]
LAYER_IDS = [
    "linear", "linear_no_bias", "relu", "leaky_relu", "leaky_relu_0.3", "sigmoid", "tanh",
    "gelu", "softmax_dim1", "softmax_dim0", "identity", "flatten", "flatten_0", "dropout_eval",
]  # fmt: skip


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
@settings(max_examples=5, deadline=None)
@given(batch=st.integers(1, 5), seed=st.integers(0, 1000))
def test_layer_matches_torch(make, batch, seed):
    assert_module_matches_torch(make(), randn(batch, 3, seed=seed) * 2)


def test_flatten_matches_torch_on_four_dimensions():
    assert_module_matches_torch(nn.Flatten(), randn(2, 3, 2, 2))
    assert_module_matches_torch(nn.Flatten(1, 2), randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"Flatten: start_dim=1 and end_dim=-1 do not fit an input of shape \(3,\)"):
        nn.Flatten()(Tensor(np.ones(3)))


def test_sequential_mlp_matches_torch():
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.GELU(), nn.Linear(6, 3)).double()
    assert_module_matches_torch(model, randn(7, 5))


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
def test_layer_passes_gradcheck(make):
    layer = make()
    names = [name for name, _ in layer.named_parameters()]
    inputs = [Tensor(randn(2, 3) + 0.05, requires_grad=True)] + list(layer.parameters())

    def forward(x, *parameters):
        for name, value in zip(names, parameters):
            setattr(layer, name, value)  # run the layer on gradcheck's float64 copies
        return layer(x)

    assert backprop.gradcheck(forward, inputs)


def test_linear_defaults_to_float32_with_weight_of_shape_out_in():
    layer = nn.Linear(3, 4)
    assert layer.weight.shape == (4, 3) and layer.bias.shape == (4,)
    assert layer.weight.dtype == np.float32 and layer(Tensor(np.ones((2, 3), np.float32))).dtype == np.float32
    assert isinstance(layer.weight, nn.Parameter) and layer.weight.requires_grad


def test_linear_default_init_is_uniform_within_one_over_sqrt_in_features():
    backprop.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    for array in (layer.weight.data, layer.bias.data):
        assert np.abs(array).max() <= bound and np.abs(array).max() > 0.95 * bound
    assert layer.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.01)


@pytest.mark.parametrize("features", [0, -1, 2.5, "3"])
def test_linear_rejects_features_that_are_not_positive_integers(features):
    with pytest.raises(ValueError, match="Linear: in_features must be a positive integer"):
        nn.Linear(features, 3)


# -- dropout ---------------------------------------------------------------------------
def test_dropout_drops_in_training_and_is_identity_in_eval():
    backprop.manual_seed(0)
    layer, x = nn.Dropout(0.5), Tensor(np.ones((100, 100)))
    assert layer.training
    dropped = layer(x).data
    assert 0.45 < (dropped == 0).mean() < 0.55
    assert set(np.unique(dropped)) == {0.0, 2.0}
    assert dropped.mean() == pytest.approx(1.0, abs=0.05)
    assert layer.eval()(x) is x


def test_dropout_is_reproducible_under_manual_seed():
    x = Tensor(np.ones((10, 10)))
    backprop.manual_seed(42)
    first = nn.Dropout(0.2)(x).data
    backprop.manual_seed(42)
    np.testing.assert_array_equal(nn.Dropout(0.2)(x).data, first)


@pytest.mark.parametrize("p", [-0.5, 1.0, 2])
def test_dropout_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\)"):
        nn.Dropout(p)


# -- losses ----------------------------------------------------------------------------
INDICES = np.array([2, 0, 1, 1, 2])
LOSS_CASES = [
    ("MSELoss", {}, lambda: (randn(5, 3), randn(5, 3, seed=1))),
    ("BCELoss", {}, lambda: (np.random.default_rng(0).uniform(0.05, 0.95, (5, 3)), randn(5, 3, seed=1) > 0)),
    ("BCEWithLogitsLoss", {}, lambda: (randn(5, 3) * 3, (randn(5, 3, seed=1) > 0) * 1.0)),
    ("CrossEntropyLoss", {}, lambda: (randn(5, 3) * 3, INDICES)),
    ("CrossEntropyLoss", {"label_smoothing": 0.15}, lambda: (randn(5, 3) * 3, INDICES)),
    ("CrossEntropyLoss", {}, lambda: (randn(5, 3), np.eye(3)[INDICES] * 0.8 + 0.2 / 3)),
    ("NLLLoss", {}, lambda: (np.log(np.random.default_rng(0).dirichlet(np.ones(3), 5)), INDICES)),
]


@pytest.mark.parametrize("name,kwargs,data", LOSS_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(LOSS_CASES)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_module_matches_torch(name, kwargs, data, reduction):
    x, target = data()
    target = target * 1.0 if target.dtype == bool else target
    ours = getattr(nn, name)(reduction=reduction, **kwargs)
    theirs = getattr(torch.nn, name)(reduction=reduction, **kwargs)
    ours_x, theirs_x = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, expected = ours(ours_x, target), theirs(theirs_x, torch.from_numpy(target))
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    v = np.random.default_rng(1).standard_normal(out.shape)
    (out * v).sum().backward()
    (expected * torch.from_numpy(v)).sum().backward()
    np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kwargs,data", LOSS_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(LOSS_CASES)])
def test_loss_module_passes_gradcheck(name, kwargs, data):
    x, target = data()
    loss = getattr(nn, name)(**kwargs)
    assert backprop.gradcheck(lambda t: loss(t, target * 1.0 if target.dtype == bool else target), [Tensor(x, requires_grad=True)])


def test_cross_entropy_loss_module_names_a_class_out_of_range():
    with pytest.raises(ValueError, match=r"target contains class 7, but the input has 5 classes \(expected 0\.\.4\)"):
        nn.CrossEntropyLoss()(Tensor(np.zeros((2, 5))), np.array([7, 1]))


def test_cross_entropy_loss_module_is_stable_at_logits_of_plus_minus_1000():
    x = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [1000.0, 1000.0]])
    labels = np.array([1, 1, 0])
    ours_x, theirs_x = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    loss = nn.CrossEntropyLoss()(ours_x, labels)
    expected = torch.nn.CrossEntropyLoss()(theirs_x, torch.from_numpy(labels))
    loss.backward()
    expected.backward()
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), rtol=1e-12)


def test_loss_module_rejects_an_unknown_reduction_when_built():
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'; got 'average'"):
        nn.MSELoss(reduction="average")


# -- Module ----------------------------------------------------------------------------
class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x):
        return self.out(self.hidden(x) * self.scale)


def test_parameters_are_registered_by_assignment_in_order_with_dotted_names():
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "hidden.weight", "hidden.bias", "out.1.weight", "out.1.bias"]  # torch's order
    assert [p is q for p, (_, q) in zip(model.parameters(), model.named_parameters())] == [True] * 5
    assert [name for name, _ in model.named_children()] == ["hidden", "out"]
    assert list(model.children()) == [model.hidden, model.out]
    assert len(list(model.modules())) == 5  # TwoLayer, hidden, out, ReLU, Linear


def test_a_shared_parameter_is_listed_once():
    layer = nn.Linear(2, 2)
    model = nn.Sequential(layer, nn.Tanh(), layer)
    assert len(list(model.parameters())) == 2
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]


def test_train_and_eval_set_training_everywhere_and_return_self():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout()))
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model and all(m.training for m in model.modules())


def test_zero_grad_sets_gradients_to_none():
    model = TwoLayer()
    model(Tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all((p.grad == 0).all() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_module_call_runs_forward_and_a_bare_module_says_to_define_it():
    model = TwoLayer()
    x = Tensor(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(model(x).data, model.forward(x).data)
    with pytest.raises(NotImplementedError, match="Module must define forward"):
        nn.Module()(x)


def test_to_double_converts_parameters_in_place():
    model = TwoLayer()
    weight = model.hidden.weight
    values = weight.data.copy()
    assert model.double() is model
    assert model.hidden.weight is weight and weight.dtype == np.float64
    np.testing.assert_array_equal(weight.data, values)
    assert model.float().hidden.weight.dtype == np.float32


def test_apply_visits_every_module():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    model.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert all((layer.weight.data == 0).all() for layer in (model[0], model[2]))


def test_sequential_supports_indexing_len_iteration_and_append():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    model = nn.Sequential(a, b)
    assert len(model) == 2 and list(model) == [a, b] and model[0] is a and model[-1] is b
    assert model.append(c) is model and len(model) == 3 and model[2] is c
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    x = Tensor(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(model(x).data, c(b(a(x))).data)
    with pytest.raises(TypeError, match="Sequential: expected a Module; got int"):
        model.append(3)


def test_repr_reads_like_torch():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Dropout(0.1), nn.Softmax(dim=1)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=3, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Dropout(p=0.1)\n"
        "    (1): Softmax(dim=1)\n"
        "  )\n"
        ")"
    )
    assert repr(nn.Linear(2, 2, bias=False)) == repr(torch.nn.Linear(2, 2, bias=False))
    assert repr(nn.Parameter(np.zeros(2))).startswith("Parameter containing:\n")


# -- state_dict ------------------------------------------------------------------------
def test_state_dict_round_trip_restores_predictions_in_place():
    backprop.manual_seed(0)
    source, target = TwoLayer(), TwoLayer()
    x = Tensor(randn(4, 3).astype(np.float32))
    state = source.state_dict()
    assert list(state) == [name for name, _ in source.named_parameters()]
    assert all(isinstance(v, Tensor) and not v.requires_grad for v in state.values())
    weight = target.hidden.weight
    target.load_state_dict(state)
    assert target.hidden.weight is weight  # the same Parameter objects, so optimizers still hold them
    np.testing.assert_array_equal(target(x).data, source(x).data)


def test_state_dict_shares_the_parameters_memory_as_pytorch():
    model, theirs = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state, their_state = model.state_dict(), theirs.state_dict()
    kept, their_kept = state["weight"].clone(), their_state["weight"].clone()
    with backprop.no_grad(), torch.no_grad():
        model.weight.fill_(5)
        theirs.weight.fill_(5)
    assert bool((state["weight"] == 5).all()) and bool((their_state["weight"] == 5).all())
    assert not bool((kept == 5).any()) and not bool((their_kept == 5).any())


def test_load_state_dict_names_missing_and_unexpected_keys():
    model = nn.Sequential(nn.Linear(2, 3))
    state = model.state_dict()
    state["1.weight"] = state.pop("0.bias")
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\], unexpected keys \['1.weight'\]"):
        model.load_state_dict(state)
    result = model.load_state_dict({"0.weight": np.zeros((3, 2))}, strict=False)
    assert result.missing_keys == ["0.bias"] and (model[0].weight.data == 0).all()


def test_load_state_dict_names_a_shape_mismatch_and_copies_nothing():
    model = nn.Sequential(nn.Linear(2, 3))
    before = model.state_dict()
    state = {"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(4)}
    with pytest.raises(ValueError, match=r"0.bias has shape \(3,\) in the model, but \(4,\) in the state dict"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model[0].weight.data, before["0.weight"])


# -- architecture as data --------------------------------------------------------------
def every_layer():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.LeakyReLU(0.2), nn.Dropout(0.25), nn.Linear(5, 4, bias=False),
        nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.Identity(), nn.Sequential(nn.Linear(4, 3)), nn.Softmax(dim=1),
    )  # fmt: skip


def test_config_round_trip_rebuilds_every_built_in_layer():
    model = every_layer()
    config = json.loads(json.dumps(model.config()))
    assert config["layers"][1] == {"type": "Linear", "args": {"in_features": 6, "out_features": 5, "bias": True}}
    assert config["layers"][3] == {"type": "LeakyReLU", "args": {"negative_slope": 0.2}}
    rebuilt = nn.from_config(config)
    assert rebuilt.config() == config and repr(rebuilt) == repr(model)
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [(n, p.shape) for n, p in model.named_parameters()]
    rebuilt.load_state_dict(model.state_dict())
    x = Tensor(randn(3, 2, 3).astype(np.float32))
    model.eval(), rebuilt.eval()
    np.testing.assert_array_equal(rebuilt(x).data, model(x).data)


def test_config_round_trips_losses():
    loss = nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)
    rebuilt = nn.from_config(loss.config())
    assert isinstance(rebuilt, nn.CrossEntropyLoss) and rebuilt.reduction == "sum" and rebuilt.label_smoothing == 0.1


def test_from_config_refuses_an_unknown_type():
    with pytest.raises(ValueError, match=r"from_config: unknown layer type 'os.system'"):
        nn.from_config({"type": "Sequential", "layers": [{"type": "os.system", "args": {}}]})
    with pytest.raises(ValueError, match=r"from_config: bad args for Linear"):
        nn.from_config({"type": "Linear", "args": {"in_features": 2, "out_feature": 3}})


def test_a_user_defined_module_has_no_config_and_says_to_save_its_state_dict():
    with pytest.raises(NotImplementedError, match=r"TwoLayer is a user-defined Module.*state_dict"):
        TwoLayer().config()

    class MyLinear(nn.Linear):
        pass

    with pytest.raises(NotImplementedError, match="MyLinear is a user-defined Module"):
        nn.Sequential(MyLinear(2, 2)).config()


# -- clip_grad_norm_ -------------------------------------------------------------------
@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.3, 1.0), (0.2, float("inf")), (1.0, 3)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    grads = [randn(3, 4, seed=1), randn(4, seed=2), randn(2, 3, seed=3)]
    ours = [nn.Parameter(g * 0) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = Tensor(g.copy()), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_skips_parameters_without_gradients():
    model = nn.Linear(3, 2)
    assert nn.utils.clip_grad_norm_(model.parameters(), 1.0).item() == 0.0


# -- mlp_memory: what training would allocate, before it does -------------------------------------------
@pytest.mark.parametrize("sizes, batch", [((64, 512, 256, 10), 32), ((8, 64, 3), 2048), ((300, 1000, 2), 1)])
def test_mlp_memory_is_within_a_factor_two_of_what_training_with_adam_allocates(sizes, batch):
    import tracemalloc

    from backprop import Tensor, nn, optim
    from backprop.nn import mlp, mlp_memory

    rng = np.random.default_rng(0)
    x, y = Tensor(rng.normal(size=(batch, sizes[0]))), Tensor(rng.integers(0, sizes[-1], batch))
    tracemalloc.start()
    model = mlp(sizes, dtype=np.float64)
    optimizer = optim.Adam(model.parameters())
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0.5 * peak < mlp_memory(sizes, np.float64, batch) < 2 * peak


def test_mlp_memory_of_a_billion_wide_layer_is_counted_without_overflow():
    from backprop.nn import mlp_memory

    assert mlp_memory([10, 10**9, 2], "float32", 32) == 4 * (6 * (11 * 10**9 + (10**9 + 1) * 2) + 4 * 32 * (10**9 + 12))


@settings(max_examples=60, deadline=None)
@given(value=st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, -1e-300, 1e308]),
       which=st.sampled_from(["LeakyReLU", "HuberLoss", "SmoothL1Loss", "StepLR", "MultiStepLR", "ExponentialLR",
                              "CosineAnnealingLR", "LinearLR", "ReduceLROnPlateau", "clip_grad_norm_",
                              "clip_grad_value_", "SGD", "Adam", "Dropout", "CrossEntropyLoss", "EarlyStopping",
                              "leaky_relu", "huber_loss", "normal_", "uniform_", "constant_", "RMSprop"]))
def test_every_numeric_hyperparameter_gives_a_valid_object_or_one_error_naming_it(value, which):
    from backprop.optim import lr_scheduler

    model = nn.Linear(2, 2)
    opt = backprop.optim.SGD(model.parameters(), lr=0.1)
    make = {
        "LeakyReLU": lambda: nn.LeakyReLU(value), "HuberLoss": lambda: nn.HuberLoss(delta=value),
        "SmoothL1Loss": lambda: nn.SmoothL1Loss(beta=value), "StepLR": lambda: lr_scheduler.StepLR(opt, 1, gamma=value),
        "MultiStepLR": lambda: lr_scheduler.MultiStepLR(opt, [1], gamma=value),
        "ExponentialLR": lambda: lr_scheduler.ExponentialLR(opt, value),
        "CosineAnnealingLR": lambda: lr_scheduler.CosineAnnealingLR(opt, 5, eta_min=value),
        "LinearLR": lambda: lr_scheduler.LinearLR(opt, start_factor=value),
        "ReduceLROnPlateau": lambda: lr_scheduler.ReduceLROnPlateau(opt, factor=value),
        "clip_grad_norm_": lambda: nn.utils.clip_grad_norm_(model.parameters(), value),
        "clip_grad_value_": lambda: nn.utils.clip_grad_value_(model.parameters(), value),
        "SGD": lambda: backprop.optim.SGD(model.parameters(), lr=value),
        "Adam": lambda: backprop.optim.Adam(model.parameters(), lr=0.1, betas=(value, 0.999)),
        "Dropout": lambda: nn.Dropout(value), "CrossEntropyLoss": lambda: nn.CrossEntropyLoss(label_smoothing=value),
        "EarlyStopping": lambda: backprop.training.EarlyStopping(min_delta=value),
        "leaky_relu": lambda: nn.functional.leaky_relu(backprop.ones(2), value),
        "huber_loss": lambda: nn.functional.huber_loss(backprop.ones(2), backprop.zeros(2), delta=value),
        "normal_": lambda: nn.init.normal_(backprop.zeros(2), std=value),
        "uniform_": lambda: nn.init.uniform_(backprop.zeros(2), a=value),
        "constant_": lambda: nn.init.constant_(backprop.zeros(2), value),
        "RMSprop": lambda: backprop.optim.RMSprop(model.parameters(), alpha=value),
    }[which]
    try:
        made = make()
    except (ValueError, TypeError) as error:
        assert "\n" not in str(error) and str(error)
    else:  # accepted: then the value is a finite number the object can work with
        assert value == value and abs(value) != float("inf"), f"{which} accepted {value}"
        assert made is not None or which.startswith("clip")
