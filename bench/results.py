"""bench/RESULTS.md is one report written by several benchmarks: ``python -m bench``
writes its tables, and each other benchmark (``python -m bench --distributed``) writes
its own section, which the next ``python -m bench`` keeps."""

import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


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
