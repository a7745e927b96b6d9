"""Loading a 200 MB CSV: ``backprop.datasets.load_dataset`` against plain ``pandas.read_csv``.

``python -m bench.load_csv [--rows 800000] [--repeats 3]`` writes a CSV of ``rows`` x 21
columns (20 float features, written with 9 decimals, and an integer class) in a temporary
folder, then loads it in a fresh process per measurement, alternating the two loaders.
Each process reports its wall time for the load and its peak resident memory
(``ru_maxrss``), both in total and above what the process held after its imports. The
report gives medians over the repeats and the median of the per-repeat ratios.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LOADERS = ("backprop", "pandas")


def write_csv(path, rows, seed=0):
    import numpy as np
    import pandas

    rng = np.random.default_rng(seed)
    frame = pandas.DataFrame(rng.normal(size=(rows, 20)), columns=[f"x{j}" for j in range(20)])
    frame["label"] = rng.integers(0, 3, rows)
    frame.to_csv(path, index=False, float_format="%.9f")


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def worker(loader, path):
    """Load ``path`` once with ``loader``; print {"seconds", "peak", "baseline"} as JSON."""
    import pandas

    from backprop.datasets import load_dataset

    baseline = peak_rss()
    start = time.perf_counter()
    if loader == "backprop":
        data = load_dataset(path)
        shape = data.X.shape
    else:
        shape = pandas.read_csv(path).shape
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak": peak_rss(), "baseline": baseline, "shape": list(shape)}))


def measure(loader, path):
    out = subprocess.run([sys.executable, "-m", "bench.load_csv", "--worker", loader, path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("LOADER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "data.csv")
        write_csv(path, args.rows)
        size = os.path.getsize(path)
        print(f"{path}: {args.rows} rows x 21 columns, {size / 1e6:.0f} MB")
        runs = {loader: [] for loader in LOADERS}
        for repeat in range(args.repeats):
            for loader in LOADERS[repeat % 2:] + LOADERS[:repeat % 2]:  # alternate who goes first
                runs[loader].append(measure(loader, path))
    print(f"{'loader':10} {'seconds':>8} {'peak MB':>8} {'above imports MB':>17} {'peak / file':>12}")
    for loader, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak"] for r in results)
        above = statistics.median(r["peak"] - r["baseline"] for r in results)
        print(f"{loader:10} {seconds:8.2f} {peak / 1e6:8.0f} {above / 1e6:17.0f} {peak / size:12.2f}")
    ratio = statistics.median(a["seconds"] / b["seconds"] for a, b in zip(runs["backprop"], runs["pandas"]))
    memory = statistics.median(a["peak"] / b["peak"] for a, b in zip(runs["backprop"], runs["pandas"]))
    print(f"backprop / pandas (median of paired ratios): time {ratio:.2f}x, peak memory {memory:.2f}x")


if __name__ == "__main__":
    main()
