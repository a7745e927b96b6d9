"""Show the work: worked derivations, computation graphs and gradient-flow diagnostics.

``trace`` (``tracing.py``) reads every stage of backpropagation for one example off the
engine; ``Trace.to_text`` / ``to_markdown`` / ``to_latex`` render it (``render.py``);
``to_dot`` writes the recorded graph as Graphviz DOT (``dot.py``). ``GradientFlow``, the
``fit`` callback that follows each layer's gradient norm, lives with the other
callbacks in ``backprop.callbacks`` and is re-exported here.
"""

from backprop.callbacks import GradientFlow, GradientWarning
from backprop.explain.dot import to_dot
from backprop.explain.tracing import Stage, Trace, trace, worked_example

__all__ = ["trace", "worked_example", "Trace", "Stage", "to_dot", "GradientFlow", "GradientWarning"]
