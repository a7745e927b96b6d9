"""PyTorch programs run on backprop with only their imports changed.

Each file in ``pytorch_programs/`` is a short program in the style of PyTorch's beginner
material, written for PyTorch (``import torch``) and leaving what it found in ``RESULT``.
It runs twice: as written, under PyTorch, and with every ``torch`` of its import lines
read as ``backprop``; the two ``RESULT``s must agree, numbers to float32 rounding.
"""

import math
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

PROGRAMS = sorted(Path(__file__).with_name("pytorch_programs").glob("*.py"))
# The Quickstart takes 80 SGD steps at lr 0.5 in float32: PyTorch and NumPy round their
# sums in another order and the difference grows to 4e-4 (in float64 the two agree to 1e-15).
RTOL = {"quickstart": 1e-3}


def on_backprop(source):
    """The program with its imports changed: ``import torch`` becomes ``import backprop as
    torch``, and every other ``torch`` on an import line ``backprop``."""
    lines = []
    for line in source.splitlines():
        if re.match(r"\s*import torch\s*$", line):
            line = line.replace("import torch", "import backprop as torch")
        elif re.match(r"\s*(import|from) torch\b", line):
            line = re.sub(r"\btorch\b", "backprop", line)
            line = re.sub(r"^(\s*)import backprop\.(\S+)\s*$", r"\1import backprop.\2 as \2", line)  # torch.nn.x
        lines.append(line)
    return "\n".join(lines)


def run(source, path):
    namespace = {"__name__": "__main__", "__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - our own test programs
    return namespace["RESULT"]


def assert_agree(ours, theirs, rtol, where="RESULT"):
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            assert_agree(ours[key], theirs[key], rtol, f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), f"{where}: {ours!r} != {theirs!r}"
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_agree(a, b, rtol, f"{where}[{k}]")
    elif isinstance(theirs, float) and not isinstance(ours, bool):
        assert isinstance(ours, (int, float)) and math.isclose(ours, theirs, rel_tol=rtol, abs_tol=1e-5), (
            f"{where}: backprop gives {ours!r}, PyTorch {theirs!r}"
        )
    else:
        assert type(ours) is type(theirs) and ours == theirs, f"{where}: backprop gives {ours!r}, PyTorch {theirs!r}"


def test_the_import_lines_are_all_that_changes():
    source = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nfrom torch import nn\n" \
             "from torch.utils.data import DataLoader\nx = torch.ones(2)  # torch\n"
    assert on_backprop(source).splitlines() == [
        "import backprop as torch", "import backprop.nn as nn", "import backprop.nn.functional as F",
        "from backprop import nn", "from backprop.utils.data import DataLoader", "x = torch.ones(2)  # torch",
    ]


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_a_pytorch_program_gives_pytorchs_results(path):
    source = path.read_text()
    theirs = run(source, path)
    ours = run(on_backprop(source), path)
    assert_agree(ours, theirs, RTOL.get(path.stem, 1e-5))
