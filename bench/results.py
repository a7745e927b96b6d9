"""The report is one Markdown file written by several benchmarks: ``python -m bench``
writes its tables, and each other benchmark (``python -m bench --distributed``) writes
its own section, which the next ``python -m bench`` keeps. It is bench/RESULTS.md (and
bench/results.json) only when a run is recorded (``--record``); otherwise both go to a
folder outside the tree (``report_path``), so that a run never changes tracked files."""

import re
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def report_path(record, name="RESULTS.md"):
    """Where a run writes ``name``: beside this file when recording, else in
    ``$TMPDIR/backprop-bench``."""
    if record:
        return Path(__file__).with_name(name)
    folder = Path(tempfile.gettempdir()) / "backprop-bench"
    folder.mkdir(exist_ok=True)
    return folder / name


def _sections(text):
    """{heading: section text} of the level-2 sections of a Markdown text, in order."""
    parts = re.split(r"(?m)^(?=## )", text)
    return {part.splitlines()[0]: part for part in parts if part.startswith("## ")}


def write_section(heading, body, path=RESULTS):
    """Put ``## heading`` with ``body`` into the report, replacing the section of that name."""
    text = path.read_text() if path.exists() else ""
    section = f"## {heading}\n\n{body.strip()}\n\n"
    old = _sections(text).get(f"## {heading}")
    path.write_text(text.replace(old, section) if old else text.rstrip("\n") + "\n\n" + section)


def kept_sections(report, path=RESULTS):
    """The sections of the current report that ``report`` (a new ``python -m bench`` text)
    does not write itself: the other benchmarks' sections, to append to it."""
    if not path.exists():
        return ""
    ours = _sections(report)
    return "".join(text for heading, text in _sections(path.read_text()).items() if heading not in ours)
