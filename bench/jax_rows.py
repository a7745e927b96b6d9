"""backprop's ``fit`` beside JAX's jitted step on the small networks of issue 12.

``python -m bench.jax_rows`` (``--quick`` for a short run) measures samples/s of each
system on each row (network, batch, optimizer), interleaved in one run as
``python -m bench`` does (one worker process per system, the order rotating from one
repetition to the next, each ratio the median of the paired ratios), and prints one
table with the ratio to JAX per row. ReLU MLPs, softmax cross-entropy, float32, the
random MNIST-shaped data of ``bench.worker``; SGD lr 0.01, Adam lr 1e-3 with PyTorch's
defaults. Warm caches: each system has compiled what it compiles before it is timed.

- ``fit``: ``backprop.fit`` as a user calls it (no options; no shuffling, metrics or
  progress bar), in the steady state of a long training: each worker first trains its
  row's network with a fit of ``backprop.compile.NUMBA_FROM`` steps, stopped once the
  default path has moved to its compiled function (made in the background), and goes on
  training that same network;
- ``fit_numba``: ``fit(compiled="numba")``, the compiled function from the first step;
- ``step``: the hand-written PyTorch-style loop through ``backprop.compile_step`` (no
  options), warmed up as ``fit`` is;
- ``step_replay``: the same loop with ``numba=False``: the Python replay, which is what
  runs without Numba and before the compiled function is ready;
- ``step_numba``: the same loop with ``numba=True``;
- ``jax``: ``jax.jit`` of the whole step (loss, gradient, update), called in a Python
  loop over the same batches (NumPy slices, as a NumPy data loader hands them over).
"""

import argparse
from pathlib import Path
import datetime
import os
import statistics
import sys
import time

import numpy as np

from bench.systems import ADAM, SGD_LR
from bench.train_mlp import Workers, interleaved, paired_ratio

ROWS = [  # (sizes, batch, optimizer) as in issue 12's table
    ((16, 16, 16, 10), 1, "sgd"), ((16, 16, 16, 10), 1, "adam"),
    ((16, 16, 16, 10), 32, "sgd"), ((16, 16, 16, 10), 32, "adam"),
    ((64, 128, 10), 32, "sgd"), ((64, 128, 10), 32, "adam"),
    ((64, 128, 10), 128, "sgd"), ((64, 128, 10), 128, "adam"),
    ((784, 256, 128, 10), 8, "sgd"), ((784, 256, 128, 10), 8, "adam"),
    ((784, 256, 128, 10), 32, "adam"), ((784, 256, 128, 10), 512, "sgd"),
]
SYSTEMS = ("fit", "fit_numba", "step", "step_replay", "step_numba", "jax")
REPORTED = SYSTEMS  # what python -m bench runs (report())
_TRAINERS = {}  # (system, sizes, opt) -> the trainer of the long training fit and step run
HEADING = "Against JAX's jit: the rows of issue 12"


def make_trainer(system, sizes, opt, seed=0):
    if system == "jax":
        return JaxTrainer(sizes, opt, seed)
    if system not in ("fit", "step"):
        return BackpropTrainer(system, sizes, opt, seed)
    key = (system, tuple(sizes), opt)
    if key not in _TRAINERS:
        _TRAINERS[key] = BackpropTrainer(system, sizes, opt, seed)
    return _TRAINERS[key]


class BackpropTrainer:
    def __init__(self, system, sizes, opt, seed):
        import backprop
        from backprop import nn, optim

        backprop.manual_seed(seed)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        self.backprop, self.system = backprop, system
        self.model = nn.Sequential(*layers)
        self.loss_fn = nn.CrossEntropyLoss()
        params = list(self.model.parameters())
        self.optimizer = optim.SGD(params, lr=SGD_LR) if opt == "sgd" else optim.Adam(params, **ADAM)
        numba = {"step": "auto", "step_replay": False, "step_numba": True}.get(system)
        if numba is not None:
            self.step = backprop.compile_step(self.model, self.loss_fn, self.optimizer, numba=numba)
        self.warm = set() if system in ("fit", "step") else None  # the batch sizes trained long already

    def train(self, X, y, batch, start, steps):
        if self.warm is not None and batch not in self.warm:
            self._long_training(X, y, batch)
        stop = start + steps * batch
        if self.system.startswith("step"):
            step, Tensor = self.step, self.backprop.Tensor
            for i in range(start, stop, batch):
                step(Tensor(X[i : i + batch]), Tensor(y[i : i + batch]))
            return
        compiled = "numba" if self.system == "fit_numba" else True
        history = self.backprop.fit(self.model, self.loss_fn, self.optimizer, (X[start:stop], y[start:stop]),
                                    epochs=1, batch_size=batch, shuffle=False, metrics=(), progress=False,
                                    compiled=compiled)
        assert history.steps["eager"] == 0, history.eager_reason
        assert history.numba_reason is None, history.numba_reason

    def _long_training(self, X, y, batch, limit=300):
        """Train as a long training does, until the default path has moved to its compiled
        function (within ``limit`` seconds: a first compile takes about 10 s)."""
        from backprop.compile import NUMBA_FROM
        from backprop.training import Callback

        self.warm.add(batch)
        deadline = time.monotonic() + limit
        rows = len(X) // batch * batch
        if self.system == "step":
            self.step.expect(NUMBA_FROM)
            self.train(X, y, batch, 0, 1)  # this batch size's plan
            while self.step.numba_reason is not None and time.monotonic() < deadline:
                self.train(X, y, batch, 0, rows // batch)
            return

        class UntilCompiled(Callback):
            def on_batch_end(self, batch, logs):
                self.stop_training = self.history.numba_reason is None or time.monotonic() > deadline

        epochs = -(-NUMBA_FROM * batch // rows)  # a fit expected to take NUMBA_FROM steps
        while time.monotonic() < deadline:
            history = self.backprop.fit(self.model, self.loss_fn, self.optimizer, (X[:rows], y[:rows]), epochs=epochs,
                                        batch_size=batch, shuffle=False, metrics=(), progress=False,
                                        callbacks=[UntilCompiled()])
            if history.numba_reason is None:
                return


class JaxTrainer:
    def __init__(self, sizes, opt, seed):
        import jax
        import jax.numpy as jnp

        rng = np.random.default_rng(seed)
        params = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / np.sqrt(n_in)
            params.append((jnp.asarray(rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)),
                           jnp.asarray(rng.uniform(-bound, bound, n_out).astype(np.float32))))

        def loss(params, x, y):
            h = x
            for k, (w, b) in enumerate(params):
                h = h @ w.T + b
                if k < len(params) - 1:
                    h = jax.nn.relu(h)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], axis=1))

        tree = jax.tree_util.tree_map
        (beta1, beta2), eps, lr = ADAM["betas"], ADAM["eps"], ADAM["lr"]

        def step(params, state, x, y):
            value, grads = jax.value_and_grad(loss)(params, x, y)
            if opt == "sgd":
                return tree(lambda p, g: p - SGD_LR * g, params, grads), state
            m, v, t = state
            t = t + 1
            m = tree(lambda m, g: beta1 * m + (1 - beta1) * g, m, grads)
            v = tree(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, grads)
            correction1, correction2 = 1 - beta1**t, 1 - beta2**t
            params = tree(lambda p, m, v: p - lr / correction1 * m / (jnp.sqrt(v / correction2) + eps), params, m, v)
            return params, (m, v, t)

        self.params = params
        self.state = (tree(jnp.zeros_like, params), tree(jnp.zeros_like, params), jnp.zeros((), jnp.float32))
        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.jax = jax

    def train(self, X, y, batch, start, steps):
        params, state, step = self.params, self.state, self.step
        for i in range(start, start + steps * batch, batch):
            params, state = step(params, state, X[i : i + batch], y[i : i + batch])
        self.params, self.state = self.jax.block_until_ready((params, state))


def worker_main(system, threads):
    """The worker process: ``bench.worker``'s, with this benchmark's trainers."""
    from bench.worker import Worker

    if system == "jax" and threads == 1:  # XLA's CPU pool ignores OMP_NUM_THREADS
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    worker = Worker(system, threads)
    worker.make_trainer = make_trainer
    worker.serve()


def report(quick=False, path=None):
    """The rows with the systems ``python -m bench`` runs, into their section of the report
    at ``path`` (default: ``report_path(record=False)``)."""
    main(["--report", "--systems", *REPORTED] + (["--quick"] if quick else []) + (["--to", str(path)] if path else []))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.jax_rows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions")
    parser.add_argument("--threads", type=int, default=2, help="threads per system (default 2)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--rows", nargs="+", type=int, help="row numbers (from 0) to run; default all")
    parser.add_argument("--report", action="store_true", help=f"also write the table into the report ({HEADING!r})")
    parser.add_argument("--record", action="store_true", help="the report is bench/RESULTS.md (default: outside the tree)")
    parser.add_argument("--to", help=argparse.SUPPRESS)
    parser.add_argument("worker", nargs="?", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    reps, block = (3, 0.1) if args.quick else (7, 0.3)
    rows = [ROWS[i] for i in args.rows] if args.rows else ROWS
    jobs = [(list(sizes), opt, batch) for sizes, batch, opt in rows]
    systems = list(args.systems)
    workers = Workers(systems, args.threads, module="bench.jax_rows")
    try:
        rates = interleaved(workers, systems, [(tuple(s), o, b) for s, o, b in jobs], reps, block, log)
    finally:
        workers.close()
    others = [name for name in systems if name != "jax"]
    head = ["network", "batch", "optimizer"] + [f"{name} samples/s" for name in systems]
    head += [f"{name} / jax" for name in others] if "jax" in systems else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sizes, opt, batch in jobs:
        job = (tuple(sizes), opt, batch)
        cells = ["-".join(map(str, sizes)), str(batch), opt.upper()]
        cells += [f"{statistics.median(rates[name, job]):,.0f}" for name in systems]
        if "jax" in systems:
            cells += [f"{paired_ratio(rates[name, job], rates['jax', job]):.2f}" for name in others]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.report:
        import jax

        from bench.results import report_path, write_section
        from bench.worker import blas_pools

        write_section(HEADING, f"`python -m bench.jax_rows{' --quick' if args.quick else ''}` on "
                      f"{datetime.date.today()}: {reps} repetitions of {block} s blocks, {args.threads} threads per "
                      f"system, JAX {jax.__version__}; samples/s (median) and each system's paired ratio to JAX "
                      f"(median over repetitions). BLAS here: {'; '.join(blas_pools())}.\n\n{table}",
                      Path(args.to) if args.to else report_path(args.record))


if __name__ == "__main__":
    main()
