"""Model and checkpoint files as hostile input: a corpus of bad files and property tests.

Whatever a file holds, ``load`` and ``load_checkpoint`` return a model (or tree) or raise
one ``ValueError`` naming the file, on one line: never MemoryError, RecursionError,
KeyError, IndexError, AttributeError, BadZipFile or a hang.
"""

import io
import json
import os
import struct
import zipfile
from contextlib import nullcontext

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backprop
import backprop.io
from backprop import nn, optim
from backprop.io import load, load_checkpoint, save, save_checkpoint


def small_model():
    backprop.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def header_and_arrays(path):
    members = members_of(path)
    header = json.loads(str(np.load(io.BytesIO(members.pop("__header__.npy")))[()]))
    return header, members


def write_file(path, header, arrays):
    """A backprop file with this header (a dict, or JSON text as it is) and these members."""
    text = header if isinstance(header, str) else json.dumps(header)
    write_members(path, {"__header__.npy": npy(np.array(text)), **arrays})


def valid_model_file(tmp_path):
    path = tmp_path / "m.npz"
    save(small_model(), path, metadata={"task": "classification"})
    return path


def assert_one_value_error(path, message, loader=load):
    with pytest.raises(ValueError) as error:
        loader(path)
    text = str(error.value)
    assert str(path) in text and message in text and "\n" not in text, text
    return text


# -- the corpus --------------------------------------------------------------------------------------
def test_a_declared_shape_larger_than_the_bytes_held_is_refused_before_allocating(tmp_path):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    huge = npy(np.zeros(3, np.float32)).replace(b"(3,)", b"(1000000000000, 1000000000)")
    path = tmp_path / "huge.npz"
    write_file(path, header, {**arrays, "a0.npy": huge})
    assert_one_value_error(path, "declares shape (1000000000000, 1000000000)")


def test_an_architecture_far_larger_than_its_weights_is_refused_before_allocating(tmp_path):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    header["config"]["layers"][0]["args"]["in_features"] = 10**9
    path = tmp_path / "big.npz"
    write_file(path, header, arrays)
    assert_one_value_error(path, "0.weight has shape (4, 3) in the file but the architecture needs (4, 1000000000)")


def test_a_header_nested_100000_deep_is_refused_without_recursion(tmp_path):
    path = tmp_path / "deep.npz"
    tree = "[" * 100_000 + "]" * 100_000
    write_file(path, f'{{"format": "backprop", "version": 1, "kind": "tree", "tree": {tree}}}', {})
    assert_one_value_error(path, "the header nests 100001 levels deep")


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    path = tmp_path / "t.npz"
    save({"text": "[[[{{{" * 1000}, path)
    assert load(path) == {"text": "[[[{{{" * 1000}


def test_a_header_longer_than_the_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "long.npz"
    save({"text": "x" * 5000}, path)
    monkeypatch.setattr(backprop.io, "MAX_HEADER_CHARS", 1000)
    assert_one_value_error(path, "characters long; at most 1000 are read")


HEADER_EDITS = {
    "version as a string": (lambda h: h.update(version="1"), "format version 1; this backprop reads version 1"),
    "kind unknown": (lambda h: h.update(kind="weights"), "the header is corrupt (kind 'weights'"),
    "an extra field": (lambda h: h.update(extra=1), "the header is corrupt"),
    "no tree": (lambda h: h.pop("tree"), "the header is corrupt"),
    "metadata a list": (lambda h: h.update(metadata=[1]), "metadata must be an object"),
    "config a string": (lambda h: h.update(config="Sequential"), "architecture is corrupt"),
    "layers not a list": (lambda h: h["config"].update(layers={"0": 1}), "without a 'layers' list"),
    "in_features a string": (lambda h: h["config"]["layers"][0]["args"].update(in_features="3"), "Linear args"),
    "in_features zero": (lambda h: h["config"]["layers"][0]["args"].update(in_features=0), "Linear args"),
    "bias a string": (lambda h: h["config"]["layers"][0]["args"].update(bias="yes"), "Linear args"),
    "unknown layer": (lambda h: h["config"]["layers"].__setitem__(1, {"type": "Eval", "args": {}}), "unknown layer type 'Eval'"),
    "bad layer args": (lambda h: h["config"]["layers"].__setitem__(1, {"type": "ReLU", "args": {"x": 1}}), "bad args for ReLU"),
    "tree a list": (lambda h: h.update(tree=[1, 2]), "it holds arrays its header does not refer to: ['a0', 'a1', 'a2', 'a3']"),
    "tree a tuple": (lambda h: h.update(tree={"tuple": [{"array": f"a{i}"} for i in range(4)]}), "weights must be a dict of arrays"),
    "unknown tag": (lambda h: h.update(tree={"set": []}), "unknown node 'set'"),
    "two tags": (lambda h: h.update(tree={"dict": [], "tuple": []}), "expected one tag"),
    "dict entry not a pair": (lambda h: h["tree"]["dict"].__setitem__(0, ["0.weight"]), "not a [str or int key, value] pair"),
    "dict key a list": (lambda h: h["tree"]["dict"][0].__setitem__(0, ["k"]), "not a [str or int key, value] pair"),
    "array name a number": (lambda h: h["tree"]["dict"][0][1].update(array=0), "refers to an array named '0'"),
    "array name a path": (lambda h: h["tree"]["dict"][0][1].update(array="../a0"), "refers to an array named '../a0'"),
    "array referred twice": (lambda h: h["tree"]["dict"][1][1].update(array="a0"), "refers to the array a0 twice"),
    "weight renamed": (lambda h: h["tree"]["dict"][0].__setitem__(0, "0.w"), "do not fit the architecture"),
}


@pytest.mark.parametrize("edit, message", HEADER_EDITS.values(), ids=HEADER_EDITS.keys())
def test_header_fields_of_the_wrong_type_or_value_are_one_value_error(tmp_path, edit, message):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    edit(header)
    path = tmp_path / "edited.npz"
    write_file(path, header, arrays)
    assert_one_value_error(path, message)


def test_an_empty_npz_is_refused(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path)
    assert_one_value_error(path, "it is an empty archive")


def test_a_pickled_object_member_is_refused_and_never_unpickled(tmp_path):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    path = tmp_path / "pickled.npz"
    write_file(path, header, {**arrays, "a0.npy": npy(np.array([print], dtype=object))})
    assert_one_value_error(path, "it contains a pickled object")


@pytest.mark.parametrize("name", ["a99.npy", "notes.txt", "__header__.npy"])
def test_extra_members_are_refused(tmp_path, name):
    path = valid_model_file(tmp_path)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning) if name == "__header__.npy" else nullcontext():
        archive.writestr(name, npy(np.zeros(2)))
    message = {"a99.npy": "holds arrays its header does not refer to: ['a99']",
               "notes.txt": "unexpected member 'notes.txt'", "__header__.npy": "holds '__header__.npy' twice"}[name]
    assert_one_value_error(path, message)


def npy_header_only(descr, shape):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("member", [
    npy(np.zeros(2, dtype="datetime64[s]")),
    npy(np.zeros(2, dtype="i4,i4")),
    npy(np.zeros(2, dtype="V8")),
    npy_header_only([("a", "<f4", (2,))], (1,)),
    npy_header_only("<U0", (10**12,)),  # zero bytes per item: any shape would "fit"
], ids=["datetime", "structured", "void", "subarray", "zero-size strings"])
def test_members_of_dtypes_other_than_plain_numbers_bools_and_strings_are_refused(tmp_path, member):
    path = tmp_path / "t.npz"
    write_file(path, {"format": "backprop", "version": 1, "kind": "tree", "tree": {"array": "a0"}}, {"a0.npy": member})
    assert_one_value_error(path, "expected numbers, bools or strings")


def test_a_weight_of_integers_is_refused(tmp_path):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    path = tmp_path / "int.npz"
    write_file(path, header, {**arrays, "a1.npy": npy(np.zeros(4, np.int32))})
    assert_one_value_error(path, "the weight 0.bias has dtype int32; weights are floating point")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_weight_is_refused(tmp_path, bad):
    model = small_model()
    model[2].bias.data[1] = bad
    path = tmp_path / "nan.npz"
    save(model, path)
    assert_one_value_error(path, "the weight 2.bias holds NaN or infinite values")


def test_a_scalar_reference_to_an_array_is_refused(tmp_path):
    path = tmp_path / "t.npz"
    write_file(path, {"format": "backprop", "version": 1, "kind": "tree", "tree": {"scalar": "a0"}},
               {"a0.npy": npy(np.zeros(3))})
    assert_one_value_error(path, "the scalar a0 has shape (3,)")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused(tmp_path, fraction):
    path = valid_model_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    assert_one_value_error(path, "")


@pytest.mark.parametrize("content", [b"", b"hello", b"PK", b"PK\x03\x04" + bytes(100), bytes(range(256)) * 10])
def test_files_that_are_not_zip_archives_are_refused(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    assert_one_value_error(path, "")


def test_a_deflated_member_declaring_more_bytes_than_it_can_hold_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    text = json.dumps(header)
    write_members(path, {"__header__.npy": npy(np.array(text)), **arrays}, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central directory entry: uncompressed size at +24
    data[entry + 24: entry + 28] = struct.pack("<I", 0xFFFFFF00)
    path.write_bytes(bytes(data))
    assert_one_value_error(path, "more than its data can hold")


def test_a_compressed_file_written_by_other_tools_still_loads(tmp_path):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    path = tmp_path / "zipped.npz"
    write_members(path, {"__header__.npy": npy(np.array(json.dumps(header))), **arrays}, zipfile.ZIP_DEFLATED)
    assert load(path).metadata == {"task": "classification"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_or_a_device_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        load(fifo)  # opening it would block forever: it is refused before
    with pytest.raises(ValueError, match="is a character device"):
        load("/dev/zero")
    with pytest.raises(ValueError, match="is a folder"):
        load(tmp_path)


# -- checkpoints -------------------------------------------------------------------------------------
def checkpoint_file(tmp_path):
    model = small_model()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    model(backprop.Tensor(np.ones((2, 3), np.float32))).sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, optimizer, epoch=2)
    return path


def restore_into_fresh(path):
    model = small_model()
    return load_checkpoint(path, model, optim.Adam(model.parameters()))


CHECKPOINT_EDITS = {
    "epoch a string": (lambda c: c.update(epoch="2"), "epoch must be an int >= 0"),
    "epoch negative": (lambda c: c.update(epoch=-1), "epoch must be an int >= 0"),
    "rng garbage": (lambda c: c.update(rng={"bit_generator": "MT19937"}), "random generator state is invalid"),
    "no extra": (lambda c: c.pop("extra"), "not a checkpoint"),
    "weights a list": (lambda c: c.update(model=[1]), "weights must be a dict of arrays"),
    "nan weight": (lambda c: c["model"]["0.weight"].__setitem__((0, 0), np.nan), "the weight 0.weight holds NaN"),
    "nan moment": (lambda c: c["optimizer"]["state"][0]["exp_avg"].__setitem__((0, 0), np.nan), "optimizer state"),
    "wrong shape": (lambda c: c["model"].update({"0.weight": np.zeros((2, 2), np.float32)}), "weights do not fit the model"),
    "lr a string": (lambda c: c["optimizer"]["param_groups"][0].update(lr="fast"), "lr must be a real number"),
    "lr nan": (lambda c: c["optimizer"]["param_groups"][0].update(lr=float("nan")), "Invalid learning rate: nan"),
    "betas of three": (lambda c: c["optimizer"]["param_groups"][0].update(betas=[0.9, 0.9, 0.9]), "betas"),
    "param index unknown": (lambda c: c["optimizer"]["param_groups"][0].update(params=[9, 1, 2, 3]), "does not fit"),
    "state index unknown": (lambda c: c["optimizer"]["state"].update({7: {}}), "does not fit the optimizer"),
    "no param_groups": (lambda c: c["optimizer"].pop("param_groups"), "'state' and 'param_groups'"),
}


@pytest.mark.parametrize("edit, message", CHECKPOINT_EDITS.values(), ids=CHECKPOINT_EDITS.keys())
def test_checkpoint_fields_are_checked_before_anything_is_changed(tmp_path, edit, message):
    checkpoint = load(checkpoint_file(tmp_path))
    edit(checkpoint)
    path = tmp_path / "edited.npz"
    save(checkpoint, path)
    model = small_model()
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    state = backprop.get_rng_state()
    with pytest.raises(ValueError) as error:
        load_checkpoint(path, model, optim.Adam(model.parameters()))
    assert str(path) in str(error.value) and message in str(error.value) and "\n" not in str(error.value)
    assert backprop.get_rng_state() == state
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


# -- property tests ----------------------------------------------------------------------------------
def loads_or_one_value_error(path, loader=load):
    try:
        loader(path)
    except ValueError as error:
        assert "\n" not in str(error) and str(path) in str(error), str(error)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.data())
def test_random_byte_mutations_of_a_model_file_load_or_raise_one_value_error(tmp_path, data):
    original = valid_model_file(tmp_path).read_bytes()
    mutated = bytearray(original)
    for position, value in data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), min_size=1, max_size=8)):
        mutated[position] = value
    cut = data.draw(st.integers(1, len(original)))
    path = tmp_path / "mutated.npz"
    path.write_bytes(bytes(mutated[:cut]))
    loads_or_one_value_error(path)


@SETTINGS
@given(data=st.data())
def test_random_mutations_inside_the_members_load_or_raise_one_value_error(tmp_path, data):
    """The zip's checksums are recomputed, so the mutations reach the .npy headers and the JSON."""
    members = members_of(valid_model_file(tmp_path))
    name = data.draw(st.sampled_from(sorted(members)))
    content = bytearray(members[name])
    for position, value in data.draw(st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(0, 255)), min_size=1, max_size=6)):
        content[position] = value
    path = tmp_path / "mutated.npz"
    write_members(path, {**members, name: bytes(content)})
    loads_or_one_value_error(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


def places(node, path=()):
    """Every path to a value inside a JSON tree."""
    yield path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from places(child, path + (key,))


def replace(node, path, value):
    if not path:
        return value
    node[path[0]] = replace(node[path[0]], path[1:], value)
    return node


@SETTINGS
@given(data=st.data())
def test_random_header_edits_of_a_model_file_load_or_raise_one_value_error(tmp_path, data):
    header, arrays = header_and_arrays(valid_model_file(tmp_path))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(places(header))))
        header = replace(header, where, data.draw(JSON | st.sampled_from(["a0", {"array": "a1"}, {"dict": []}, 0, 1, 2, 4, True])))
    path = tmp_path / "edited.npz"
    write_file(path, header, arrays)
    loads_or_one_value_error(path)


@SETTINGS
@given(data=st.data())
def test_random_header_edits_of_a_checkpoint_load_or_raise_one_value_error(tmp_path, data):
    header, arrays = header_and_arrays(checkpoint_file(tmp_path))
    where = data.draw(st.sampled_from(list(places(header["tree"]))))
    header["tree"] = replace(header["tree"], where, data.draw(JSON | st.sampled_from([0, 1, -1, 1e9, "a3", [0, 1]])))
    path = tmp_path / "edited.npz"
    write_file(path, header, arrays)
    loads_or_one_value_error(path, restore_into_fresh)


def test_the_parameter_shapes_read_from_a_config_are_those_every_builtin_layer_allocates():
    from backprop.io import _parameter_shapes
    from backprop.nn.module import _BUILTIN

    for name, cls in _BUILTIN.items():
        if name == "Sequential":
            continue
        layer = cls(3, 5) if name == "Linear" else cls()
        model = nn.Sequential(layer, nn.Sequential(nn.Linear(5, 2, bias=False)))
        actual = {key: value.shape for key, value in model.state_dict().items()}
        assert _parameter_shapes(model.config()) == actual, name
