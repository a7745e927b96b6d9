"""The trace as a page: one walk over its stages (``render``), three page styles
(``TextPage`` for a terminal, ``MarkdownPage``, ``LatexPage``). Host-side code."""

import math
import re
import textwrap

import numpy as np

from backprop.explain.formulas import LOSS_FORMULAS, LOSS_NAMES

__all__ = ["render", "TextPage", "MarkdownPage", "LatexPage"]

_SHOWN_ROWS, _SHOWN_COLUMNS = 16, 8  # a larger matrix is shown by its corners, unless full=True


def _description(trace):
    depth = len(trace.sizes) - 1
    shape = "-".join(str(n) for n in trace.sizes)
    layers = ", ".join(f"Linear + {name}" for name in trace.activations)
    return (
        f"One example through a {shape} network ({layers}), "
        f"{LOSS_NAMES[trace.loss]} loss `{LOSS_FORMULAS[trace.loss].format(L=depth)}`, learning rate {trace.lr:g}."
    )


_NOTATION = (
    "Notation: vectors are columns, `W[l]` has shape `(n_l, n_{l-1})`, `a[0] = x`, `u * v` is the "
    "elementwise product, `u^T` the transpose, `z[l] = W[l] a[l-1] + b[l]` and `a[l] = g(z[l])`."
)


def render(trace, page):
    """Walk the stages once, handing each to the page. Prose marks formulas with `backticks`."""
    titles = {
        "input": "Input and target",
        "parameters": "Parameters",
        "forward": "Forward pass",
        "loss": "Loss",
        "backward": "Backward pass (the engine's gradients; numerical = central finite differences of `L`)",
        "updated": f"Update: `W := W - lr dW`, `b := b - lr db` (lr = {trace.lr:g})",
    }
    page.title("Backpropagation, worked", _description(trace) + (" " + trace.note if trace.note else ""), _NOTATION)
    current, row = None, []
    for stage in trace.stages:
        if stage.section != current:
            current = stage.section
            page.heading(titles[current])
        if current in ("input", "parameters"):  # x beside y, W[l] beside b[l]
            row.append(stage)
            following = trace.stages[trace.stages.index(stage) + 1]
            if following.section != current or re.sub(r"\D", "", following.key) != re.sub(r"\D", "", stage.key):
                page.values([(s.symbol, s.value) for s in row])
                row = []
        elif current == "loss":
            page.scalar(stage.formula, stage.value)
        elif current == "updated":  # enough digits to see the step lr dW
            step = np.abs(stage.value - trace.stage(stage.key, "parameters").value).max()
            page.stage(stage, int(min(max(4, 1 - math.floor(math.log10(step))), 8)) if step > 0 else None)
        else:
            page.stage(stage)
    checks = [s for s in trace.stages if s.numerical is not None]
    worst = max(s.difference for s in checks)
    page.footer(
        f"All {sum(s.checked for s in checks)} checked partial derivatives "
        + ("agree" if trace.agrees else "do NOT agree")
        + f" with finite differences (largest difference {worst:.1e})."
    )
    return page.finish()


def _number(v, decimals):
    if np.isnan(v):
        return "·"
    v = v + 0.0  # -0.0 shows as 0
    return f"{v:.3e}" if decimals is None else f"{v:.{decimals}f}"


def _decimals(matrix):
    """Digits after the point that show the smallest entry to about 3 significant digits
    (4 to 6), or None for scientific notation (entries below 1e-4 or from 1e5 up)."""
    magnitudes = np.abs(matrix[np.isfinite(matrix) & (matrix != 0)])
    if magnitudes.size == 0:
        return 4
    if magnitudes.min() < 1e-4 or magnitudes.max() >= 1e5:
        return None
    return int(min(max(4, 2 - math.floor(math.log10(magnitudes.min()))), 6))


def _cells(value, full, minimum=None):
    """A 2-D grid of strings for a vector (a column) or matrix, with '...' markers where a
    large one is cut to its corners (unless full), and the summary caption or None.
    ``minimum``: at least this many digits after the point (for fixed-point numbers)."""
    matrix = np.asarray(value, dtype=np.float64)
    matrix = matrix[:, None] if matrix.ndim == 1 else matrix
    decimals = _decimals(matrix)
    decimals = decimals if decimals is None or minimum is None else max(decimals, minimum)
    rows, cols = matrix.shape
    keep_rows = list(range(rows)) if full or rows <= _SHOWN_ROWS else [0, 1, 2, None, rows - 1]
    keep_cols = list(range(cols)) if full or cols <= _SHOWN_COLUMNS else [0, 1, 2, None, cols - 1]
    grid = [
        [("⋱" if c is None else "⋮") if r is None else ("⋯" if c is None else _number(matrix[r, c], decimals)) for c in keep_cols]
        for r in keep_rows
    ]
    caption = None
    if len(keep_rows) < rows or len(keep_cols) < cols:
        norm = float(np.sqrt(np.nansum(matrix**2)))
        shape = f"{rows} entries" if np.asarray(value).ndim == 1 else f"shape {rows}x{cols}"
        caption = f"({shape}, norm {norm:.4g})"
    return grid, caption


class TextPage:
    """A terminal page: formula lines, then matrices drawn with bracket characters, columns aligned."""

    def __init__(self, full):
        self.full, self.lines = full, []

    def title(self, title, description, notation):
        self.lines += [title, "=" * len(title), *_wrap(_plain(description)), "", *_wrap(_plain(notation))]

    def heading(self, text):
        text = _plain(text)
        self.lines += ["", text, "-" * len(text)]

    def _matrix(self, value, minimum=None):
        grid, caption = _cells(value, self.full, minimum)
        widths = [max(len(row[c]) for row in grid) for c in range(len(grid[0]))]
        body = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in grid]
        if len(body) == 1:
            block = [f"[ {body[0]} ]"]
        else:
            edges = [("⎡", "⎤")] + [("⎢", "⎥")] * (len(body) - 2) + [("⎣", "⎦")]
            block = [f"{left} {line} {right}" for (left, right), line in zip(edges, body)]
        return block + ([caption] if caption else [])

    def values(self, pairs):
        self._beside("  ", *(_labelled(f"{symbol} = ", self._matrix(value)) for symbol, value in pairs))

    def scalar(self, formula, value):
        self.lines.append(f"  {formula} = {value:.6f}")

    def stage(self, stage, minimum=None):
        self.lines.append(f"  {stage.formula}")
        indent = " " * (2 + len(stage.symbol)) + " = "
        blocks = [_labelled(indent, self._matrix(stage.value, minimum))]
        if stage.numerical is not None:
            mark = "✓" if stage.agrees else "✗ DISAGREE"
            sampled = f" ({stage.checked} of {stage.value.size} entries)" if stage.checked < stage.value.size else ""
            blocks.append(_labelled("numerical ", self._matrix(stage.numerical)))
            blocks.append([f"max |diff| {stage.difference:.1e} {mark}{sampled}"])
        self._beside("", *blocks)

    def _beside(self, prefix, *blocks):
        """Blocks of lines side by side, top-aligned, each padded to its width."""
        height = max(len(block) for block in blocks)
        widths = [max(len(line) for line in block) for block in blocks]
        for i in range(height):
            cells = [(block[i] if i < len(block) else "").ljust(w) for block, w in zip(blocks, widths)]
            self.lines.append((prefix + "     ".join(cells)).rstrip())

    def footer(self, text):
        self.lines += ["", *_wrap(text)]

    def finish(self):
        return "\n".join(self.lines) + "\n"


def _labelled(label, block):
    return [label + block[0]] + [" " * len(label) + line for line in block[1:]]


def _wrap(text):
    return textwrap.wrap(text, 88, break_on_hyphens=False)


def _plain(prose):
    return prose.replace("`", "")


def _tex(formula):
    """The textbook formula in LaTeX: W[2]^T -> W^{[2]\\top}, * -> \\odot, sigma -> \\sigma, ..."""
    tex = re.sub(r"dL/d(\w)\[(\w+)\]", r"\\frac{\\partial L}{\\partial \1^{[\2]}}", formula)
    tex = re.sub(r"\b1\[(.*?) > 0\]", r"\\mathbb{1}[\1 > 0]", tex)
    tex = re.sub(r"(\w+)\[([\w+-]+)\]\^T", r"\1^{[\2]\\top}", tex)
    tex = re.sub(r"(\w+)\[([\w+-]+)\]\^2", r"(\1^{[\2]})^2", tex)
    tex = re.sub(r"(\w+)\[([\w+-]+)\]", r"\1^{[\2]}", tex)
    tex = tex.replace("^T", "^{\\top}").replace(" * ", " \\odot ")
    tex = re.sub(r"sum \[(.*)\]$", r"sum \\left[\1\\right]", tex)
    for word, command in [
        ("sigma", "\\sigma"),
        ("tanh", "\\tanh"),
        ("softmax", "\\operatorname{softmax}"),
        ("relu", "\\operatorname{relu}"),
        ("leaky_relu", "\\operatorname{leaky\\_relu}"),
        ("gelu", "\\operatorname{gelu}"),
        ("log", "\\log"),
        ("sum", "\\sum"),
        ("max", "\\max"),
        ("lr", "\\mathrm{lr}\\,"),
    ]:
        tex = re.sub(rf"\b{word}\b", lambda _, c=command: c, tex)
    return tex


def _tex_number(text):
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa} \\cdot 10^{{{int(exponent)}}}" if exponent else text.replace("·", "\\cdot")


def _bmatrix(value, full, minimum=None):
    grid, caption = _cells(value, full, minimum)
    marks = {"⋮": "\\vdots", "⋯": "\\cdots", "⋱": "\\ddots"}
    rows = [" & ".join(marks.get(cell, _tex_number(cell)) for cell in row) for row in grid]
    matrix = "\\begin{bmatrix} " + " \\\\ ".join(rows) + " \\end{bmatrix}"
    return matrix + (f"\\ \\text{{{caption}}}" if caption else "")


class MarkdownPage:
    """Markdown: headings and sentences, each formula with its numbers as one $$ display."""

    display = ("$$", "$$")
    check = "✓"
    bar = "|"

    def __init__(self, full):
        self.full, self.lines = full, []

    def title(self, title, description, notation):
        self.lines += [f"# {title}", "", self.prose(description), "", self.prose(notation)]

    def heading(self, text):
        self.lines += ["", f"## {self.prose(text)}", ""]

    def prose(self, text):
        """Sentences with each `formula` set as inline math."""
        return re.sub(r"`([^`]*)`", lambda m: f"${_tex(m.group(1))}$", text)

    def _display(self, math):
        self.lines += [f"{self.display[0]}{math}{self.display[1]}", ""]

    def values(self, pairs):
        self._display(",\\quad ".join(f"{_tex(symbol)} = {_bmatrix(value, self.full)}" for symbol, value in pairs))

    def scalar(self, formula, value):
        self._display(f"{_tex(formula)} = {value:.6f}")

    def stage(self, stage, minimum=None):
        math = f"{_tex(stage.formula)} = {_bmatrix(stage.value, self.full, minimum)}"
        if stage.numerical is not None:
            math += f"\\quad \\text{{numerical: }} {_bmatrix(stage.numerical, self.full)}"
        self._display(math)
        if stage.numerical is not None:
            mark = self.check if stage.agrees else "(disagree)"
            self.lines += [f"max {self.bar}diff{self.bar} = {stage.difference:.1e} {mark}", ""]

    def footer(self, text):
        self.lines += [self.prose(text)]

    def finish(self):
        return "\n".join(self.lines).rstrip() + "\n"


class LatexPage(MarkdownPage):
    """A standalone LaTeX document with the same content."""

    display = ("\\[ ", " \\]")
    check = "\\checkmark"
    bar = "$|$"

    def title(self, title, description, notation):
        self.lines += [
            "\\documentclass{article}",
            "\\usepackage[margin=2cm,landscape]{geometry}",
            "\\usepackage{amsmath,amssymb}",
            "\\setcounter{MaxMatrixCols}{20}",
            "\\begin{document}",
            f"\\section*{{{title}}}",
            self.prose(description),
            "",
            self.prose(notation),
        ]

    def heading(self, text):
        self.lines += ["", f"\\subsection*{{{self.prose(text)}}}", ""]

    def prose(self, text):
        """Text-mode sentences (special characters escaped) with each `formula` as inline math."""
        parts = text.split("`")
        return "".join(f"${_tex(part)}$" if k % 2 else _latex_escape(part) for k, part in enumerate(parts))

    def finish(self):
        return "\n".join(self.lines + ["\\end{document}"]) + "\n"


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"\\": "\\textbackslash{}", "~": "\\textasciitilde{}", "^": "\\^{}"}


def _latex_escape(text):
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)
