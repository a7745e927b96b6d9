"""Training throughput of an MLP in backprop, PyTorch, scikit-learn and plain NumPy.

``python -m bench`` (or ``python bench/train_mlp.py``) measures, in one run:

- samples/s of the 784-256-128-10 ReLU MLP with softmax cross-entropy, float32, on
  random MNIST-shaped data, with SGD and Adam, at batch sizes 1, 8, 32, 128 and 512;
  one worker process per system, interleaved (A B C D, then B C D A, ...), the
  median of several repetitions, and each ratio the median of the paired ratios;
- the FLOP ceiling: a step costs 6 x weights FLOPs per sample (2 forward, 4 backward),
  so at the float32 GEMM rate R measured in the same run no system can exceed
  R / (6 x weights) samples/s; each system's fraction of it;
- peak memory (max RSS) of each system, each in a fresh process;
- time to 97% test accuracy on scikit-learn's digits (Adam, batch 32);
- step time as the network grows wider (128 to 4096) and deeper (2 to 16 layers),
  backprop beside PyTorch;
- with JAX installed (the ``bench`` extra), the rows of issue 12 against JAX's jit
  (``bench.jax_rows``: ``fit``, ``fit(compiled="numba")``, the hand-written loop with and
  without Numba, JAX), in their own section;

and writes ``bench/RESULTS.md``. ``--quick`` runs a smaller version (about a minute, and
one more for the JAX rows).
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(ROOT))

from bench.results import kept_sections, report_path  # noqa: E402
from bench.systems import SYSTEMS  # noqa: E402

MLP = (784, 256, 128, 10)
BATCHES = [1, 8, 32, 128, 512]
OPTS = ["sgd", "adam"]

TINY = (16, 16, 16, 10)  # an MLP whose arithmetic is negligible: its step time is per-step overhead

FULL = dict(reps=7, block_seconds=0.4, gemm_n=2048, digits_reps=3, memory_steps=30,
            widths=[128, 256, 512, 1024, 2048, 4096], depths=[2, 4, 8, 16], scaling_batches=[8, 128])
QUICK = dict(reps=3, block_seconds=0.05, gemm_n=1024, digits_reps=1, memory_steps=5,
             widths=[256, 2048], depths=[2, 8], scaling_batches=[8, 128])

# The targets of issue 6: batch size -> minimum throughput ratio to PyTorch (SGD and Adam).
TARGETS = {1: 1.3, 8: 2.0, 32: 1.5, 128: 1.2, 512: 1.1}
CEILING_TARGET = 0.85
SKLEARN_TARGET = 1.5


def weights(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


# -- worker processes ---------------------------------------------------------------------
class Workers:
    """One worker process per system (``module``, by default ``bench.worker``), all started at once."""

    def __init__(self, systems, threads, module="bench.worker"):
        env = thread_env(threads)
        self.procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", module, name, "--threads", str(threads)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
            )
            for name in systems
        }
        for name in systems:
            self._read(name)

    def _read(self, name):
        line = self.procs[name].stdout.readline()
        if not line:
            raise RuntimeError(f"the {name} worker died (see its stderr above)")
        return json.loads(line)

    def call(self, name, op, **kwargs):
        proc = self.procs[name]
        proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        proc.stdin.flush()
        return self._read(name)

    def close(self):
        for proc in self.procs.values():
            proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            proc.stdin.close()
        for proc in self.procs.values():
            proc.wait()


def thread_env(threads):
    """The environment for a worker: BLAS and OpenMP limited to ``threads`` threads."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def rotations(items, rep):
    """``items`` rotated by ``rep``: the order of the systems changes from one repetition to the next."""
    k = rep % len(items)
    return items[k:] + items[:k]


def interleaved(workers, systems, jobs, reps, block_seconds, log):
    """For each job (sizes, opt, batch): samples/s of every system in every repetition.

    The number of steps per block is calibrated once per (system, job) so that a block
    lasts about ``block_seconds``; then each repetition runs every job on every system
    back to back, in a rotating order.
    """
    steps = {}
    for job in jobs:
        sizes, opt, batch = job
        for name in systems:
            probe = max(2, 64 // batch)
            seconds = workers.call(name, "step_time", sizes=sizes, opt=opt, batch=batch, steps=probe,
                                   settle=False)["seconds"]
            steps[name, job] = max(3, round(block_seconds / (seconds / probe)))
    rates = {(name, job): [] for name in systems for job in jobs}
    for rep in range(reps):
        for job in jobs:
            sizes, opt, batch = job
            for name in rotations(list(systems), rep):
                n = steps[name, job]
                seconds = workers.call(name, "step_time", sizes=sizes, opt=opt, batch=batch, steps=n)["seconds"]
                rates[name, job].append(n * batch / seconds)
        log(f"  repetition {rep + 1}/{reps} done")
    return rates


def paired_ratio(a, b):
    """Median over repetitions of a[i] / b[i]: noise common to a pair cancels."""
    return statistics.median(x / y for x, y in zip(a, b))


# -- machine and load -----------------------------------------------------------------------
def cpu_busy_seconds():
    """CPU seconds the whole machine has spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    """CPU seconds of this process and of its children that have exited."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


# -- the measurements ------------------------------------------------------------------------
def run(args, log):
    cfg = QUICK if args.quick else FULL
    systems = list(args.systems)
    results = {"config": cfg, "systems": systems, "threads": args.threads, "quick": args.quick,
               "machine": machine(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
               "load_before": os.getloadavg()}
    wall0, busy0, own0 = time.perf_counter(), cpu_busy_seconds(), own_cpu_seconds()

    log(f"starting workers: {', '.join(systems)} ({args.threads} threads each)")
    workers = Workers(systems, args.threads)
    try:
        results["info"] = {name: workers.call(name, "info") for name in systems}
        gemm = {name: [] for name in systems if name in ("numpy", "torch")}

        def measure_gemm():
            for name in gemm:
                gemm[name].append(workers.call(name, "gemm", n=cfg["gemm_n"])["flops"])

        measure_gemm()
        log("throughput (interleaved)")
        jobs = [(MLP, opt, batch) for opt in OPTS for batch in args.batches]
        rates = interleaved(workers, systems, jobs, cfg["reps"], cfg["block_seconds"], log)
        measure_gemm()
        results["gemm"] = {name: max(values) for name, values in gemm.items()}
        results["throughput"] = [
            {"opt": opt, "batch": batch, "rates": {name: rates[name, (sizes, opt, batch)] for name in systems}}
            for sizes, opt, batch in jobs
        ]

        log("per-step overhead (a tiny MLP)")
        jobs = [(TINY, opt, 1) for opt in OPTS]
        rates = interleaved(workers, systems, jobs, cfg["reps"], cfg["block_seconds"], log)
        results["overhead"] = {opt: {name: rates[name, (TINY, opt, 1)] for name in systems} for _, opt, _ in jobs}

        scaling_systems = [name for name in ("backprop", "torch") if name in systems]
        if not args.no_scaling and scaling_systems:
            log("scaling (width, depth)")
            shapes = [("width", w, (784, w, w, 10)) for w in cfg["widths"]]
            shapes += [("depth", d, (784,) + (256,) * (d - 1) + (10,)) for d in cfg["depths"]]
            jobs = [(sizes, "sgd", batch) for _, _, sizes in shapes for batch in cfg["scaling_batches"]]
            rates = interleaved(workers, scaling_systems, jobs, max(3, cfg["reps"] // 2), cfg["block_seconds"], log)
            results["scaling"] = [
                {"kind": kind, "value": value, "sizes": sizes, "batch": batch,
                 "rates": {name: rates[name, (sizes, "sgd", batch)] for name in scaling_systems}}
                for kind, value, sizes in shapes for batch in cfg["scaling_batches"]
            ]

        log("time to 97% on digits")
        digits = {name: [] for name in systems}
        for rep in range(cfg["digits_reps"]):
            for name in rotations(systems, rep):
                digits[name].append(workers.call(name, "digits", sizes=list(MLP[1:-1]), seed=rep))
        results["digits"] = digits
    finally:
        workers.close()

    log("peak memory (a fresh process per system)")
    job = json.dumps({"sizes": MLP, "opt": "adam", "batch": 512, "steps": cfg["memory_steps"]})
    procs = {name: subprocess.Popen([sys.executable, "-m", "bench.worker", name, "--threads", str(args.threads),
                                     "--memory", job], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                    env=thread_env(args.threads))
             for name in systems}
    results["memory"] = {name: json.loads(proc.communicate()[0]) for name, proc in procs.items()}

    wall = time.perf_counter() - wall0
    others = max(0.0, (cpu_busy_seconds() - busy0) - (own_cpu_seconds() - own0))
    results["load"] = {"wall_seconds": wall, "other_cores": others / wall, "load_after": os.getloadavg()}
    return results


# -- the report ------------------------------------------------------------------------------
def fmt_rate(x):
    return f"{x:,.0f}"


def report(results):
    """RESULTS.md as a string."""
    systems = results["systems"]
    ceiling_rate = max(results["gemm"].values()) if results["gemm"] else None
    ceiling = ceiling_rate / (6 * weights(MLP)) if ceiling_rate else None
    info = results["info"]
    load = results["load"]
    lines = [
        "# Benchmarks: backprop beside PyTorch and scikit-learn",
        "",
        f"Produced by `python -m bench{' --quick' if results['quick'] else ''}` on {results['date']}"
        f" ({load['wall_seconds']:.0f} s). Rerun it to refresh this file.",
        "",
        f"- Machine: {results['machine']}.",
        f"- Load: load average {results['load_before'][0]:.2f} before, {load['load_after'][0]:.2f} after; "
        f"other processes used {load['other_cores']:.2f} of the {os.cpu_count()} cores on average during the run"
        " (CPU time of the whole machine minus this benchmark's own).",
        f"- Threads: {results['threads']} per system (OMP/OPENBLAS/MKL_NUM_THREADS and torch.set_num_threads).",
    ]
    for name in systems:
        versions = ", ".join(f"{k} {v}" for k, v in info[name]["versions"].items())
        lines.append(f"- {name}: {versions}; BLAS/OpenMP pools: {'; '.join(info[name]['threadpools']) or 'none'}.")
    if ceiling:
        gemm = ", ".join(f"{name} {rate / 1e9:.0f} GFLOP/s" for name, rate in results["gemm"].items())
        lines += [
            f"- float32 GEMM ({results['config']['gemm_n']}^3, best of the run): {gemm}. "
            f"FLOP ceiling of the {'-'.join(map(str, MLP))} MLP ({weights(MLP):,} weights, 6 FLOPs per weight "
            f"per sample): **{ceiling:,.0f} samples/s**.",
        ]
    lines += ["", "## Training throughput (samples/s, median; ratios are medians of paired runs)", ""]
    for opt in OPTS:
        rows = [r for r in results["throughput"] if r["opt"] == opt]
        if not rows:
            continue
        others = [name for name in systems if name != "torch"]
        head = ["batch"] + [f"{name}" for name in systems]
        head += [f"{name} / torch" for name in others if "torch" in systems]
        if "backprop" in systems and "sklearn" in systems:
            head.append("backprop / sklearn")
        if ceiling:
            head += [f"{name} % ceiling" for name in systems if name != "sklearn"]
        lines += [f"### {opt.upper()}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            rates = r["rates"]
            cells = [str(r["batch"])] + [fmt_rate(statistics.median(rates[name])) for name in systems]
            if "torch" in systems:
                cells += [f"{paired_ratio(rates[name], rates['torch']):.2f}x" for name in others]
            if "backprop" in systems and "sklearn" in systems:
                cells.append(f"{paired_ratio(rates['backprop'], rates['sklearn']):.2f}x")
            if ceiling:
                cells += [f"{statistics.median(rates[name]) / ceiling:.0%}" for name in systems if name != "sklearn"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    if "backprop" in systems and "torch" in systems:
        lines += ["## Targets (issue 6)", "", "| target | measured | met |", "|---|---|---|"]
        for r in results["throughput"]:
            goal = TARGETS.get(r["batch"])
            if goal is None:
                continue
            ratio = paired_ratio(r["rates"]["backprop"], r["rates"]["torch"])
            lines.append(f"| {r['opt'].upper()} batch {r['batch']}: >= {goal}x PyTorch | {ratio:.2f}x | "
                         f"{'yes' if ratio >= goal else '**no**'} |")
            if r["batch"] == 512 and ceiling:
                fraction = statistics.median(r["rates"]["backprop"]) / ceiling
                lines.append(f"| {r['opt'].upper()} batch 512: >= {CEILING_TARGET:.0%} of the FLOP ceiling | "
                             f"{fraction:.0%} | {'yes' if fraction >= CEILING_TARGET else '**no**'} |")
        if "sklearn" in systems:
            worst = min(paired_ratio(r["rates"]["backprop"], r["rates"]["sklearn"]) for r in results["throughput"])
            lines.append(f"| >= {SKLEARN_TARGET}x scikit-learn at every batch size | lowest {worst:.2f}x | "
                         f"{'yes' if worst >= SKLEARN_TARGET else '**no**'} |")
        if "numpy" in systems and results.get("overhead"):
            us = {name: 1e6 / statistics.median(rate) for name, rate in results["overhead"]["sgd"].items()}
            ours, gap = us["backprop"] - us["numpy"], us["torch"] - us["numpy"]
            lines.append(f"| engine bookkeeping below the gap between the plain NumPy step and PyTorch | "
                         f"{ours:.0f} vs {gap:.0f} us per step | {'yes' if ours < gap else '**no**'} |")
        mem = results["memory"]
        ours = mem["backprop"]["peak_kib"] - mem["backprop"]["after_import_kib"]
        theirs = mem["torch"]["peak_kib"] - mem["torch"]["after_import_kib"]
        lines.append(f"| peak memory no higher than PyTorch's | {mem['backprop']['peak_kib'] / 1024:.0f} vs "
                     f"{mem['torch']['peak_kib'] / 1024:.0f} MiB in all; {ours / 1024:.0f} vs {theirs / 1024:.0f} "
                     f"MiB for training | {'yes' if mem['backprop']['peak_kib'] <= mem['torch']['peak_kib'] and ours <= theirs else '**no**'} |")
        lines.append("")

    if results.get("overhead"):
        lines += [f"## Per-step overhead: the {'-'.join(map(str, TINY))} MLP at batch 1 (microseconds per step)", "",
                  "Its arithmetic is negligible, so this is what each system spends per step on everything else"
                  " (Python, graph, dispatch, allocation).", "",
                  "| optimizer | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
        for opt, rates in results["overhead"].items():
            lines.append(f"| {opt.upper()} | " + " | ".join(f"{1e6 / statistics.median(rates[name]):.0f}"
                                                          for name in systems) + " |")
        if {"backprop", "torch", "numpy"} <= set(systems):
            rates = results["overhead"]["sgd"]
            us = {name: 1e6 / statistics.median(rates[name]) for name in ("backprop", "torch", "numpy")}
            lines += ["", f"With SGD, backprop's bookkeeping beyond the plain NumPy step costs "
                          f"{us['backprop'] - us['numpy']:.0f} us per step; PyTorch's costs "
                          f"{us['torch'] - us['numpy']:.0f} us."]
        lines.append("")

    lines += ["## Peak memory (max RSS, Adam, batch 512, each system in a fresh process)", "",
              "| system | peak RSS | RSS after imports | growth while training |", "|---|---|---|---|"]
    for name in systems:
        m = results["memory"][name]
        lines.append(f"| {name} | {m['peak_kib'] / 1024:.0f} MiB | {m['after_import_kib'] / 1024:.0f} MiB | "
                     f"{(m['peak_kib'] - m['after_import_kib']) / 1024:.0f} MiB |")
    lines += ["", "The growth includes the 8192 x 784 float32 training array (25 MiB), the same for all.", ""]

    lines += ["## Time to 97% test accuracy on scikit-learn's digits", "",
              "64-256-128-10 ReLU MLP, Adam (lr 1e-3), batch 32, 1347 training and 450 test images (stratified),"
              " pixels / 16; test accuracy checked after every epoch; wall time from building the model"
              " (median of the repetitions).", "",
              "| system | seconds | epochs | seconds per epoch | accuracy reached |", "|---|---|---|---|---|"]
    for name in systems:
        runs = results["digits"][name]
        seconds = statistics.median(r["seconds"] for r in runs)
        epochs = statistics.median(r["epochs"] for r in runs)
        per_epoch = statistics.median(r["seconds"] / r["epochs"] for r in runs)
        accuracy = statistics.median(r["accuracy"] for r in runs)
        lines.append(f"| {name} | {seconds:.2f} | {epochs:g} | {per_epoch:.3f} | {accuracy:.1%} |")
    lines += ["", "The epoch counts differ: backprop, PyTorch and the NumPy step start from PyTorch's"
              " initialization, scikit-learn from its own (Glorot uniform), and it reaches 97% in fewer epochs"
              " here; the time per epoch compares the training loops.", ""]

    if results.get("scaling"):
        names = list(results["scaling"][0]["rates"])
        for kind, title in [("width", "Width: 784-w-w-10"), ("depth", "Depth: 784, then 256 x (layers - 1), then 10")]:
            rows = [r for r in results["scaling"] if r["kind"] == kind]
            batches = sorted({r["batch"] for r in rows})
            head = [kind]
            for batch in batches:
                head += [f"{name} ms/step (batch {batch})" for name in names] + [f"backprop / torch (batch {batch})"]
            lines += [f"## Scaling. {title}, SGD, step time", "",
                      "Ratio > 1: backprop is faster (torch's step time / backprop's).", "",
                      "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for value in sorted({r["value"] for r in rows}):
                cells = [str(value)]
                for batch in batches:
                    r = next(r for r in rows if r["value"] == value and r["batch"] == batch)
                    cells += [f"{1000 * batch / statistics.median(r['rates'][name]):.3f}" for name in names]
                    cells.append(f"{paired_ratio(r['rates']['backprop'], r['rates']['torch']):.2f}x")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")

    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute, one more for the JAX rows)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per system (default: all cores)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    parser.add_argument("--no-scaling", action="store_true", help="skip the width/depth table")
    parser.add_argument("--no-jax", action="store_true", help="skip the rows against JAX's jit (bench.jax_rows), "
                        "which run after the rest when JAX is installed; --jax runs only them")
    parser.add_argument("--record", action="store_true",
                        help="write bench/RESULTS.md and bench/results.json (default: a folder outside the tree)")
    parser.add_argument("--out", help="the Markdown report (default: see --record)")
    parser.add_argument("--json", help="where to write the raw measurements (default: see --record)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite the report from the raw measurements in --json")
    args = parser.parse_args(argv)
    args.out = args.out or str(report_path(args.record))
    args.json = args.json or str(report_path(args.record, "results.json"))

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.render:
        results = json.loads(Path(args.json).read_text())
    else:
        results = run(args, log)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    text = report(results)
    Path(args.out).write_text(text + "\n\n" + kept_sections(text, Path(args.out)))
    print(text)
    log(f"wrote {args.out} and {args.json}")
    if not args.render and not args.no_jax:
        if importlib.util.find_spec("jax") is None:
            log("the rows against JAX's jit were not measured: JAX is not installed (pip install -e '.[bench]')")
        else:
            from bench import jax_rows  # the rows against JAX's jit, their own section of the report

            jax_rows.report(quick=args.quick, path=Path(args.out))


if __name__ == "__main__":
    main()
