"""backprop.nn.init: PyTorch's formulas, in place, reproducible under manual_seed."""

import math

import numpy as np
import pytest

import backprop
from backprop import nn
from backprop.nn import init

SHAPE = (400, 500)  # fan_out = 400, fan_in = 500: 200,000 draws


def empty(shape=SHAPE, dtype=np.float32):
    backprop.manual_seed(0)  # the statistical checks below then hold every run, not almost every
    return nn.Parameter(np.zeros(shape, dtype=dtype))


def assert_uniform(array, bound):
    assert np.abs(array).max() <= bound and np.abs(array).max() > 0.99 * bound
    assert array.mean() == pytest.approx(0.0, abs=0.01 * bound)
    assert array.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)


def assert_normal(array, mean, std):
    assert array.mean() == pytest.approx(mean, abs=0.01 * std)
    assert array.std() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize(
    "nonlinearity,param,gain",
    [
        ("linear", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain_matches_torch(nonlinearity, param, gain):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(gain, rel=1e-15)
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15
    )


def test_calculate_gain_rejects_an_unknown_nonlinearity():
    with pytest.raises(ValueError, match="calculate_gain: nonlinearity must be one of .*; got 'softplus'"):
        init.calculate_gain("softplus")


def test_uniform_and_normal_fill_in_place_and_return_the_tensor():
    tensor = empty()
    array = tensor.data
    assert init.uniform_(tensor, -2.0, 3.0) is tensor and tensor.data is array
    assert tensor.data.min() >= -2.0 and tensor.data.max() < 3.0
    assert tensor.data.mean() == pytest.approx(0.5, abs=0.02)
    assert init.normal_(tensor, mean=1.0, std=0.5) is tensor and tensor.data is array
    assert_normal(tensor.data, 1.0, 0.5)
    assert tensor.dtype == np.float32


def test_constant_ones_and_zeros():
    tensor = empty((3, 2))
    assert (init.constant_(tensor, 0.25).data == 0.25).all()
    assert (init.ones_(tensor).data == 1).all()
    assert (init.zeros_(tensor).data == 0).all()


def test_xavier_uniform_bound_is_gain_sqrt_6_over_fan_in_plus_fan_out():
    assert_uniform(init.xavier_uniform_(empty()).data, math.sqrt(6 / 900))
    assert_uniform(init.xavier_uniform_(empty(), gain=2.0).data, 2 * math.sqrt(6 / 900))


def test_xavier_normal_std_is_gain_sqrt_2_over_fan_in_plus_fan_out():
    assert_normal(init.xavier_normal_(empty(), gain=1.5).data, 0.0, 1.5 * math.sqrt(2 / 900))


@pytest.mark.parametrize("mode,fan", [("fan_in", 500), ("fan_out", 400)])
def test_kaiming_uniform_bound_is_gain_sqrt_3_over_fan(mode, fan):
    assert_uniform(init.kaiming_uniform_(empty(), mode=mode, nonlinearity="relu").data, math.sqrt(2) * math.sqrt(3 / fan))
    gain = math.sqrt(2 / (1 + 5))  # a = sqrt(5), Linear's default
    assert_uniform(init.kaiming_uniform_(empty(), a=math.sqrt(5), mode=mode).data, gain * math.sqrt(3 / fan))


@pytest.mark.parametrize("mode,fan", [("fan_in", 500), ("fan_out", 400)])
def test_kaiming_normal_std_is_gain_over_sqrt_fan(mode, fan):
    assert_normal(init.kaiming_normal_(empty(), mode=mode, nonlinearity="relu").data, 0.0, math.sqrt(2 / fan))


def test_fans_count_the_receptive_field_of_higher_dimensional_weights():
    tensor = empty((100, 150, 3, 3))  # fan_in = 1350, fan_out = 900
    assert_uniform(init.xavier_uniform_(tensor).data, math.sqrt(6 / 2250))


def test_bounds_agree_with_torch_init():
    torch = pytest.importorskip("torch")
    theirs = torch.empty(SHAPE, dtype=torch.float64)
    for ours, torch_init in [
        (init.xavier_uniform_, torch.nn.init.xavier_uniform_),
        (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
    ]:
        torch.manual_seed(0)
        torch_init(theirs)
        mine = ours(empty(dtype=np.float64)).data
        assert np.abs(mine).max() == pytest.approx(theirs.abs().max().item(), rel=1e-3)
        assert mine.std() == pytest.approx(theirs.std().item(), rel=0.01)


@pytest.mark.parametrize("fill", [init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_, init.kaiming_normal_])
def test_fan_based_init_needs_two_dimensions(fill):
    with pytest.raises(ValueError, match=r"fan in and fan out need a tensor of at least 2 dimensions; got shape \(5,\)"):
        fill(empty((5,)))


def test_kaiming_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'; got 'fan_avg'"):
        init.kaiming_uniform_(empty((3, 3)), mode="fan_avg")


def test_manual_seed_makes_initialization_reproducible():
    def build():
        backprop.manual_seed(7)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        init.kaiming_normal_(model[0].weight)
        return model.state_dict()

    first, second = build(), build()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    backprop.manual_seed(8)
    assert not np.array_equal(nn.Linear(4, 8).weight.data, first["0.weight"])
