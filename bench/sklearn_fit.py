"""backprop.sklearn's MLPClassifier against scikit-learn's: ``fit`` on digits, default parameters.

Run: ``python -m bench.sklearn_fit [--repeats N]``. For each solver (adam, lbfgs) the two
estimators fit the same data with the same parameters and ``random_state`` (so the same
initial weights, batch order and, as the tests check, the same epochs), taking turns
in one process (the order alternates each repeat), so that the load of a shared machine
falls on both. It prints the median seconds of each and the median of the paired
ratios (scikit-learn's time / backprop's).
"""

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
from sklearn import neural_network
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from backprop import sklearn as ours
from bench.worker import blas_pools


def timed_fit(estimator, X, y):
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start, estimator


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.sklearn_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="paired fits per solver (default 5)")
    parser.add_argument("--solvers", nargs="+", default=["adam", "lbfgs"])
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="limit BLAS to this many threads for both (default: as set up)"
    )
    args = parser.parse_args(argv)
    with threadpool_limits(args.blas_threads):
        run(args)


def run(args):
    X, y = load_digits(return_X_y=True)
    pools = "; ".join(blas_pools())
    print(f"digits {X.shape}, python {platform.python_version()}, numpy {np.__version__}; BLAS: {pools}")
    print("| solver | n_iter_ | scikit-learn (s) | backprop (s) | speed-up (median of paired ratios) |")
    print("|---|---|---|---|---|")
    warnings.simplefilter("ignore", ConvergenceWarning)
    for solver in args.solvers:
        times = {"sklearn": [], "backprop": []}
        iterations = {"sklearn": [], "backprop": []}
        for repeat in range(args.repeats):
            pair = [
                ("sklearn", neural_network.MLPClassifier(solver=solver, random_state=repeat)),
                ("backprop", ours.MLPClassifier(solver=solver, random_state=repeat)),
            ]
            for name, estimator in pair if repeat % 2 == 0 else pair[::-1]:
                seconds, fitted = timed_fit(estimator, X, y)
                times[name].append(seconds)
                iterations[name].append(fitted.n_iter_)
        ratios = [s / b for s, b in zip(times["sklearn"], times["backprop"])]
        same = "same" if iterations["sklearn"] == iterations["backprop"] else "DIFFERENT"
        counts = f"{min(iterations['backprop'])}-{max(iterations['backprop'])} ({same} for both)"
        print(
            f"| {solver} | {counts} | {statistics.median(times['sklearn']):.2f} "
            f"| {statistics.median(times['backprop']):.2f} | {statistics.median(ratios):.2f}x "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
