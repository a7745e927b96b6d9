import gzip
import os
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backprop.datasets import BUILTINS, load_dataset, read_idx, standardize, standardize_stats


def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f8"): 0x0E}
    array = np.asarray(array)
    array = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    raw = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    (gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb")).write(raw)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_loads_finite_features_and_targets(name):
    data = load_dataset(name)
    assert data.X.dtype == np.float64 and data.X.ndim == 2 and np.isfinite(data.X).all()
    assert len(data.y) == len(data.X) and len(data.feature_names) == data.X.shape[1]
    if data.task == "classification":
        assert data.y.dtype == np.int64 and set(np.unique(data.y)) == set(range(data.n_classes))
    else:
        assert name == "diabetes" and data.label_names is None


def test_generated_datasets_are_the_same_on_every_load():
    for name in ("xor", "moons", "spirals"):
        np.testing.assert_array_equal(load_dataset(name).X, load_dataset(name).X)


def test_builtin_label_names_are_the_original_labels():
    assert load_dataset("iris").label_names == ["setosa", "versicolor", "virginica"]
    assert load_dataset("digits").label_names == [str(d) for d in range(10)]
    assert load_dataset("breast_cancer").label_names == load_dataset("breast-cancer").label_names


def test_csv_string_labels_are_mapped_and_kept(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("weight,height,species\n4.0,30,cat\n30,60,dog\n\n5,25,cat\n")
    data = load_dataset(path)
    np.testing.assert_array_equal(data.X, [[4, 30], [30, 60], [5, 25]])
    assert data.y.tolist() == [0, 1, 0] and data.label_names == ["cat", "dog"]
    assert data.feature_names == ["weight", "height"] and data.target_name == "species"


def test_csv_target_column_by_name_and_numeric_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,a,b\n3,1,2\n1.0,3,4\n3,5,6\n")
    data = load_dataset(path, target="label")
    assert data.feature_names == ["a", "b"] and data.label_names == ["1", "3"] and data.y.tolist() == [1, 0, 1]


def test_csv_fractional_target_is_regression_unless_told(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("x,y\n1,0.5\n2,1.5\n3,2\n")
    assert load_dataset(path).task == "regression"
    path.write_text("x,y\n1,1\n2,2\n3,5\n")
    assert load_dataset(path).task == "classification"
    data = load_dataset(path, task="regression")
    assert data.task == "regression" and data.y.tolist() == [1.0, 2.0, 5.0]


def test_csv_features_selected_by_name_without_target(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("b,a\n2,1\n4,3\n")
    data = load_dataset(path, target="species", features=["a", "b"], require_target=False)
    np.testing.assert_array_equal(data.X, [[1, 2], [3, 4]])
    assert data.y is None


def test_npz_with_X_and_y(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(24.0).reshape(4, 2, 3), y=np.array(["b", "a", "b", "a"]))
    data = load_dataset(path)
    assert data.X.shape == (4, 6) and data.label_names == ["a", "b"] and data.y.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_folder_train_then_test(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0, 2, 1], dtype=np.uint8)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images[:5])
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels[:5])
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[5:])
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[5:])
    data = load_dataset(tmp_path)
    np.testing.assert_array_equal(data.X, images.reshape(7, 16))
    assert data.y.tolist() == labels.tolist() and data.feature_names[5] == "pixel_1_1"


def test_read_idx_reads_wider_big_endian_types(tmp_path):
    for array in (np.arange(6, dtype=">i4").reshape(2, 3) - 3, np.linspace(-1, 1, 5).astype(">f8")):
        write_idx(tmp_path / "a.idx", array)
        np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)


BAD_CSVS = {
    "a,b,y\n1,2,0\n3,oops,1\n": "line 3: feature column 'b' is 'oops', not a finite number",
    "a,b,y\n1,2,0\n3,nan,1\n": "line 3: feature column 'b' is 'nan', not a finite number",
    "a,b,y\n1,2,0\n3,,1\n": "line 3: feature column 'b' is empty",
    "a,b,y\n1,2,0\n3,4\n": "line 3: 2 fields but the header has 3",
    "a,b,y\n": "the file has a header but no data rows",
    "": "the file is empty",
}


@pytest.mark.parametrize("text, message", BAD_CSVS.items())
def test_bad_csv_fails_with_one_line_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_dataset(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_single_class_target_loads_for_scoring_but_cannot_be_trained_on(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("a,b,y\n1,2,1\n3,4,1\n")
    data = load_dataset(path)
    assert data.label_names == ["1"] and data.y.tolist() == [0, 0]
    with pytest.raises(ValueError, match="the target 'y' has a single class \\('1'\\); classification needs at least 2"):
        data.check_trainable()


def test_unknown_target_column_lists_the_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match="no target column 'label'; the columns are a, b, y"):
        load_dataset(path, target="label")


def test_unknown_dataset_name_lists_the_builtins():
    with pytest.raises(ValueError, match="unknown dataset 'digitz'.*xor, moons, spirals, iris"):
        load_dataset("digitz")


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "missing.csv")
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unsupported data file type '.txt'"):
        load_dataset(tmp_path / "d.txt")


def test_npz_refuses_pickled_objects_and_non_archives(tmp_path):
    np.savez(tmp_path / "o.npz", X=np.array([[1, 2]], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match="contains a pickled object"):
        load_dataset(tmp_path / "o.npz")
    (tmp_path / "junk.npz").write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="contains a pickled object"):
        load_dataset(tmp_path / "junk.npz")
    (tmp_path / "text.npz").write_text("X,y\n1,2\n")
    with pytest.raises(ValueError, match="it is not an .npz file"):
        load_dataset(tmp_path / "text.npz")
    np.savez(tmp_path / "noy.npz", X=np.ones((2, 2)))
    with pytest.raises(ValueError, match="expected arrays named 'X' and 'y'; the file has X"):
        load_dataset(tmp_path / "noy.npz")
    np.savez(tmp_path / "nan.npz", X=np.array([[1.0, np.nan]]), y=np.array([0]))
    with pytest.raises(ValueError, match=r"X\[0, 1\] is nan"):
        load_dataset(tmp_path / "nan.npz")


def test_truncated_idx_file_is_reported(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="the header announces shape"):
        load_dataset(tmp_path)


# -- hostile data files --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("a,b,a,y\n1,2,3,0\n4,5,6,1\n", "the column name 'a' appears twice (columns 1 and 3); column names must be unique"),
    ("a, b ,b,y\n1,2,3,0\n", "the column name 'b' appears twice (columns 2 and 3)"),
    ("a,,y\n1,2,0\n", "column 2 of the header has no name"),
])
def test_duplicate_or_empty_column_names_are_refused(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_or_a_device_as_data_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ValueError, match=r"pipe.csv is a FIFO \(named pipe\); expected a regular file"):
        load_dataset(tmp_path / "pipe.csv")  # opening it would wait for a writer forever
    os.mkfifo(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match="is a FIFO"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="zero.csv is a character device"):
        load_dataset(tmp_path / "zero.csv")  # it would be read forever


@pytest.mark.parametrize("damage", ["flip", "truncate", "not gzip"])
def test_a_corrupt_gzip_idx_file_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, size=(50, 8, 8), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"plain text, not gzip")
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: (not a valid gzip file|the header announces)") as error:
        load_dataset(tmp_path)
    assert "\n" not in str(error.value)


def test_an_idx_header_announcing_more_than_memory_is_refused_before_reading(tmp_path):
    path = tmp_path / "big-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(ValueError, match="more than this machine's memory"):
        read_idx(path)


def test_an_npz_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    import io
    import zipfile

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**6)})
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("X.npy", buffer.getvalue() + bytes(16))
        archive.writestr("y.npy", buffer.getvalue())
    with pytest.raises(ValueError, match=r"declares shape \(1000000000, 1000000\)"):
        load_dataset(tmp_path / "d.npz")


def test_a_blank_target_column_is_allowed_where_no_target_is_needed(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("a,b,y\n1,2,\n3,4,\n")
    data = load_dataset(path, target="y", features=["a", "b"], require_target=False)
    np.testing.assert_array_equal(data.X, [[1, 2], [3, 4]])
    assert data.y is None
    with pytest.raises(ValueError, match="line 2: target column 'y' is empty"):
        load_dataset(path, target="y", features=["a", "b"])


@pytest.mark.parametrize("text, message", [
    ("a,b,y\n1,2,0\n3,inf,1\n", "line 3: feature column 'b' is 'inf', not a finite number"),
    ("a,b,y\n1,2,0\n3,4,nan\n", "line 3: target column 'y' is 'nan'"),
    ("a,b,y\n1,2,0\n\n3,4,1,9\n", "line 4: 4 fields but the header has 3"),
    ("a,b,y\n1,2,cat\n3,4,\n", "line 3: target column 'y' is empty"),
    ('a,b,y\n1,"2,0\n', "line 2: 2 fields but the header has 3"),
])
def test_more_bad_csvs_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset(path)


def test_csv_numbers_are_parsed_exactly_as_python_parses_them(tmp_path):
    values = np.random.default_rng(0).normal(size=(200, 3)) * 10.0 ** np.random.default_rng(1).integers(-300, 300, (200, 3))
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,y\n" + "".join(f"{float(a)!r},{float(b)!r},{float(c)!r},{i % 2}\n" for i, (a, b, c) in enumerate(values)))
    np.testing.assert_array_equal(load_dataset(path).X, values)


def test_non_utf8_csv_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("größe,y\n1,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not a text CSV file"):
        load_dataset(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(list("ab,y01.5e-\n\r \"\t#x") + ["nan", "inf", "\u00e9", "\x00"]), max_size=40).map("".join))
def test_random_csv_text_loads_or_raises_one_value_error(tmp_path, text):
    path = tmp_path / "random.csv"
    path.write_text(text, encoding="utf-8")
    try:
        data = load_dataset(path)
    except ValueError as error:
        assert "\n" not in str(error) and str(path) in str(error), str(error)
    else:
        assert np.isfinite(data.X).all() and len(data.X) == len(data.y) > 0


# -- standardization ------------------------------------------------------------------------------------
def test_standardization_statistics_are_finite_for_any_finite_input():
    X = np.array([[1e200, 1.0, 7.0, -1e308], [-1e200, 2.0, 7.0, 1e308], [3e200, 3.0, 7.0, 0.0]])
    mean, std = standardize_stats(X)
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    np.testing.assert_allclose(mean[:2], [1e200, 2.0], rtol=1e-12)
    np.testing.assert_allclose(std[:2], [np.std([1.0, -1.0, 3.0]) * 1e200, np.std([1.0, 2.0, 3.0])], rtol=1e-12)
    assert mean[2] == 7.0 and std[2] == 1.0  # a constant column: centred, not scaled
    Z = standardize(X[:, :3], mean[:3], std[:3], np.float64)
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1, rtol=1e-12)
    assert (Z[:, 2] == 0).all()


def test_standardization_matches_the_plain_formula_where_that_is_finite():
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4))
    mean, std = standardize_stats(X)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(std, X.std(axis=0), rtol=1e-13)


def test_a_value_the_dtype_cannot_represent_is_an_error_naming_the_column():
    mean, std = standardize_stats(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"feature column 'height' holds 1e\+200 \(row 2\), which float32 cannot represent once standardized"):
        standardize(np.array([[0.0, 1.0], [1.0, 1e200]]), mean, std, np.float32, names=["width", "height"])
    with pytest.raises(ValueError, match="feature column 'width' holds nan"):
        standardize_stats(np.array([[np.nan, 1.0]]), names=["width", "height"])


def test_boolean_looking_labels_keep_their_classes_and_names(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    names = np.array(["True", "False", "TRUE"])[y]
    path = tmp_path / "iris.csv"
    path.write_text("a,b,c,d,species\n" + "".join(f"{','.join(map(str, row))},{name}\n" for row, name in zip(X, names)))
    data = load_dataset(path, target="species")
    assert sorted(data.label_names) == ["False", "TRUE", "True"]
    assert np.array_equal(np.array(data.label_names)[data.y], names)
