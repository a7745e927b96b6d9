"""The documentation: the site builds with nothing unresolved, its references are generated
from the code, and the examples' checks (the root conftest.py, which runs README.md and
docs/*.md) catch a stale page and regenerate it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sybil.example import SybilFailure

import conftest as docs_examples  # the root conftest.py: the pages' examples as tests
from backprop.cli import main as command

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_builds_strictly_with_the_references_generated_from_the_code(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for name, subcommand in command.commands.items():
        assert f"backprop {name}" in cli
        for parameter in subcommand.params:
            assert all(option in cli for option in parameter.opts), (name, parameter.opts)
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for documented in ["fit", "compile_step", "CrossEntropyLoss", "Adam", "DataLoader", "MLPClassifier",
                       "DistributedDataParallel", "trace", "save_checkpoint", "Tanh", "Tensor.register_hook"]:
        assert re.search(rf'id="backprop\.[\w.]*\.{documented}"', api), documented
    speed = (site / "speed" / "index.html").read_text(encoding="utf-8")
    assert "Training throughput" in speed  # bench/RESULTS.md, included as recorded


STALE_PAGE = """# A page

```python
>>> print(6 * 7)
41
>>> print("took 0.25 s")
took ... s
```

```python
with open("numbers.txt", "w") as f:
    f.write("1\\n2\\n")
```

```console
$ cat numbers.txt
1
3
$ echo done in 0.5 s
done in ... s
```

<!-- skip: next -->
```console
$ false-command-never-run
```
"""


def run_page(folder, page="page.md"):
    failures = []
    document = docs_examples.pages([page], folder).parse(folder / page)
    namespace = document.namespace
    docs_examples.enter_folder(namespace)
    try:
        for example in document:
            try:
                example.evaluate()
            except SybilFailure as failure:
                failures.append(str(failure))
    finally:
        docs_examples.leave_folder(namespace)
    return failures


def test_a_stale_output_fails_and_update_docs_rewrites_it_keeping_what_varies(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(STALE_PAGE, encoding="utf-8")
    failures = run_page(tmp_path)
    assert len(failures) == 2
    assert "41" in failures[0] and "42" in failures[0]
    assert "$ cat numbers.txt" in failures[1] and "shown:\n1\n3\n" in failures[1]

    monkeypatch.setattr(docs_examples, "update", True)
    assert run_page(tmp_path) == []
    docs_examples.rewrite_pages()
    rewritten = page.read_text(encoding="utf-8")
    assert rewritten == STALE_PAGE.replace(">>> print(6 * 7)\n41", ">>> print(6 * 7)\n42").replace(
        "$ cat numbers.txt\n1\n3", "$ cat numbers.txt\n1\n2")
    monkeypatch.setattr(docs_examples, "update", False)
    assert run_page(tmp_path) == []


def test_a_plain_block_that_prints_what_the_page_does_not_show_fails(tmp_path):
    (tmp_path / "page.md").write_text("```python\nx = 6 * 7\n```\n\n```python\nprint(x)\n```\n", encoding="utf-8")
    failures = run_page(tmp_path)
    assert len(failures) == 1 and "printed what the page does not show" in failures[0] and "42" in failures[0]


def test_every_page_is_in_the_site():
    from mkdocs.config import load_config

    def files(nav):
        for entry in nav:
            for value in entry.values():
                yield from files(value) if isinstance(value, list) else [value]

    in_nav = set(files(load_config(str(ROOT / "mkdocs.yml"))["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert in_nav == on_disk


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")) + ["../README.md"])
def test_every_page_has_examples_that_show_their_output(page):
    document = docs_examples.pages([page], ROOT / "docs").parse(ROOT / "docs" / page)
    examples = list(document)
    shown = [e for e in examples if getattr(e.parsed, "want", "") or (
        e.region.evaluator is docs_examples.run_console
        and any(want for _, _, want in docs_examples.console_commands(e.parsed)))]
    assert examples and shown, f"{page}: no example that shows its output"
