"""The README's example: ``GridSearchCV`` over ``dropout`` and ``alpha`` on digits, beside
scikit-learn's MLP searched over ``alpha`` on the same folds (it has no dropout).

Run: ``python -m bench.sklearn_grid``. Prints one row per parameter setting: the mean
cross-validated accuracy and the mean fit time of each estimator.
"""

import warnings

from sklearn import neural_network
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from backprop.sklearn import MLPClassifier


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = load_digits(return_X_y=True)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    alphas = [1e-4, 1e-2, 1.0]
    ours = GridSearchCV(
        make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=60, random_state=0)),
        {"mlpclassifier__dropout": [0.0, 0.2, 0.5], "mlpclassifier__alpha": alphas},
        cv=folds,
    ).fit(X, y)
    theirs = GridSearchCV(
        make_pipeline(
            StandardScaler(), neural_network.MLPClassifier(hidden_layer_sizes=(64,), max_iter=60, random_state=0)
        ),
        {"mlpclassifier__alpha": alphas},
        cv=folds,
    ).fit(X, y)
    theirs_by_alpha = {
        params["mlpclassifier__alpha"]: (score, seconds)
        for params, score, seconds in zip(
            theirs.cv_results_["params"], theirs.cv_results_["mean_test_score"], theirs.cv_results_["mean_fit_time"]
        )
    }
    print("| dropout | alpha | backprop accuracy | backprop fit (s) | scikit-learn accuracy | scikit-learn fit (s) |")
    print("|---|---|---|---|---|---|")
    for params, score, seconds in zip(
        ours.cv_results_["params"], ours.cv_results_["mean_test_score"], ours.cv_results_["mean_fit_time"]
    ):
        dropout, alpha = params["mlpclassifier__dropout"], params["mlpclassifier__alpha"]
        their_score, their_seconds = theirs_by_alpha[alpha] if dropout == 0 else (None, None)
        theirs_cells = f"{their_score:.4f} | {their_seconds:.2f}" if dropout == 0 else "(no dropout) | "
        print(f"| {dropout} | {alpha:g} | {score:.4f} | {seconds:.2f} | {theirs_cells} |")
    print(f"best: backprop {ours.best_params_} {ours.best_score_:.4f}; scikit-learn {theirs.best_params_} {theirs.best_score_:.4f}")


if __name__ == "__main__":
    main()
