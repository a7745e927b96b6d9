"""backprop.sklearn against scikit-learn's own MLP: same parameters, same data, same numbers.

Both start from the same weights (scikit-learn's Glorot draw from ``random_state``) and
visit the batches in the same order, so every epoch's loss, the weights, the validation
scores and the predictions agree to float rounding.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn import neural_network
from sklearn.datasets import load_digits, load_iris, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import backprop
from backprop.compile import fit_step
from backprop.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Small networks and a larger step keep scikit-learn's whole check suite to a few seconds.
FAST = dict(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.01, random_state=0)
SMALL = dict(hidden_layer_sizes=(12, 7), random_state=0)


@parametrize_with_checks([MLPClassifier(**FAST), MLPRegressor(**FAST), MLPClassifier(solver="lbfgs", **{**FAST, "max_iter": 50})])
def test_estimators_pass_scikit_learns_check_estimator(estimator, check):
    check(estimator)


def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def regression(n_targets=1, positive=False):
    X, y = make_regression(n_samples=120, n_features=6, n_targets=n_targets, noise=5.0, random_state=0)
    y = y / 100
    return StandardScaler().fit_transform(X), (np.exp(y / 2) if positive else y)


def fit_both(ours, X, y, **fit_params):
    """Fit ``ours`` and scikit-learn's estimator with the same parameters on the same data."""
    name = type(ours).__name__
    theirs = getattr(neural_network, name)(**{k: v for k, v in ours.get_params().items() if k not in ("dropout", "delta", "device")})
    with warnings.catch_warnings(record=True) as their_warnings:
        warnings.simplefilter("always")
        theirs.fit(X, y, **fit_params)
    with warnings.catch_warnings(record=True) as our_warnings:
        warnings.simplefilter("always")
        ours.fit(X, y, **fit_params)
    assert [str(w.message) for w in our_warnings] == [str(w.message) for w in their_warnings]
    return ours, theirs


def assert_same_model(ours, theirs, X, rtol=1e-9):
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    for name in ("loss_curve_", "validation_scores_", "loss_", "best_loss_", "best_validation_score_"):
        value = getattr(theirs, name, None)
        if value is None:
            assert getattr(ours, name, None) is None, name
        else:
            np.testing.assert_allclose(getattr(ours, name), value, rtol=rtol, err_msg=name)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol * 1e3, atol=rtol)
    method = "predict_proba" if hasattr(theirs, "classes_") else "predict"
    np.testing.assert_allclose(getattr(ours, method)(X), getattr(theirs, method)(X), rtol=rtol * 1e3, atol=rtol)


SOLVER_CASES = {
    "adam": dict(solver="adam", max_iter=15, learning_rate_init=0.01),
    "adam, no shuffle, small batches": dict(solver="adam", max_iter=5, batch_size=32, shuffle=False),
    "sgd, nesterov": dict(solver="sgd", max_iter=15, learning_rate_init=0.05),
    "sgd, plain momentum": dict(solver="sgd", max_iter=15, nesterovs_momentum=False, learning_rate_init=0.05),
    "sgd, invscaling": dict(solver="sgd", max_iter=10, momentum=0, learning_rate="invscaling", learning_rate_init=0.5),
    "sgd, adaptive": dict(solver="sgd", max_iter=30, learning_rate="adaptive", tol=0.05, n_iter_no_change=2),
    "never stops early (n_iter_no_change=inf)": dict(solver="adam", max_iter=12, tol=10.0, n_iter_no_change=np.inf),
    "stops when the loss stalls": dict(solver="adam", max_iter=200, tol=0.05, n_iter_no_change=3, learning_rate_init=0.01),
    "early stopping": dict(solver="adam", max_iter=60, early_stopping=True, n_iter_no_change=3, learning_rate_init=0.01),
    "lbfgs": dict(solver="lbfgs", max_iter=15),
    "lbfgs, function calls bounded": dict(solver="lbfgs", max_fun=8),
    "logistic, alpha": dict(solver="adam", activation="logistic", alpha=0.5, max_iter=10),
    "tanh, lbfgs": dict(solver="lbfgs", activation="tanh", max_iter=10),
}


@pytest.mark.parametrize("case", SOLVER_CASES)
def test_classifier_matches_scikit_learn_epoch_for_epoch(case):
    X, y = iris()
    assert_same_model(*fit_both(MLPClassifier(**SMALL, **SOLVER_CASES[case]), X, y), X)


@pytest.mark.parametrize(
    "case, params",
    [
        ("binary, logistic output", dict(solver="adam", max_iter=10)),
        ("multilabel", dict(solver="adam", max_iter=10, multilabel=True)),
        ("multilabel, lbfgs", dict(solver="lbfgs", max_iter=10, multilabel=True)),
        ("sample weights", dict(solver="adam", max_iter=10, weighted=True)),
        ("sample weights, early stopping", dict(solver="sgd", max_iter=10, weighted=True, early_stopping=True)),
        ("sample weights, lbfgs", dict(solver="lbfgs", max_iter=10, weighted=True)),
        ("float32", dict(solver="adam", max_iter=10, float32=True)),
    ],
)
def test_classifier_inputs_match_scikit_learn(case, params):
    params = dict(params)
    X, y = iris()
    if params.pop("multilabel", False):
        X, y = make_multilabel_classification(n_samples=100, n_features=8, n_classes=4, random_state=0)
    elif case.startswith("binary"):
        y = (y == 1).astype(int)
    fit_params = {"sample_weight": np.random.default_rng(0).uniform(0, 2, len(X))} if params.pop("weighted", False) else {}
    if params.pop("float32", False):
        X = X.astype(np.float32)
    ours, theirs = fit_both(MLPClassifier(**SMALL, **params), X, y, **fit_params)
    assert_same_model(ours, theirs, X, rtol=1e-4 if X.dtype == np.float32 else 1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize(
    "case, params",
    [
        ("squared error", dict(solver="adam", max_iter=10, learning_rate_init=0.01)),
        ("two outputs", dict(solver="adam", max_iter=10, n_targets=2)),
        ("two outputs, lbfgs", dict(solver="lbfgs", max_iter=10, n_targets=2)),
        ("poisson", dict(solver="adam", loss="poisson", max_iter=10, positive=True)),
        ("poisson, lbfgs", dict(solver="lbfgs", loss="poisson", max_iter=10, positive=True)),
        ("early stopping on R2", dict(solver="sgd", early_stopping=True, max_iter=40, learning_rate_init=0.01)),
        ("sample weights", dict(solver="sgd", max_iter=10, weighted=True, learning_rate_init=0.01)),
    ],
)
def test_regressor_matches_scikit_learn_epoch_for_epoch(case, params):
    params = dict(params)
    X, y = regression(params.pop("n_targets", 1), params.pop("positive", False))
    fit_params = {"sample_weight": np.random.default_rng(0).uniform(0, 2, len(X))} if params.pop("weighted", False) else {}
    assert_same_model(*fit_both(MLPRegressor(**SMALL, **params), X, y, **fit_params), X)


def test_sparse_input_trains_as_the_dense_matrix_does():
    X, y = iris()
    X[np.abs(X) < 0.5] = 0
    for solver in ("adam", "lbfgs"):
        dense = MLPClassifier(**SMALL, solver=solver, max_iter=5).fit(X, y)
        for matrix in (scipy.sparse.csr_matrix, scipy.sparse.csc_array):
            sparse = MLPClassifier(**SMALL, solver=solver, max_iter=5).fit(matrix(X), y)
            np.testing.assert_allclose(sparse.loss_curve_ if solver == "adam" else sparse.loss_, dense.loss_curve_ if solver == "adam" else dense.loss_)
            np.testing.assert_allclose(sparse.predict_proba(matrix(X)), dense.predict_proba(X))


def test_partial_fit_matches_scikit_learn_call_for_call():
    X, y = iris()
    ours, theirs = MLPClassifier(**SMALL), neural_network.MLPClassifier(**SMALL)
    for step in range(4):
        rows = slice(step * 30, step * 30 + 60)
        for model in (ours, theirs):
            model.partial_fit(X[rows], y[rows], classes=[0, 1, 2])
    assert_same_model(ours, theirs, X)


def test_warm_start_continues_from_the_fitted_weights_as_scikit_learn_does():
    X, y = iris()
    ours, theirs = MLPClassifier(**SMALL, max_iter=5, warm_start=True), neural_network.MLPClassifier(**SMALL, max_iter=5, warm_start=True)
    for model in (ours, theirs):
        model.fit(X, y).fit(X, y)
    assert ours.n_iter_ == 5 and len(ours.loss_curve_) == 10  # n_iter_ counts this fit's epochs
    assert_same_model(ours, theirs, X)


def test_setting_coefs_changes_the_model():
    X, y = iris()
    ours = MLPClassifier(**SMALL, max_iter=5).fit(X, y)
    theirs = neural_network.MLPClassifier(**SMALL, max_iter=1).fit(X, y)
    before = ours.predict_proba(X)
    ours.coefs_ = [c * 1.5 for c in ours.coefs_]
    ours.intercepts_[0][:] -= 1  # in place, as scikit-learn allows too
    theirs.coefs_, theirs.intercepts_ = ours.coefs_, ours.intercepts_
    assert np.abs(ours.predict_proba(X) - before).max() > 0.01
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)


def test_lbfgs_from_the_same_weights_gives_the_same_result():
    X, y = iris()
    start = neural_network.MLPClassifier(**SMALL, solver="lbfgs", max_iter=3, warm_start=True).fit(X, y)
    ours = MLPClassifier(**SMALL, solver="lbfgs", max_iter=3, warm_start=True).fit(X, y)
    ours.coefs_ = [c.copy() for c in start.coefs_]
    ours.intercepts_ = [c.copy() for c in start.intercepts_]
    start.fit(X, y)
    ours.fit(X, y)
    assert ours.n_iter_ == start.n_iter_
    np.testing.assert_allclose(ours.loss_, start.loss_, rtol=1e-10)
    for a, b in zip(ours.coefs_, start.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


def test_verbose_prints_scikit_learns_lines_to_stdout(capsys):
    X, y = iris()
    for model in (MLPClassifier(**SMALL, max_iter=3, verbose=True), neural_network.MLPClassifier(**SMALL, max_iter=3, verbose=True)):
        model.fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    ours, theirs = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    assert ours == theirs and len(ours) == 3 and ours[0].startswith("Iteration 1, loss = ")


def test_feature_names_come_from_a_dataframe():
    pandas = pytest.importorskip("pandas")
    X, y = iris()
    frame = pandas.DataFrame(X, columns=["sepal length", "sepal width", "petal length", "petal width"])
    model = MLPClassifier(**SMALL, max_iter=5).fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        model.predict(X)


def _misuse_cases():
    X, y = iris()
    yield "partial_fit after fit with early stopping", dict(early_stopping=True), lambda m: m.partial_fit(X, y)
    yield "partial_fit under lbfgs", dict(solver="lbfgs"), lambda m: m.partial_fit(X, y, classes=[0, 1, 2])
    yield "validation set too small", dict(early_stopping=True, validation_fraction=0.005), lambda m: m.fit(X, y)
    yield "bad learning_rate", dict(learning_rate="cosine"), lambda m: m.fit(X, y)
    yield "negative alpha", dict(alpha=-1.0), lambda m: m.fit(X, y)
    yield "zero hidden units", dict(hidden_layer_sizes=(10, 0)), lambda m: m.fit(X, y)
    yield "max_fun of 0", dict(max_fun=0), lambda m: m.fit(X, y)
    yield "validation_fraction of 1", dict(validation_fraction=1.0), lambda m: m.fit(X, y)
    yield "new class in partial_fit", dict(), lambda m: m.partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y + 1)
    yield "diverging", dict(solver="sgd", learning_rate_init=1e6, max_iter=5), lambda m: m.fit(X * 1e6, y)
    yield "warm start with other classes", dict(warm_start=True), lambda m: m.fit(X, y).fit(X, y % 2)


@pytest.mark.parametrize("case, params, misuse", list(_misuse_cases()), ids=[c[0] for c in _misuse_cases()])
def test_misuse_raises_scikit_learns_error(case, params, misuse):
    errors = []
    for cls in (MLPClassifier, neural_network.MLPClassifier):
        with pytest.raises((ValueError, AttributeError, TypeError)) as info:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                misuse(cls(**{**SMALL, "max_iter": 5, **params}))
        errors.append((info.type, str(info.value)))
    assert errors[0] == errors[1]


def test_one_class_y_is_accepted_as_scikit_learn_accepts_it():
    X, _ = iris()
    ours, theirs = fit_both(MLPClassifier(**SMALL, max_iter=5), X, np.zeros(len(X)))
    assert_same_model(ours, theirs, X)


def test_classifier_in_a_pipeline_reaches_scikit_learns_accuracy_on_digits():
    X, y = load_digits(return_X_y=True)
    ours = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0))
    theirs = make_pipeline(StandardScaler(), neural_network.MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0))
    ours.fit(X[:1200], y[:1200])
    theirs.fit(X[:1200], y[:1200])
    assert ours.score(X[1200:], y[1200:]) == theirs.score(X[1200:], y[1200:]) > 0.9


def test_grid_search_over_dropout_and_alpha():
    X, y = iris()
    search = GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0),
        {"dropout": [0.0, 0.2], "alpha": [1e-4, 1e-1]},
        cv=3,
    ).fit(X, y)
    assert search.best_score_ > 0.9 and set(search.best_params_) == {"dropout", "alpha"}


def test_fitting_leaves_backprops_random_stream_alone():
    backprop.manual_seed(123)
    expected = backprop.random.generator().random()
    backprop.manual_seed(123)
    X, y = iris()
    MLPClassifier(**SMALL, max_iter=3, dropout=0.3).fit(X, y)
    assert backprop.random.generator().random() == expected


def test_model_is_the_network_as_a_backprop_module():
    X, y = iris()
    model = MLPClassifier(**SMALL, max_iter=3).fit(X, y)
    logits = model.model_(backprop.Tensor(X)).data
    from scipy.special import softmax

    np.testing.assert_allclose(softmax(logits, axis=1), model.predict_proba(X), rtol=1e-12)


def test_other_activations_and_a_bad_dropout_are_checked():
    X, y = iris()
    with pytest.raises(ValueError, match="'solver' parameter of MLPClassifier must be a str among .*'adagrad'"):
        MLPClassifier(solver="newton").fit(X, y)
    assert MLPClassifier(**SMALL, activation="gelu", max_iter=50, learning_rate_init=0.01).fit(X, y).score(X, y) > 0.9
    with pytest.raises(ValueError, match="dropout must be a rate in \\[0, 1\\) or one per hidden layer"):
        MLPClassifier(**SMALL, dropout=[0.1, 0.2, 0.3]).fit(X, y)
    with pytest.raises(ValueError, match="The 'dropout' parameter of MLPClassifier"):
        MLPClassifier(**SMALL, dropout="half").fit(X, y)


def _train_step(estimator):
    return fit_step(estimator._optimizer)


@pytest.mark.parametrize(
    "make, y_of",
    [
        (lambda: MLPClassifier(**SMALL, max_iter=8, learning_rate_init=0.01), lambda y: y),
        (lambda: MLPClassifier(**SMALL, max_iter=8, solver="sgd"), lambda y: y == 2),
        (lambda: MLPRegressor(**SMALL, max_iter=8), lambda y: np.column_stack([y, y * 0.5])),
    ],
    ids=["multiclass", "binary", "regression"],
)
def test_unit_weights_train_compiled_and_equal_the_eager_weighted_path(make, y_of):
    """Without sample weights, every step is a replayed plan (SklearnLoss has no branch
    on values); with weights all 1, the eager path: the same model to rounding."""
    X, y = iris()
    y = y_of(y).astype(float) if y_of(y).dtype == bool else y_of(y)
    compiled, eager = make().fit(X, y), make().fit(X, y, sample_weight=np.ones(len(X)))
    assert _train_step(compiled).counts == {"compiled": compiled.n_iter_, "eager": 0}  # iris: one batch an epoch
    assert _train_step(eager).counts["compiled"] == 0
    assert compiled.n_iter_ == eager.n_iter_
    np.testing.assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-12)
    for a, b in zip(compiled.coefs_ + compiled.intercepts_, eager.coefs_ + eager.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_the_batch_order_is_scikit_learns_shuffle():
    from sklearn.utils import shuffle

    from backprop.sklearn._loop import _SklearnOrder

    ours, theirs = _SklearnOrder(50, np.random.RandomState(3)), np.arange(50)
    state = np.random.RandomState(3)
    for _ in range(4):
        theirs = shuffle(theirs, random_state=state)
        np.testing.assert_array_equal(ours.indices(), theirs)


def test_lbfgs_runs_scipys_own_blas_on_one_thread(monkeypatch):
    """L-BFGS-B's BLAS (a pip SciPy's scipy.libs OpenBLAS) on one thread while it runs,
    its setting restored after; NumPy's BLAS keeps its threads."""
    from threadpoolctl import threadpool_info

    import backprop.sklearn as ours

    def scipy_pools():
        return [p["num_threads"] for p in threadpool_info() if "scipy.libs" in p["filepath"]]

    if not scipy_pools():
        pytest.skip("SciPy shares NumPy's BLAS here (no scipy.libs OpenBLAS)")
    before, seen, minimize = scipy_pools(), [], ours.scipy.optimize.minimize

    def spy(*args, **kwargs):
        seen.append(scipy_pools())
        return minimize(*args, **kwargs)

    monkeypatch.setattr(ours.scipy.optimize, "minimize", spy)
    X, y = iris()
    MLPClassifier(**SMALL, solver="lbfgs", max_iter=3).fit(X, y)
    assert seen == [[1] * len(before)] and scipy_pools() == before


def test_partial_fit_calls_replay_one_plan_until_coefs_are_replaced():
    X, y = iris()
    ours, theirs = MLPClassifier(**SMALL), neural_network.MLPClassifier(**SMALL)
    for _ in range(4):
        for estimator in (ours, theirs):
            estimator.partial_fit(X, y, classes=np.unique(y))
    step = _train_step(ours)
    assert len(step.plans) == 1 and step.counts == {"compiled": 1, "eager": 0}
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    ours.coefs_ = [c * 0.5 for c in ours.coefs_]  # a new array: captured anew, and used
    theirs.coefs_ = [c * 0.5 for c in theirs.coefs_]
    ours.partial_fit(X, y), theirs.partial_fit(X, y)
    assert len(_train_step(ours).plans) == 2
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-12)


def test_scikit_learns_own_mlp_tests_pass_on_our_estimators(tmp_path):
    """scikit-learn's test_mlp.py, with its estimators replaced by ours: all pass but the
    three that read scikit-learn's private optimizer internals (``_optimizer``, ``_coef_indptr``)."""
    import subprocess
    import sys
    from pathlib import Path

    import sklearn

    source = (Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py").read_text()
    original = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
    assert original in source
    (tmp_path / "test_mlp_ours.py").write_text(source.replace(original, "from backprop.sklearn import MLPClassifier, MLPRegressor"))
    (tmp_path / "conftest.py").write_text("from sklearn.conftest import *  # noqa: F403 - its fixtures\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_mlp_ours.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    failed = sorted(line.split("::")[1].split()[0] for line in done.stdout.splitlines() if line.startswith("FAILED"))
    assert failed == ["test_adaptive_learning_rate", "test_gradient", "test_learning_rate_warmstart"], done.stdout[-3000:]
    assert " 56 passed" in done.stdout, done.stdout[-3000:]
