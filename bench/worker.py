"""One benchmark process per system: ``python -m bench.worker SYSTEM --threads N``.

The orchestrator (``train_mlp.py``) keeps one worker per system alive and sends it
one JSON command per line on stdin; the worker answers one JSON line on stdout.
Separate processes keep each library's threads, allocator and imports apart, and
let the orchestrator interleave the systems (A B C D A B C D ...) so that machine
noise falls on all of them alike.

``--memory`` instead runs one training job in a fresh process and reports its peak
resident memory (VmHWM), so each system's figure is its own.

The BLAS and OpenMP thread counts come from the environment the orchestrator
starts the process with (OpenBLAS reads them when NumPy loads it); PyTorch's
intra-op thread count is set here with ``torch.set_num_threads``.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

N_ROWS = 8192
N_FEATURES, N_CLASSES = 784, 10


def make_data(rows=N_ROWS, features=N_FEATURES, seed=0):
    """MNIST-shaped random data: pixels uniform in [0, 1) (float32), labels 0..9 (int64)."""
    rng = np.random.default_rng(seed)
    return rng.random((rows, features), dtype=np.float32), rng.integers(0, N_CLASSES, rows)


def memory_kib():
    """(current RSS, peak RSS) of this process in KiB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def blas_pools():
    """This process's BLAS and OpenMP thread pools, each as "openblas 0.3.31 (2 threads,
    Haswell kernels)", and ``OPENBLAS_CORETYPE`` when the environment sets it: OpenBLAS's
    kernels decide the speed of the matrix products (an AVX-512 CPU whose environment sets
    OPENBLAS_CORETYPE=Haswell runs AVX2 kernels; XLA and MKL choose their own)."""
    from threadpoolctl import threadpool_info

    pools = []
    for p in threadpool_info():
        kernels = f", {p['architecture']} kernels" if p.get("architecture") else ""
        pools.append(f"{p['internal_api']} {p.get('version') or ''} ({p['num_threads']} threads{kernels})"
                     .replace("  ", " "))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return pools + ([f"OPENBLAS_CORETYPE={coretype} set in the environment"] if coretype else [])


def wait_until_idle(limit=0.5):
    """Return once this process has stopped using the CPU (at most ``limit`` seconds).

    OpenBLAS's threads keep spinning for about 0.1 s after a call before they sleep;
    a worker that hands over to the next system while they spin would steal a core
    from it. PyTorch's threads go to sleep at once.
    """
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = time.process_time()  # CPU time of every thread of this process
        time.sleep(0.01)
        if time.process_time() - before < 0.001:
            return


class Worker:
    def __init__(self, system, threads):
        self.system, self.threads = system, threads
        if system == "torch":
            import torch

            torch.set_num_threads(threads)
        from bench.systems import make_trainer

        self.make_trainer = make_trainer
        self.data = {}

    def _data(self, features):
        if features not in self.data:
            self.data[features] = make_data(features=features)
        return self.data[features]

    def train(self, trainer, X, y, batch, steps):
        """``steps`` steps over the data, cycling back to row 0 when it runs out."""
        per_pass = len(X) // batch
        while steps > 0:
            n = min(steps, per_pass)
            trainer.train(X, y, batch, 0, n)
            steps -= n

    # -- commands ---------------------------------------------------------------------
    def info(self):
        import numpy
        import scipy

        versions = {"python": sys.version.split()[0], "numpy": numpy.__version__, "scipy": scipy.__version__}
        if self.system == "torch":
            import torch

            versions["torch"] = torch.__version__
            versions["torch_threads"] = torch.get_num_threads()
        elif self.system == "sklearn":
            import sklearn

            versions["sklearn"] = sklearn.__version__
        elif self.system == "backprop":
            import backprop

            versions["backprop"] = backprop.__version__
        return {"versions": versions, "threadpools": blas_pools()}

    def step_time(self, sizes, opt, batch, steps, warmup=3, seed=0, settle=True):
        """Seconds for ``steps`` training steps, after ``warmup`` untimed ones on a fresh model."""
        X, y = self._data(sizes[0])
        trainer = self.make_trainer(self.system, sizes, opt, seed)
        self.train(trainer, X, y, batch, warmup)
        start = time.perf_counter()
        self.train(trainer, X, y, batch, steps)
        seconds = time.perf_counter() - start
        if settle:
            wait_until_idle()
        return {"seconds": seconds}

    def gemm(self, n=2048, reps=3):
        """Best float32 GEMM rate (FLOP/s) of an n x n x n product in this library."""
        rng = np.random.default_rng(1)
        a, b = (rng.random((n, n), dtype=np.float32) for _ in range(2))
        if self.system == "torch":
            import torch

            a, b = torch.from_numpy(a), torch.from_numpy(b)
        a @ b
        best = math.inf
        for _ in range(reps):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        wait_until_idle()
        return {"flops": 2 * n**3 / best}

    def digits(self, sizes, target=0.97, batch=32, max_epochs=200, seed=0):
        """Seconds (and epochs) of Adam training on scikit-learn's digits until the test
        accuracy reaches ``target``, the accuracy checked after every epoch."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X = (X / 16.0).astype(np.float32)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        trainer = self.make_trainer(self.system, [X.shape[1], *sizes, N_CLASSES], "adam", seed)
        if self.system == "sklearn":
            trainer.model.shuffle = True
        for epoch in range(1, max_epochs + 1):
            if self.system == "sklearn":  # partial_fit shuffles and runs one epoch itself
                trainer.model.batch_size = batch
                trainer.model.partial_fit(X_train, y_train, classes=trainer.classes)
            else:
                order = rng.permutation(len(X_train))
                Xe, ye = np.ascontiguousarray(X_train[order]), y_train[order]
                trainer.train(Xe, ye, batch, 0, len(Xe) // batch)
                rest = len(Xe) % batch
                if rest:
                    trainer.train(Xe[-rest:], ye[-rest:], rest, 0, 1)
            accuracy = float(np.mean(trainer.predict(X_test) == y_test))
            if accuracy >= target:
                break
        seconds = time.perf_counter() - start
        wait_until_idle()
        return {"seconds": seconds, "epochs": epoch, "accuracy": accuracy}

    def serve(self):
        out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
        out.write(json.dumps({"ready": True}) + "\n")
        out.flush()
        for line in sys.stdin:
            command = json.loads(line)
            op = command.pop("op")
            if op == "quit":
                break
            result = getattr(self, op)(**command)
            out.write(json.dumps(result) + "\n")
            out.flush()


def peak_memory(system, threads, sizes, opt, batch, steps):
    """Peak RSS of a fresh process that imports ``system`` and trains ``steps`` steps."""
    worker = Worker(system, threads)
    after_import = memory_kib()[0]
    X, y = make_data(features=sizes[0])
    trainer = worker.make_trainer(system, sizes, opt)
    worker.train(trainer, X, y, batch, steps)
    return {"after_import_kib": after_import, "peak_kib": memory_kib()[1]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("system")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--memory", help="JSON: {sizes, opt, batch, steps}: report peak RSS and exit")
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(peak_memory(args.system, args.threads, **json.loads(args.memory))))
    else:
        Worker(args.system, args.threads).serve()


if __name__ == "__main__":
    main()
