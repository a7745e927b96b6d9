import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import backprop
from backprop import Tensor, nn, optim
from backprop.io import load, load_checkpoint, save, save_checkpoint


def make_model():
    backprop.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 3), nn.Softmax(dim=1))


def trained_adam(model):
    optimizer = optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    x = Tensor(np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
    for _ in range(3):
        optimizer.zero_grad()
        (model(x) ** 2).sum().backward()
        optimizer.step()
    return optimizer


def header_of(path):
    with zipfile.ZipFile(path) as archive, archive.open("__header__.npy") as member:
        return json.loads(str(np.lib.format.read_array(member)[()]))


# -- models --------------------------------------------------------------------------------------
def test_saved_model_loads_back_with_identical_predictions(tmp_path):
    model = make_model().eval()
    path = tmp_path / "model.npz"
    save(model, path, metadata={"classes": ["a", "b", "c"], "epochs": 7})
    loaded = load(path).eval()
    assert loaded is not model and repr(loaded) == repr(model)
    x = Tensor(np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32))
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded.metadata == {"classes": ["a", "b", "c"], "epochs": 7}
    assert loaded[0].weight.dtype == np.float32


def test_model_file_holds_the_architecture_as_json(tmp_path):
    model = make_model()
    save(model, tmp_path / "m.npz")
    header = header_of(tmp_path / "m.npz")
    assert header["format"] == "backprop" and header["version"] == 1 and header["kind"] == "model"
    assert header["config"] == model.config()


def test_a_float64_model_stays_float64(tmp_path):
    model = make_model().double()
    save(model, tmp_path / "m.npz")
    assert load(tmp_path / "m.npz")[0].weight.dtype == np.float64


def test_saving_a_user_defined_module_says_to_save_its_state_dict(tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            self.linear = nn.Linear(2, 2)

    with pytest.raises(NotImplementedError, match="state_dict"):
        save(Mine(), tmp_path / "m.npz")
    save(Mine().state_dict(), tmp_path / "m.npz")


# -- trees -----------------------------------------------------------------------------------------
def test_tree_round_trip_keeps_structure_types_and_int_keys(tmp_path):
    model = make_model()
    optimizer = trained_adam(model)
    tree = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "rng": backprop.get_rng_state(),
        "misc": [None, True, 1.5, "text", (1, 2), np.float32(0.25), np.int64(7), float("inf")],
        "empty": {},
    }
    path = tmp_path / "tree.npz"
    save(tree, path)
    back = load(path)
    assert back.keys() == tree.keys()
    assert sorted(back["optimizer"]["state"]) == sorted(tree["optimizer"]["state"]) == [0, 1, 2, 3]
    for key, state in tree["optimizer"]["state"].items():
        for name, value in state.items():
            np.testing.assert_array_equal(back["optimizer"]["state"][key][name], value)
            assert type(back["optimizer"]["state"][key][name]) is type(value)
    assert back["optimizer"]["param_groups"] == tree["optimizer"]["param_groups"]
    assert back["rng"] == tree["rng"]
    assert back["misc"] == tree["misc"] and type(back["misc"][5]) is np.float32
    for name, array in tree["model"].items():
        assert back["model"][name].dtype == array.dtype
        np.testing.assert_array_equal(back["model"][name], array)
    optimizer.load_state_dict(back["optimizer"])  # what a checkpoint does with it


def test_trees_refuse_what_json_and_npy_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store set at obj\['a'\]"):
        save({"a": {1, 2}}, tmp_path / "t.npz")
    with pytest.raises(TypeError, match="array of Python objects"):
        save([np.array([object()])], tmp_path / "t.npz")
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        save({(1, 2): 3}, tmp_path / "t.npz")
    assert os.listdir(tmp_path) == []


# -- checkpoints -------------------------------------------------------------------------------------
def test_checkpoint_restores_weights_optimizer_and_random_state(tmp_path):
    model = make_model()
    optimizer = trained_adam(model)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, optimizer, epoch=4, note="hello")
    expected_random = backprop.random.generator().random(3)

    other = make_model()
    other_optimizer = optim.Adam(other.parameters(), lr=0.5)
    backprop.manual_seed(99)
    info = load_checkpoint(path, other, other_optimizer)
    assert info == {"epoch": 4, "note": "hello"}
    np.testing.assert_array_equal(backprop.random.generator().random(3), expected_random)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert other_optimizer.param_groups[0]["lr"] == 0.01
    np.testing.assert_array_equal(other_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_load_checkpoint_refuses_a_model_file(tmp_path):
    save(make_model(), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "m.npz", make_model())


# -- refusing bad files ------------------------------------------------------------------------------
class WritesMarker:
    """Unpickling this object would create the file at ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_file_holding_a_pickled_object_is_refused_and_nothing_in_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, __header__=np.array('{"format": "backprop", "version": 1, "kind": "tree", "tree": {"array": "a0"}}'),
             a0=np.array([WritesMarker(marker)], dtype=object))
    with pytest.raises(ValueError, match="contains a pickled object; backprop never unpickles files"):
        load(path)
    assert not marker.exists()

    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(WritesMarker(marker)))
    with pytest.raises(ValueError, match="contains a pickled object"):
        load(raw)
    assert not marker.exists()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(tmp_path / "nope.npz")


def test_truncated_and_corrupted_files_are_one_line_errors(tmp_path):
    path = tmp_path / "m.npz"
    save(make_model(), path)
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated") as error:
        load(path)
    assert "\n" not in str(error.value)

    flipped = bytearray(data)
    flipped[200] ^= 0xFF  # inside the first array's bytes: the zip CRC catches it
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        load(path)


def test_files_that_are_not_backprop_files_are_refused(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="is not a backprop file"):
        load(text)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.ones(3))
    with pytest.raises(ValueError, match="has no backprop header"):
        load(plain)
    npy = tmp_path / "array.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match="is not a backprop file"):
        load(npy)


def test_a_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "future.npz"
    np.savez(path, __header__=np.array('{"format": "backprop", "version": 2, "kind": "tree", "tree": 1}'))
    with pytest.raises(ValueError, match="format version 2; this backprop reads version 1"):
        load(path)


def test_a_header_pointing_at_missing_arrays_is_corrupt(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, __header__=np.array('{"format": "backprop", "version": 1, "kind": "tree", "tree": {"array": "a9"}}'))
    with pytest.raises(ValueError, match="corrupt"):
        load(path)


# -- atomic writes ------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save({"version": "old", "w": np.ones(3)}, path)

    def dies_midway(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(backprop.io.np, "savez", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        save({"version": "new", "w": np.zeros(3)}, path)
    monkeypatch.undo()
    assert load(path)["version"] == "old"
    assert os.listdir(tmp_path) == ["m.npz"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save({"version": "old"}, path)
    monkeypatch.setattr(backprop.io.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save({"version": "new"}, path)
    monkeypatch.undo()
    assert load(path)["version"] == "old"
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_writes_exactly_the_path_given(tmp_path):
    save({"a": 1}, tmp_path / "weights.bin")
    assert os.listdir(tmp_path) == ["weights.bin"] and load(tmp_path / "weights.bin") == {"a": 1}
    save({"a": 2}, str(tmp_path / "weights.bin"))  # overwriting works, str paths too
    assert load(tmp_path / "weights.bin") == {"a": 2}


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*missing does not exist"):
        save({"a": 1}, tmp_path / "missing" / "m.npz")


def test_a_state_dict_of_tensors_saves_and_loads_as_tensors(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    save(model.state_dict(), tmp_path / "model.pth")
    loaded = load(tmp_path / "model.pth", weights_only=True, map_location="cpu")
    assert list(loaded) == ["0.weight", "0.bias"] and all(isinstance(v, Tensor) for v in loaded.values())
    other = nn.Sequential(nn.Linear(3, 2))
    other.load_state_dict(loaded)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(model.parameters(), other.parameters()))
