"""``import backprop`` alone makes every submodule the README uses reachable, without cycles."""

import subprocess
import sys

import pytest

README_SUBMODULES = ["data", "datasets", "explain", "files", "io", "nn", "optim", "sklearn", "training"]


def test_every_submodule_the_readme_uses_is_an_attribute_after_import_backprop_alone():
    code = (
        "import sys, types, backprop\n"
        "heavy = sorted({'sklearn', 'pandas'} & set(sys.modules))\n"  # imported on first use only
        f"print(heavy, [n for n in {README_SUBMODULES!r} if not isinstance(getattr(backprop, n), types.ModuleType)])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[] []"


def test_an_unknown_attribute_is_still_an_attribute_error():
    import backprop

    with pytest.raises(AttributeError, match="no attribute 'datasetz'"):
        backprop.datasetz


def test_the_wheel_installs_by_its_own_name_into_a_fresh_environment_and_trains(tmp_path):
    """``pip wheel`` makes backprop-nn's wheel; a fresh virtual environment installs it (its
    dependencies from the index) and its ``backprop`` command trains and says its version."""
    import subprocess
    import sys
    import venv
    from pathlib import Path

    import backprop

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(root)],
                   check=True, capture_output=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("backprop_nn-*.whl")
    venv.create(tmp_path / "fresh", with_pip=True)
    python = tmp_path / "fresh" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True, timeout=600)
    command = tmp_path / "fresh" / "bin" / "backprop"
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"backprop, version {backprop.__version__}"
    trained = subprocess.run([str(command), "train", "--epochs", "1", "--out", "m.npz"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "saved   m.npz" in trained.stdout and (tmp_path / "m.npz").is_file()
    hint = subprocess.run([str(python), "-c", "from backprop.mpi import MPI_MISSING; print(MPI_MISSING)"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "pip install 'backprop-nn[mpi]'" in hint.stdout  # outside a checkout: the index's name
