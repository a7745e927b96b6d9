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
