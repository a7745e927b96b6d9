"""A long training end to end, from a cold cache: backprop's default ``fit`` beside JAX.

``python -m bench.cold_start`` (``--quick``: fewer rows) runs, for each row of
``bench.jax_rows``, one training of ``steps`` steps in a fresh process, timed from the
process's start to its end (Python, imports, data, every compile, the training):

- ``backprop cold``: ``backprop.fit`` as a user calls it, with empty disk caches (its
  ``BACKPROP_CACHE`` and Numba's ``NUMBA_CACHE_DIR`` new folders): the replay trains
  while a worker process compiles the step, and the fit moves to it when it is ready;
- ``backprop warm``: the same again, with the caches the cold run left;
- ``jax``: the same training with ``jax.jit`` of the whole step, its compile included
  (JAX keeps no compile cache on disk by default).

Data, model and optimizers as in ``bench.jax_rows``. Prints one table: seconds (median
of the repetitions) and the ratio of JAX's seconds to each backprop run (above 1: backprop
is faster).
"""

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.jax_rows import ROWS, make_trainer

HEADING = "A long training end to end, from a cold cache"


def steps_of(batch):
    """How many steps a row trains: a long training, about 5-30 s here."""
    return min(50_000, 1_500_000 // batch)


def train(system, sizes, opt, batch, steps):
    """The child process: ``steps`` steps of ``system`` ("backprop" or "jax") on one row."""
    from bench.worker import make_data

    X, y = make_data(rows=max(8192, batch), features=sizes[0])
    rows = len(X) // batch * batch
    if system == "jax":
        trainer = make_trainer("jax", sizes, opt)
        while steps > 0:
            n = min(steps, rows // batch)
            trainer.train(X, y, batch, 0, n)
            steps -= n
        return
    import backprop

    trainer = make_trainer("fit_numba", sizes, opt)  # a model, loss and optimizer as the rows have them
    epochs = -(-steps * batch // rows)
    history = backprop.fit(trainer.model, trainer.loss_fn, trainer.optimizer, (X[:rows], y[:rows]), epochs=epochs,
                           batch_size=batch, shuffle=False, metrics=(), progress=False)
    print(f"numba_reason: {history.numba_reason}", file=sys.stderr)


def timed(system, sizes, opt, batch, environment):
    """Seconds of one child process, start to end."""
    command = [sys.executable, "-m", "bench.cold_start", "--child", system, ",".join(map(str, sizes)), opt, str(batch)]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, **environment}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{system} on {sizes} failed:\n{done.stderr}")
    return seconds


def wait_for_workers(limit=120):
    """Until no worker process compiles for backprop any more (a cold fit may leave one)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", "fill_cache"], capture_output=True).returncode:
            return
        time.sleep(0.5)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of every other row")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--report", action="store_true", help=f"also write the table into the report ({HEADING!r})")
    parser.add_argument("--record", action="store_true", help="the report is bench/RESULTS.md (default: outside the tree)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        system, sizes, opt, batch = args.child
        batch = int(batch)
        return train(system, [int(n) for n in sizes.split(",")], opt, batch, steps_of(batch))

    rows, repeat = (ROWS[::2], 1) if args.quick else (ROWS, args.repeat)
    lines = ["| network | batch | optimizer | steps | backprop cold s | backprop warm s | jax s | jax / cold | jax / warm |",
             "|---|---|---|---|---|---|---|---|---|"]
    for sizes, batch, opt in rows:
        times = {"cold": [], "warm": [], "jax": []}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as cache:
                environment = {"BACKPROP_CACHE": cache, "NUMBA_CACHE_DIR": os.path.join(cache, "numba")}
                times["cold"].append(timed("backprop", sizes, opt, batch, environment))
                wait_for_workers()
                times["warm"].append(timed("backprop", sizes, opt, batch, environment))
            times["jax"].append(timed("jax", sizes, opt, batch, {}))
        cold, warm, jax = (statistics.median(times[k]) for k in ("cold", "warm", "jax"))
        line = (f"| {'-'.join(map(str, sizes))} | {batch} | {opt.upper()} | {steps_of(batch):,} | {cold:.1f} | "
                f"{warm:.1f} | {jax:.1f} | {jax / cold:.2f} | {jax / warm:.2f} |")
        print(line, file=sys.stderr, flush=True)
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    if args.report:
        from bench.results import report_path, write_section

        write_section(HEADING, f"`python -m bench.cold_start{' --quick' if args.quick else ''}` on "
                      f"{datetime.date.today()}: each cell the median of {repeat} fresh processes, timed start to "
                      f"end.\n\n{table}", report_path(args.record))


if __name__ == "__main__":
    main()
