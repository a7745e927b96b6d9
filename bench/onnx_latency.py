"""Predict latency, ONNX Runtime against backprop: ``python -m bench.onnx_latency``.

The model is the one ``backprop train`` makes by default for digits (64 -> 128 ReLU ->
10, float32), trained for a few epochs and saved with its metadata, then exported with
``backprop.onnx.export``. Both sides do the same work, from raw pixels to labels and
probabilities: backprop standardizes (x - mean) / std, runs the network under
``no_grad``, takes the softmax and the arg max's label, as ``backprop predict`` does
without its CSV writing; ONNX Runtime runs the exported graph, which holds all of it.

One thread each (BLAS and ONNX Runtime). For 1 example and for 10,000, the two run
blocks of calls back to back in an order that alternates between repetitions; the
latency is the median over repetitions of a block's time per call, and the ratio the
median of the per-repetition ratios, so noise common to neighbouring blocks cancels.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

import backprop  # noqa: E402
import backprop.onnx  # noqa: E402
from backprop.datasets import load_dataset  # noqa: E402
from backprop.sklearn import mlp  # noqa: E402


def trained_digits_model(folder):
    """Train 64-128-10 on digits (5 epochs) and save it with the command's metadata."""
    data = load_dataset("digits")
    mean, std = data.X.mean(axis=0), data.X.std(axis=0)
    std[std == 0] = 1.0
    backprop.manual_seed(0)
    model = mlp((64, 128, 10), "relu")
    optimizer = backprop.optim.Adam(model.parameters(), lr=1e-3)
    backprop.fit(model, backprop.nn.CrossEntropyLoss(), optimizer, ((data.X - mean) / std, data.y), 5, batch_size=32)
    meta = {
        "task": "classification", "loss": "ce", "dtype": "float32", "feature_names": data.feature_names,
        "feature_mean": mean.tolist(), "feature_std": std.tolist(), "target": data.target_name,
        "label_names": data.label_names,
    }
    path = os.path.join(folder, "digits.npz")
    backprop.save(model, path, metadata=meta)
    return path, data.X


def backprop_predict(model, meta):
    """Raw features -> (labels, probabilities), as ``backprop predict`` computes them."""
    mean, std = np.asarray(meta["feature_mean"]), np.asarray(meta["feature_std"])
    labels = np.asarray(meta["label_names"], dtype=object)
    model.eval()

    def predict(X):
        with backprop.no_grad():
            logits = model(backprop.Tensor(((X - mean) / std).astype(np.float32))).data.astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return labels[probabilities.argmax(axis=1)], probabilities

    return predict


def onnxruntime_predict(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda X: session.run(None, {"features": X.astype(np.float32)})


def block(predict, X, calls):
    start = time.perf_counter()
    for _ in range(calls):
        predict(X)
    return (time.perf_counter() - start) / calls


def measure(systems, X, calls, repeats):
    """{name: median seconds per call}, and the median per-repetition ratio backprop / onnxruntime."""
    times = {name: [] for name in systems}
    for name, predict in systems.items():  # warm up
        block(predict, X, max(1, calls // 10))
    for repeat in range(repeats):
        order = list(systems) if repeat % 2 == 0 else list(systems)[::-1]
        for name in order:
            times[name].append(block(systems[name], X, calls))
    ratio = float(np.median(np.array(times["backprop"]) / np.array(times["onnxruntime"])))
    return {name: float(np.median(t)) for name, t in times.items()}, ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        npz, X = trained_digits_model(folder)
        onnx_path = os.path.join(folder, "digits.onnx")
        backprop.onnx.export(npz, onnx_path)
        model, meta = backprop.onnx.load_model(npz)
        systems = {"backprop": backprop_predict(model, meta), "onnxruntime": onnxruntime_predict(onnx_path)}
        big = np.tile(X, (10_000 // len(X) + 1, 1))[:10_000]
        mine, theirs = systems["backprop"](big), systems["onnxruntime"](big)
        assert (mine[0] == theirs[0]).all() and np.abs(mine[1] - theirs[1]).max() < 1e-5, "the two disagree"
        print(f"digits 64-128-10 float32, raw pixels -> label + probabilities, 1 thread, {args.repeats} repetitions")
        print(f"{'examples':>9} {'backprop':>12} {'onnxruntime':>12} {'backprop / onnxruntime':>24}")
        for rows, calls in ((1, 2000), (10_000, 10)):
            medians, ratio = measure(systems, big[:rows], calls, args.repeats)
            print(
                f"{rows:>9} {medians['backprop'] * 1e6:>9.1f} us {medians['onnxruntime'] * 1e6:>9.1f} us "
                f"{ratio:>23.2f}x"
            )


if __name__ == "__main__":
    main()
