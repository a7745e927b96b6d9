"""Data-parallel training on MPI: jobs of 2 and 3 ranks on this machine (``mpiexec``,
started as subprocesses with timeouts) against one process stepping on the same
global batches; faults; checkpoints across the two; the sampler's shards."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")

from distributed_job import STEPS, accumulated_steps, full_batch_steps, make_optimizer, problem  # noqa: E402

from backprop import distributed, nn  # noqa: E402
from backprop.data import DataLoader, TensorDataset  # noqa: E402
from backprop.io import load_checkpoint  # noqa: E402
from backprop.training import ModelCheckpoint, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JOB = Path(__file__).with_name("distributed_job.py")
RTOL = 1e-10


def run_job(n, tmp_path, timeout=120, **config):
    """``mpiexec -n n python distributed_job.py``; the CompletedProcess and each rank's saved arrays."""
    out = tmp_path / f"job{n}"
    out.mkdir(exist_ok=True)
    path = out / "config.json"
    path.write_text(json.dumps({"out": str(out), **config}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [distributed.find_mpiexec(), "-n", str(n), sys.executable, str(JOB), str(path)]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hang: end mpiexec and every rank it started
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    done = subprocess.CompletedProcess(command, job.returncode, stdout, stderr)
    ranks = [dict(np.load(f)) for f in sorted(out.glob("rank*.npz"))]
    return done, ranks


def assert_close(actual, expected, what):
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=RTOL, atol=0, err_msg=f"{what}: {name}")


def reference_fit(optimizer, epochs=2, batch=12, resume=None, checkpoint=None):
    """The same training in this one process, without MPI: (weights, history)."""
    model, train, val = problem()
    opt = make_optimizer(optimizer, model)
    initial_epoch = load_checkpoint(resume, model, opt)["epoch"] if resume else 0
    callbacks = [ModelCheckpoint(checkpoint)] if checkpoint else []
    history = fit(model, nn.CrossEntropyLoss(), opt, train, epochs, val=val, batch_size=batch,
                  callbacks=callbacks, progress=False, initial_epoch=initial_epoch)
    return model.state_dict(), history.history


@pytest.mark.parametrize("ranks", [2, 3])
def test_sgd_and_adam_on_ranks_match_one_process_on_the_global_batch(tmp_path, ranks):
    done, saved = run_job(ranks, tmp_path, mode="equivalence", epochs=2, batch=12)
    assert done.returncode == 0, done.stderr
    assert len(saved) == ranks and all(int(s["world"]) == ranks for s in saved)
    for name in ("sgd", "adam"):
        # STEPS full-batch steps of a PyTorch DDP loop (gradients averaged in backward)
        model, (X, y), _ = problem()
        full_batch_steps(model, make_optimizer(name, model), X, y)
        expected = model.state_dict()
        for s in saved:
            for variant in ("pytorch", "buckets", "by_hand"):
                assert_close({k: s[f"manual.{variant}.{name}.{k}"] for k in expected}, expected,
                             f"{name}, {STEPS} steps, DDP, {variant}")
        # gradient accumulation: the first of two batches under no_sync()
        shards = [distributed.DistributedSampler(X, ranks, r, shuffle=False).indices() for r in range(ranks)]
        firsts = np.concatenate([rows[: len(rows) // 2] for rows in shards])
        seconds = np.concatenate([rows[len(rows) // 2 :] for rows in shards])
        model, _, _ = problem()
        accumulated_steps(model, make_optimizer(name, model), [(X[firsts], y[firsts]), (X[seconds], y[seconds])])
        expected = model.state_dict()
        for s in saved:
            assert_close({k: s[f"accumulated.{name}.{k}"] for k in expected}, expected, f"{name}, no_sync")
        # fit(distributed=True): 2 epochs of 3 shuffled global batches of 12, with validation
        weights, history = reference_fit(name)
        for s in saved:
            assert_close({k: s[f"fit.{name}.{k}"] for k in weights}, weights, f"{name}, fit")
            assert_close({k: s[f"history.{name}.{k}"] for k in history}, history, f"{name}, fit history")
        for s in saved[1:]:  # every rank holds exactly rank 0's weights
            for key in s:
                np.testing.assert_array_equal(s[key], saved[0][key], err_msg=key)


@pytest.mark.parametrize("ranks, batch", [(3, 32), (2, 11), (3, 10)])
def test_unequal_shares_of_any_batch_are_weighted_to_equal_one_process(tmp_path, ranks, batch):
    done, saved = run_job(ranks, tmp_path, mode="fit", optimizer="adam", epochs=2, batch=batch)
    assert done.returncode == 0, done.stderr
    weights, _ = reference_fit("adam", batch=batch)
    for s in saved:
        assert_close({k: s[k] for k in weights}, weights, f"adam, batch {batch} on {ranks} ranks")


@pytest.mark.parametrize("mode, message", [
    ("fail_in_fit", "RuntimeError: rank 1 lost its disk"),
    ("fail_before_fit", "ValueError: rank 2 could not read its data"),
    ("fail_caught", "error: rank 1 lost its disk"),
])
def test_a_failing_rank_ends_the_whole_job_with_its_error(tmp_path, mode, message):
    # the other ranks are waiting in a collective: without the abort this would hang until the timeout
    done, saved = run_job(3, tmp_path, timeout=60, mode=mode)
    assert done.returncode != 0
    assert message in done.stderr
    assert saved == []


def test_weights_that_drift_apart_are_one_error_naming_the_call(tmp_path):
    done, saved = run_job(2, tmp_path, timeout=60, mode="drift")
    assert done.returncode != 0 and saved == []
    assert "the ranks' weights differ at call 3" in done.stderr and "Abort" not in done.stderr


def test_a_rank_without_training_examples_is_an_error_before_training(tmp_path):
    done, saved = run_job(3, tmp_path, timeout=60, mode="tiny_data")
    assert done.returncode != 0
    assert "the training data has 2 examples, fewer than the 3 ranks" in done.stderr
    assert saved == []


def test_a_distributed_checkpoint_resumes_in_one_process_and_the_other_way_round(tmp_path):
    straight, _ = reference_fit("adam", epochs=4)
    # 2 epochs on 2 ranks, then 2 more in this process
    from_job = tmp_path / "from_job.npz"
    done, _ = run_job(2, tmp_path, mode="fit", optimizer="adam", epochs=2, batch=12, checkpoint=str(from_job))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from_job.npz", "job2"]  # rank 0 alone wrote it
    resumed, _ = reference_fit("adam", epochs=4, resume=from_job)
    assert_close(resumed, straight, "2 epochs on 2 ranks, 2 in one process")
    # 2 epochs in this process, then 2 more on 3 ranks
    from_one = tmp_path / "from_one.npz"
    reference_fit("adam", epochs=2, checkpoint=from_one)
    done, saved = run_job(3, tmp_path, mode="fit", optimizer="adam", epochs=4, batch=12, resume=str(from_one))
    assert done.returncode == 0, done.stderr
    for s in saved:
        assert_close({k: s[k] for k in straight}, straight, "2 epochs in one process, 2 on 3 ranks")


def test_launch_runs_the_command_on_n_ranks_and_returns_its_exit_status(tmp_path, monkeypatch, capfd):
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\nfrom backprop import distributed\nrank, world = distributed.init()\n"
        "print(f'rank {rank} of {world}')\nsys.exit(3 if sys.argv[1] == 'fail' and rank == 1 else 0)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    assert distributed.launch(2, [str(script), "ok"]) == 0
    assert sorted(re.findall(r"rank \d of \d", capfd.readouterr().out)) == ["rank 0 of 2", "rank 1 of 2"]
    assert distributed.launch(2, [str(script), "fail"]) != 0


# -- the sampler, in one process ---------------------------------------------------------------
@pytest.mark.parametrize("n, ranks, drop_last", [(10, 3, False), (10, 3, True), (12, 4, False), (2, 3, False)])
def test_sampler_shards_one_order_padded_or_dropped_as_pytorch(n, ranks, drop_last):
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler

    for rank in range(ranks):
        ours = distributed.DistributedSampler(range(n), ranks, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(range(n), ranks, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_sampler_shards_partition_each_epochs_permutation_and_change_with_set_epoch():
    shards = [distributed.DistributedSampler(range(12), 3, rank, seed=7) for rank in range(3)]
    epoch0 = [s.indices() for s in shards]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(12))
    for s in shards:
        s.set_epoch(1)
    epoch1 = [s.indices() for s in shards]
    assert sorted(np.concatenate(epoch1).tolist()) == list(range(12))
    assert any(not np.array_equal(a, b) for a, b in zip(epoch0, epoch1))
    # the ranks' i-th batches of 2 together are the i-th global batch of 6 of the order
    order = np.random.default_rng(8).permutation(12)
    for i in range(2):
        together = np.concatenate([e[2 * i : 2 * i + 2] for e in epoch1])
        assert sorted(together.tolist()) == sorted(order[6 * i : 6 * i + 6].tolist())


def test_sampler_with_an_empty_shard_is_an_error():
    with pytest.raises(ValueError, match="rank 2 of 3 would get no examples: the dataset has 2"):
        distributed.DistributedSampler(range(2), 3, 2, drop_last=True)


def test_fit_distributed_in_one_process_is_plain_fit():
    # a process started without mpiexec is a job of one rank: same batches, same weights
    expected, history = reference_fit("sgd")
    model, train, val = problem()
    got = fit(model, nn.CrossEntropyLoss(), make_optimizer("sgd", model), train, 2, val=val, batch_size=12,
              progress=False, distributed=True)
    for name in expected:
        np.testing.assert_array_equal(model.state_dict()[name], expected[name])
    assert got.history == history


def test_fit_distributed_refuses_a_sampler_it_cannot_shard():
    model, train, _ = problem()
    with pytest.raises(ValueError, match="shards the examples itself; it cannot use the sampler MisclassifiedSampler"):
        fit(model, nn.CrossEntropyLoss(), make_optimizer("sgd", model), train, 1, sampler="misclassified",
            progress=False, distributed=True)


def test_fit_distributed_shares_any_batch_and_refuses_a_batch_a_rank_would_get_nothing_of():
    plan = distributed.DataParallelFit.__new__(distributed.DataParallelFit)  # as rank 0 of 3, without a job
    plan.rank, plan.world_size = 0, 3
    _, train, _ = problem()  # 36 examples
    shard = plan._shard(DataLoader(TensorDataset(*train), 32, shuffle=True))
    assert shard.batch_size == 11 and len(shard.sampler) == 11 + 2  # of 32 = 11 + 11 + 10, of the last 4 = 2 + 1 + 1
    for batch in (2, 35):  # a batch of 2, or a last batch of 1, leaves a rank without examples
        with pytest.raises(ValueError, match="cannot be shared by the 3 ranks"):
            plan._shard(DataLoader(TensorDataset(*train), batch))


@pytest.mark.parametrize("n, batch, ranks, drop_last", [(36, 32, 3, False), (20, 7, 3, False), (20, 7, 2, True), (9, 9, 4, False)])
def test_batch_shares_cut_each_global_batch_of_one_order_into_nearly_equal_pieces(n, batch, ranks, drop_last):
    shares = [distributed.BatchShares(range(n), batch, ranks, k, shuffle=False, drop_last=drop_last) for k in range(ranks)]
    loaders = [list(DataLoader(TensorDataset(np.arange(n)), s.share(batch), sampler=s)) for s in shares]
    assert len({len(batches) for batches in loaders}) == 1  # every rank steps as often
    for step, pieces in enumerate(zip(*loaders)):
        joined = np.concatenate([piece[0].numpy() for piece in pieces])
        assert joined.tolist() == list(range(step * batch, min((step + 1) * batch, n)))
        assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
    assert [len(s) for s in shares] == [len(np.concatenate([b[0].numpy() for b in batches])) for batches in loaders]


def test_the_command_on_two_and_three_workers_trains_digits_as_one_process(tmp_path):
    """``backprop train --workers 2`` (mpiexec -n 2 ... --distributed), and 3: the same batches as one
    process, so the same test accuracy up to float32 sums in another order; rank 0 alone
    prints and writes the model."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def train(*extra):
        args = [sys.executable, "-m", "backprop", "train", "--epochs", "8", "--json", *extra]
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads(done.stdout.strip().splitlines()[-1])

    _, one = train("--out", "one.npz")
    printed, two = train("--workers", "2", "--out", "two.npz")
    _, three = train("--workers", "3", "--out", "three.npz")  # the default batch of 32, shared 11 + 11 + 10
    assert printed.count("saved   two.npz") == 1
    for many in (two, three):
        assert abs(many["test_accuracy"] - one["test_accuracy"]) <= 1 / 360 and many["test_accuracy"] > 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "three.npz", "two.npz"]


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_pytorch_ddp_script_with_only_its_imports_changed_keeps_the_ranks_equal_to_one_process(tmp_path, ranks):
    from test_pytorch_programs import on_backprop

    import backprop
    from backprop import optim

    script = tmp_path / "ddp_script.py"
    script.write_text(on_backprop(Path(__file__).with_name("ddp_script.py").read_text()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([distributed.find_mpiexec(), "-n", str(ranks), sys.executable, str(script), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    saved = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(ranks)]
    # one process: rank 0's weights, each step on the union of the ranks' batches
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(36, 5)), rng.integers(0, 3, 36)
    backprop.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = 6 * ranks
    for epoch in range(3):
        order = np.random.default_rng(7 + epoch).permutation(36)
        for start in range(0, 36, step):
            rows = order[start : start + step]
            optimizer.zero_grad()
            nn.CrossEntropyLoss()(model(backprop.Tensor(X[rows])), backprop.Tensor(y[rows])).backward()
            optimizer.step()
    expected = {k: v.numpy() for k, v in model.state_dict().items()}
    for s in saved:
        assert_close(s, expected, f"the DDP script on {ranks} ranks")
        for key in s:
            np.testing.assert_array_equal(s[key], saved[0][key], err_msg=key)


def test_the_command_on_three_workers_with_a_batch_of_two_says_so_once_without_an_abort(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "backprop", "train", "--epochs", "1", "--workers", "3", "--batch-size", "2"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: a batch of 2 examples cannot be shared by the 3 ranks"), done.stderr
    assert "--batch-size" in lines[0] and "Abort" not in done.stderr
