"""README.md's Python examples run as written, in order, in one namespace (as a reader
would paste them into one session), and print what the README says they print."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert len(python_blocks()) >= 5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # GridSearchCV's short fits
def test_readme_python_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for number, block in enumerate(python_blocks(), start=1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"README.md python block {number} failed: {type(error).__name__}: {error}")
    assert (tmp_path / "digits.npz").is_file() and (tmp_path / "flow.png").is_file()
    assert "Backpropagation, worked" in capsys.readouterr().out
