"""Benchmarks of backprop beside PyTorch and scikit-learn: ``python -m bench [--quick]``.

See ``train_mlp.py`` for what is measured and ``RESULTS.md`` for the latest numbers.
"""
