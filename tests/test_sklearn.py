import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import backprop
from backprop.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Small networks and a larger step keep scikit-learn's whole check suite to a few seconds.
FAST = dict(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.01, random_state=0)


@parametrize_with_checks([MLPClassifier(**FAST), MLPRegressor(**FAST)])
def test_estimators_pass_scikit_learns_check_estimator(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_classifier_in_a_pipeline_matches_sklearns_mlp_on_digits(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    ours = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), random_state=0)).fit(X_train, y_train)
    theirs = make_pipeline(StandardScaler(), SklearnMLPClassifier(hidden_layer_sizes=(64,), random_state=0)).fit(X_train, y_train)
    ours_accuracy, theirs_accuracy = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    print(f"digits test accuracy: backprop {ours_accuracy:.4f}, scikit-learn {theirs_accuracy:.4f}")
    assert ours_accuracy >= 0.96 and ours_accuracy >= theirs_accuracy - 0.015


def test_grid_search_over_a_pipeline_picks_parameters_by_cross_validation():
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, learning_rate_init=0.01, random_state=0)),
        {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)], "mlpclassifier__alpha": [1e-4, 1e-2]},
        cv=3,
    ).fit(X, y)
    assert search.best_score_ > 0.9
    assert set(search.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__alpha"}


def test_string_labels_binary_problem_uses_one_logit_and_probabilities_sum_to_one():
    X, y = load_iris(return_X_y=True)
    names = np.where(y == 0, "setosa", "other")
    model = MLPClassifier(**FAST).fit(X, names)
    assert model.model_[-1].out_features == 1 and list(model.classes_) == ["other", "setosa"]
    probabilities = model.predict_proba(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert model.score(X, names) == 1.0 and set(model.predict(X)) == {"setosa", "other"}


def test_partial_fit_once_equals_fit_for_one_epoch():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = MLPClassifier(max_iter=1, shuffle=False, random_state=3).fit(X, y)
    partial = MLPClassifier(shuffle=False, random_state=3).partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(fitted.predict_proba(X), partial.predict_proba(X))
    assert partial.n_iter_ == 1 and len(partial.loss_curve_) == 1


def test_partial_fit_keeps_learning_and_needs_classes_first():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    first, second = np.array_split(np.random.default_rng(0).permutation(len(X)), 2)
    model = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    for _ in range(30):
        model.partial_fit(X[first], y[first], classes=np.array([0, 1, 2]))
        model.partial_fit(X[second], y[second])
    assert model.loss_curve_[-1] < model.loss_curve_[0] / 3 and model.score(X, y) > 0.9


def test_early_stopping_stops_on_validation_accuracy_and_records_it(digits_split):
    X_train, _, y_train, _ = digits_split
    model = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3, random_state=0)
    model.fit(StandardScaler().fit_transform(X_train), y_train)
    assert model.n_iter_ < 200 and len(model.validation_scores_) == model.n_iter_ == len(model.loss_curve_)
    assert max(model.validation_scores_) > 0.9


def test_training_stops_when_the_loss_stops_improving_by_tol():
    X, y = load_iris(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(8,), tol=0.1, n_iter_no_change=2, max_iter=500, random_state=0).fit(X, y)
    assert model.n_iter_ < 500


def test_alpha_is_an_l2_penalty_on_the_weights():
    X, y = load_iris(return_X_y=True)
    norms = [
        np.linalg.norm(MLPClassifier(alpha=alpha, max_iter=100, random_state=0).fit(X, y).model_[0].weight.data)
        for alpha in (0.0, 10.0)
    ]
    assert norms[1] < 0.8 * norms[0]


@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_solver_fits_iris(solver):
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier(solver=solver, learning_rate_init=0.01, max_iter=150, random_state=0))
    assert model.fit(X, y).score(X, y) > 0.9


def test_regressor_fits_several_outputs():
    X, Y = make_regression(n_samples=200, n_features=5, n_targets=2, noise=1.0, random_state=0)
    model = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300, random_state=0)
    model.fit(X, Y / 100)
    assert model.predict(X).shape == (200, 2) and model.score(X, Y / 100) > 0.95


def test_float32_input_trains_a_float32_network():
    X, y = load_iris(return_X_y=True)
    model = MLPClassifier(max_iter=5, random_state=0).fit(X.astype(np.float32), y)
    assert model.model_[0].weight.dtype == np.float32


def test_fitting_leaves_backprops_random_stream_alone():
    backprop.manual_seed(123)
    expected = backprop.random.generator().random()
    backprop.manual_seed(123)
    X, y = load_iris(return_X_y=True)
    MLPClassifier(max_iter=3, random_state=0).fit(X, y)
    assert backprop.random.generator().random() == expected


@pytest.mark.parametrize(
    "params, message",
    [
        ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes must be positive integers"),
        ({"activation": "softsign"}, "activation must be one of"),
        ({"solver": "lbfgs"}, "solver must be one of"),
        ({"learning_rate_init": 0}, "learning_rate_init must be > 0"),
        ({"max_iter": 0}, "max_iter must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be 'auto' or a positive integer"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
    ],
)
def test_bad_parameters_are_named_in_the_error(params, message):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**params).fit(X, y)


# -- mlp_memory: what training would allocate, before it does -------------------------------------------
@pytest.mark.parametrize("sizes, batch", [((64, 512, 256, 10), 32), ((8, 64, 3), 2048), ((300, 1000, 2), 1)])
def test_mlp_memory_is_within_a_factor_two_of_what_training_with_adam_allocates(sizes, batch):
    import tracemalloc

    from backprop import Tensor, nn, optim
    from backprop.sklearn import mlp, mlp_memory

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
    from backprop.sklearn import mlp_memory

    assert mlp_memory([10, 10**9, 2], "float32", 32) == 4 * (6 * (11 * 10**9 + (10**9 + 1) * 2) + 4 * 32 * (10**9 + 12))
