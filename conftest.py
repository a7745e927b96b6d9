"""The documentation's examples as tests (Sybil): README.md and docs/*.md, page by page.

Each page runs in order in a fresh temporary folder of its own, so it must make the files it
reads. Python blocks run; a block written as a doctest (``>>>``) has its output compared with
what the page shows, and a plain block must print nothing. A ``console`` block runs each
``$ command`` in bash and compares what it printed (standard output and error, as a terminal
shows them) with the lines under it. In both, ``...`` stands for what varies between runs
(timings), numbers agree to the precision shown (Sybil's NUMBER), and a
``<!-- skip: next -->`` comment skips the block after it (a cluster's command, say).

``python -m pytest README.md docs --update-docs`` rewrites every shown output that no longer
matches with what the example printed, keeping the lines whose ``...`` still matches: the
numbers in the pages are regenerated, never typed.
"""
import contextlib
import doctest
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sybil import Sybil
from sybil.evaluators.doctest import NUMBER, DocTestEvaluator, DocTestRunner, OutputChecker
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

FLAGS = doctest.ELLIPSIS | NUMBER
CHECKER = OutputChecker()
VARIES = [(re.compile(r"\bin \d+(\.\d+)? s\b"), "in ... s")]    # timings, written as ... when regenerated
_edits = []          # (path, start, end, text): outputs to rewrite under --update-docs
update = False       # --update-docs


def pytest_addoption(parser):
    parser.addoption("--update-docs", action="store_true",
                     help="rewrite the documentation's shown outputs with what the examples print")


def pytest_configure(config):
    global update
    update = config.getoption("--update-docs")


def _merged(want, got):
    """``got``, keeping each line of ``want`` whose ``...`` still matches its line of ``got``,
    with what always varies (``VARIES``) written as ``...``."""
    for pattern, replacement in VARIES:
        got = pattern.sub(replacement, got)
    wants, gots = want.splitlines(), got.splitlines()
    if len(wants) != len(gots):
        return got
    return "".join((w if "..." in w and CHECKER.check_output(w, g, FLAGS) else g) + "\n"
                   for w, g in zip(wants, gots))


def _rewrite(example, want_start, want, got):
    """Queue the replacement of the shown output ``want`` (at ``want_start`` in the page) by ``got``."""
    _edits.append((example.path, want_start, want_start + len(want), _merged(want, got)))


class _Runner(DocTestRunner):
    """Sybil's doctest runner, remembering what a failing example printed."""

    def report_failure(self, out, test, example, got):
        self.got = got
        super().report_failure(out, test, example, got)


class _DocTestEvaluator(DocTestEvaluator):
    """Sybil's doctest evaluation; under ``--update-docs`` a failing example's shown output is
    queued for rewriting instead of failing."""

    def __init__(self):
        super().__init__(FLAGS)
        self.runner = _Runner(FLAGS)

    def __call__(self, example):
        self.runner.got = None
        failure = super().__call__(example)
        if failure and update and self.runner.got is not None:
            parsed, text = example.parsed, example.document.text
            indent = " " * parsed.indent
            start = example.start
            for _ in range(parsed.source.count("\n")):
                start = text.index("\n", start) + 1
            want = "".join(indent + line for line in parsed.want.splitlines(keepends=True))
            assert text.startswith(want, start), f"{example.path}: cannot find the output of line {example.line}"
            got = "".join(indent + line for line in self.runner.got.splitlines(keepends=True))
            _rewrite(example, start, want, got)
            return None
        return failure


def console_commands(block):
    """A console block's commands: [command, offset of its shown output in the block, output]."""
    commands, offset = [], 0
    for line in block.splitlines(keepends=True):
        offset += len(line)
        if line.startswith("$ "):
            commands.append([line[2:].strip(), offset, ""])
        elif commands:
            commands[-1][2] += line
    return commands


def run_console(example):
    """Run each ``$ command`` of a console block in the page's folder; compare what it printed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    block, failures = example.parsed, []
    for command, want_start, want in console_commands(block):
        got = subprocess.run(command, shell=True, executable="/bin/bash", env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600).stdout
        if not CHECKER.check_output(want, got, FLAGS):
            if update:
                start = example.document.text.index(block, example.start)
                _rewrite(example, start + want_start, want, got)
            else:
                failures.append(f"$ {command}\nshown:\n{want}printed:\n{got}")
    return "\n".join(failures) or None


def pytest_sessionfinish(session):
    rewrite_pages()


def rewrite_pages():
    """Write the outputs queued under ``--update-docs`` into their pages (atomically)."""
    for path in {path for path, *_ in _edits}:
        text = Path(path).read_text(encoding="utf-8")
        for _, start, end, new in sorted((e for e in _edits if e[0] == path), key=lambda e: -e[1]):
            text = text[:start] + new + text[end:]
        temporary = Path(path).with_suffix(".md.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    _edits.clear()


def enter_folder(namespace):
    """Run the page in a fresh temporary folder."""
    namespace["_folder"] = tempfile.TemporaryDirectory(prefix="backprop-docs-")
    namespace["_cwd"] = os.getcwd()
    os.chdir(namespace["_folder"].name)


def leave_folder(namespace):
    os.chdir(namespace["_cwd"])
    namespace["_folder"].cleanup()


class _SilentCode(PythonEvaluator):
    """A plain Python block runs as Sybil runs it, and must print nothing: what a page's code
    prints is shown on the page, in a doctest block."""

    def __call__(self, example):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            super().__call__(example)
        if printed.getvalue():
            return f"this block printed what the page does not show (make it a >>> block):\n{printed.getvalue()}"
        return None


_python = PythonCodeBlockParser(doctest_optionflags=FLAGS)
_python.doctest_parser.evaluator = _DocTestEvaluator()
_python.codeblock_parser = CodeBlockParser("python", _SilentCode())


def pages(patterns, path="."):
    """The pages matching ``patterns`` (under ``path``) as Sybil's documents of examples."""
    return Sybil(parsers=[_python, CodeBlockParser("console", run_console), SkipParser()],
                 patterns=patterns, path=str(path), setup=enter_folder, teardown=leave_folder)


pytest_collect_file = pages(["README.md", "docs/*.md"]).pytest()
