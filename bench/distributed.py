"""Data-parallel throughput on MPI: ``python -m bench.distributed [--quick]``.

For the benchmark's 784-256-128-10 ReLU MLP (float32, softmax cross-entropy, SGD) at
global batches 512 and 4096, on this machine's cores:

- samples/s with 1 rank and with 2 ranks, each rank one core (BLAS on one thread: on
  a shared machine more threads per rank measure the neighbours, not us), each rank
  stepping on its share of every global batch;
- the bytes each step's Allreduce sums (the flat gradient buffer) and, for a ring,
  the bytes each rank sends: 2 (N - 1) / N x buffer;
- the time per step spent waiting for the slower rank (a Barrier before averaging:
  load imbalance, not communication), averaging the gradients (packing the flat
  buffer, the Allreduce, unpacking) and its share of the step, and the Allreduce
  alone on the same buffer, timed in a loop after training.

``--paper`` prints instead the cost model of bench/NOTES.md ("Across machines"): a
step on N machines with a ring Allreduce.

Each configuration is one ``mpiexec`` job; the jobs are interleaved (1 rank, 2 ranks,
then 2, 1, ...) and repeated, and the table gives medians over the repetitions and
the median of the paired ratios 2 ranks / 1 rank. Rank 0's clock is used: every step
ends in the same Allreduce, so the ranks keep step with each other.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.results import report_path, write_section  # noqa: E402

MLP = (784, 256, 128, 10)
BATCHES = [512, 4096]
RANKS = [1, 2]
BUCKETS_MB = [25, 0.25]

# The paper model's inputs (bench/NOTES.md, "Across machines").
GRADIENT_BYTES = 940_608  # float32: 235,146 weights + one has-gradient flag per parameter tensor
SECONDS_PER_SAMPLE = 1 / 127_549  # one 2-core machine, SGD at batch 512 (bench/RESULTS.md)
LINKS = {10: 20e-6, 100: 2e-6}  # Gbit/s -> latency per message: TCP over Ethernet, RDMA


def ring_allreduce_seconds(machines, gbits, latency, nbytes=GRADIENT_BYTES):
    """2 (N-1)/N x bytes / bandwidth + 2 (N-1) x latency: a reduce-scatter and an
    all-gather, each N-1 messages of 1/N of the buffer."""
    return 2 * (machines - 1) / machines * nbytes * 8 / (gbits * 1e9) + 2 * (machines - 1) * latency


def paper(batch=4096):
    """The cost model per step on 8, 64 and 512 machines (markdown)."""
    single = batch * SECONDS_PER_SAMPLE
    print(f"Per step, global batch {batch} (one machine: {single * 1e3:.1f} ms); "
          "B*: the global batch above which computing takes longer than the Allreduce\n")
    print("| machines | link | Allreduce (ms) | of which latency (ms) | compute at 4096 (ms) | step (ms) "
          "| speed-up over 1 machine | B* |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for machines in (8, 64, 512):
        for gbits, latency in LINKS.items():
            comm = ring_allreduce_seconds(machines, gbits, latency)
            compute = batch / machines * SECONDS_PER_SAMPLE
            crossover = machines * comm / SECONDS_PER_SAMPLE
            print(f"| {machines} | {gbits} Gbit/s, {latency * 1e6:.0f} us | {comm * 1e3:.2f} "
                  f"| {2 * (machines - 1) * latency * 1e3:.2f} | {compute * 1e3:.3f} | {(comm + compute) * 1e3:.2f} "
                  f"| {single / (comm + compute):.1f}x | {crossover:,.0f} |")


def worker(batch, seconds):
    """One rank of a timing job: print rank 0's measurements as one JSON line, for the
    default buckets (25 MB: this model's 0.94 MB in one, sent when backward ends) and for
    buckets of 0.25 MB (sent as backward reaches them, overlapping the rest of it)."""
    import numpy as np

    import backprop
    from backprop import distributed, nn, optim
    from backprop.tensor import Tensor

    rank, world = distributed.init()
    rng = np.random.default_rng(rank)
    local = batch // world
    x = Tensor(rng.random((local, MLP[0]), dtype=np.float32))
    y = Tensor(rng.integers(0, MLP[-1], local))
    backprop.manual_seed(0)
    layers = []
    for fan_in, fan_out in zip(MLP[:-1], MLP[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    network = nn.Sequential(*layers[:-1])
    loss_fn = nn.CrossEntropyLoss()
    measured = {}
    for bucket_mb in BUCKETS_MB:
        model = distributed.DistributedDataParallel(network, bucket_cap_mb=bucket_mb, check_every=0)
        opt = optim.SGD(model.parameters(), lr=0.01)

        def step(sync=True):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            started = time.perf_counter()
            distributed.barrier()  # the ranks start backward together: waiting is load imbalance
            synced = time.perf_counter()
            with contextlib.nullcontext() if sync else model.no_sync():
                loss.backward()
            done = time.perf_counter()
            opt.step()
            return synced - started, done - synced

        for _ in range(3):
            step()
        started = time.perf_counter()
        for _ in range(3):
            step()
        steps = np.array([max(5, round(seconds / ((time.perf_counter() - started) / 3)))])
        distributed.broadcast(steps)  # rank 0's count: every rank must take the same number of steps
        steps = int(steps[0])
        waiting = backward = 0.0
        started = time.perf_counter()
        for _ in range(steps):
            wait, back = step()
            waiting, backward = waiting + wait, backward + back
        total = time.perf_counter() - started
        local = statistics.median(step(sync=False)[1] for _ in range(max(steps // 2, 5)))
        flat = np.zeros(sum(p.data.size for p in network.parameters()), np.float32)
        allreduce = []
        for _ in range(max(steps, 20)):  # the Allreduce alone, on a buffer of all the gradients
            started = time.perf_counter()
            distributed.all_sum(flat)
            allreduce.append(time.perf_counter() - started)
        measured[bucket_mb] = {
            "step_s": total / steps, "samples_per_s": steps * batch / total, "waiting_s": waiting / steps,
            "backward_s": backward / steps, "local_backward_s": local,
            "allreduce_s": statistics.median(allreduce), "buffer_bytes": flat.nbytes,
        }
    if rank == 0:
        print(json.dumps({"ranks": world, "batch": batch, "buckets": measured}), flush=True)


def job(ranks, batch, seconds):
    """Run one timing job under mpiexec, one BLAS thread per rank."""
    from backprop.distributed import find_mpiexec

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    command = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench.distributed",
               "--worker", str(batch), "--seconds", str(seconds)]
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench --distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repetitions")
    parser.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md (default: outside the tree)")
    parser.add_argument("--paper", action="store_true", help="print the cost model for 8 to 512 machines")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.seconds)
    if args.paper:
        return paper()
    reps, seconds = (2, 0.5) if args.quick else (5, 2.0)
    results = {(r, b): [] for r in RANKS for b in BATCHES}
    for rep in range(reps):
        for batch in BATCHES:
            for ranks in RANKS if rep % 2 == 0 else RANKS[::-1]:
                results[ranks, batch].append(job(ranks, batch, seconds))
        print(f"repetition {rep + 1}/{reps} done", file=sys.stderr)
    lines = [
        f"`python -m bench --distributed`: the {'-'.join(map(str, MLP))} MLP, SGD, float32; "
        f"{os.cpu_count()} cores, one per rank; medians of {reps} interleaved repetitions; "
        "ratio: median of the paired ratios (bench/NOTES.md, \"Across machines\", explains the columns "
        "and works out 8 to 512 machines).",
        "",
        "| global batch | ranks | buckets | samples/s | step (ms) | waiting (ms) | backward, synced (ms) "
        "| backward, local (ms) | exposed communication (ms) | Allreduce alone (ms) | hidden | buffer "
        "| 2 ranks / 1 rank |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        for ranks in RANKS:
            for bucket_mb in BUCKETS_MB:
                runs = [run["buckets"][str(bucket_mb)] for run in results[ranks, batch]]
                med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                ratio = statistics.median(
                    a["buckets"][str(bucket_mb)]["samples_per_s"] / b["buckets"][str(bucket_mb)]["samples_per_s"]
                    for a, b in zip(results[ranks, batch], results[1, batch])
                )
                exposed = max(med["backward_s"] - med["local_backward_s"], 0.0)
                hidden = "" if ranks == 1 else f"{1 - min(exposed / med['allreduce_s'], 1.0):.0%}"
                lines.append(
                    f"| {batch} | {ranks} | {bucket_mb} MB | {med['samples_per_s']:,.0f} | {med['step_s'] * 1e3:.2f} "
                    f"| {med['waiting_s'] * 1e3:.2f} | {med['backward_s'] * 1e3:.2f} "
                    f"| {med['local_backward_s'] * 1e3:.2f} | {exposed * 1e3:.2f} | {med['allreduce_s'] * 1e3:.3f} "
                    f"| {hidden} | {med['buffer_bytes'] / 1e6:.3f} MB | {ratio:.2f} |"
                )
    table = "\n".join(lines)
    print(table)
    write_section("Across machines: data-parallel on MPI", table, report_path(args.record))

if __name__ == "__main__":
    main()
