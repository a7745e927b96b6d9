import json
import math
import os
import re

import numpy as np
import pytest

import backprop.files
from backprop import plot_history
from backprop.files import atomic_write, check_paths, json_text, physical_memory, regular_file


# -- atomic_write ------------------------------------------------------------------------------------
def test_atomic_write_writes_text_bytes_npz_and_png(tmp_path):
    with atomic_write(tmp_path / "a.csv", "w", newline="") as f:
        f.write("x,ü\r\n1,2\n")
    assert (tmp_path / "a.csv").read_bytes() == "x,ü\r\n1,2\n".encode()
    with atomic_write(tmp_path / "b.bin") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with atomic_write(tmp_path / "c.npz") as f:
        np.savez(f, w=np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["w"], np.arange(3))
    assert plot_history({"loss": [3, 2, 1]}, tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.bin", "c.npz", "d.png"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt(), ValueError("bad value")])
def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(type(error)):
        with atomic_write(path, "w") as f:
            f.write("new, half written")
            raise error
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]


def test_a_failed_fsync_or_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    for name in ("fsync", "replace"):
        with monkeypatch.context() as patch:
            patch.setattr(backprop.files.os, name, lambda *a: (_ for _ in ()).throw(OSError(f"{name} failed")))
            with pytest.raises(OSError, match=f"{name} failed"):
                with atomic_write(path) as f:
                    f.write(b"new")
        assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_figure_save_leaves_the_old_png(tmp_path, monkeypatch):
    path = plot_history({"loss": [1, 2]}, tmp_path / "curves.png")
    before = path.read_bytes()
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda *a, **k: (_ for _ in ()).throw(OSError("no space")))
    with pytest.raises(OSError, match="no space"):
        plot_history({"loss": [5, 6]}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["curves.png"]


def test_atomic_write_names_a_missing_folder_and_refuses_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*missing does not exist"):
        with atomic_write(tmp_path / "missing" / "x.csv", "w"):
            pass
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        with atomic_write(tmp_path, "w"):
            pass


def test_atomic_write_replaces_a_symbolic_link_not_its_target(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("kept")
    (tmp_path / "link.txt").symlink_to(target)
    with atomic_write(tmp_path / "link.txt", "w") as f:
        f.write("new")
    assert target.read_text() == "kept" and (tmp_path / "link.txt").read_text() == "new"
    assert not (tmp_path / "link.txt").is_symlink()


# -- check_paths -------------------------------------------------------------------------------------
def test_an_output_that_is_an_input_is_refused_naming_both(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,y\n1,0\n")
    with pytest.raises(ValueError, match=r"--out .*data.csv is the same file as the input --data .*data.csv"):
        check_paths({"--data": data}, {"--out": data})


def test_paths_are_compared_by_the_file_they_resolve_to(tmp_path, monkeypatch):
    model = tmp_path / "m.npz"
    model.write_bytes(b"model")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    os.link(model, tmp_path / "hard.npz")
    (tmp_path / "soft.npz").symlink_to(model)
    for alias in ("../m.npz", "../sub/../m.npz", str(tmp_path / "hard.npz"), str(tmp_path / "soft.npz")):
        with pytest.raises(ValueError, match="is the same file as the input --model"):
            check_paths({"--model": str(model)}, {"--out": alias})
    check_paths({"--model": str(model)}, {"--out": "../other.npz"})


def test_two_outputs_may_not_be_the_same_file_even_before_they_exist(tmp_path):
    with pytest.raises(ValueError, match=r"--grad-report .*p.png and --plot .*p.png are the same file"):
        check_paths({}, {"--plot": tmp_path / "p.png", "--grad-report": str(tmp_path / "." / "p.png")})
    check_paths({}, {"--plot": tmp_path / "p.png", "--grad-report": tmp_path / "g.png", "--graph": None})


def test_check_paths_takes_plain_lists_and_ignores_inputs_that_are_not_files(tmp_path):
    check_paths(["iris"], [tmp_path / "iris.npz"])  # a built-in dataset's name is not a file
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(ValueError, match="same file"):
        check_paths([tmp_path / "x.csv"], [str(tmp_path / "x.csv")])


# -- regular_file --------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_only_regular_files_are_read_as_data(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    assert regular_file(tmp_path / "file") == tmp_path / "file"
    assert regular_file(tmp_path / "link") == tmp_path / "link"
    for path, kind in ((tmp_path / "pipe", r"a FIFO \(named pipe\)"), ("/dev/zero", "a character device"), (tmp_path, "a folder")):
        with pytest.raises(ValueError, match=f"is {kind}; expected a regular file") as error:
            regular_file(path)
        assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="data file .*nothing.csv does not exist"):
        regular_file(tmp_path / "nothing.csv")


# -- json_text, physical_memory -------------------------------------------------------------------------
def test_json_text_is_strict_json_with_null_for_non_finite_numbers():
    text = json_text({"loss": float("nan"), "r2": -math.inf, "scores": (1.5, np.float32(np.inf)), "n": np.int64(3),
                      "w": np.array([1.0, np.nan]), "ok": True, "name": None})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}")) == {
        "loss": None, "r2": None, "scores": [1.5, None], "n": 3, "w": [1.0, None], "ok": True, "name": None}


def test_physical_memory_is_a_positive_number_of_bytes():
    assert 2**26 < physical_memory() < 2**60


def test_a_legal_255_byte_name_is_written_and_a_failed_write_names_the_file(tmp_path, monkeypatch):
    import errno

    from backprop.files import atomic_write

    path = tmp_path / ("m" * 251 + ".npz")
    with atomic_write(path) as file:
        file.write(b"data")
    assert path.read_bytes() == b"data" and sorted(os.listdir(tmp_path)) == [path.name]

    def full(*args):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=rf"cannot write {re.escape(str(path))}: File too large"):
        with atomic_write(path) as file:
            file.write(b"more")
    assert path.read_bytes() == b"data" and sorted(os.listdir(tmp_path)) == [path.name]
