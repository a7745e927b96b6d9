"""The textbook's formulas for the losses and activations ``trace`` explains, as text with
the placeholders ``{L}`` (the last layer) and ``{l}`` (a layer), read by the trace and the
page renderers."""

LOSS_NAMES = {"ce": "cross-entropy", "bce": "binary cross-entropy", "mse": "squared error"}
LOSS_FORMULAS = {
    "ce": "L = -sum y log a[{L}]",
    "bce": "L = -sum [y log a[{L}] + (1 - y) log(1 - a[{L}])]",
    "mse": "L = sum (y - a[{L}])^2",
}
LOSS_GRADIENTS = {  # dL/da[L] for each loss, elementwise
    "ce": "-y / a[{L}]",
    "bce": "(a[{L}] - y) / (a[{L}](1 - a[{L}]))",
    "mse": "2(a[{L}] - y)",
}
# activation: (a = g(z), g'(z) in terms of a and z); None where g' is not elementwise or has no short form
ACTIVATION_FORMULAS = {
    "sigmoid": ("sigma(z[{l}])", "sigma'(z[{l}]) = a[{l}](1 - a[{l}])"),
    "tanh": ("tanh(z[{l}])", "tanh'(z[{l}]) = (1 - a[{l}]^2)"),
    "relu": ("max(0, z[{l}])", "relu'(z[{l}]) = 1[z[{l}] > 0]"),
    "identity": ("z[{l}]", "1"),
    "softmax": ("softmax(z[{l}])", None),
    "leaky_relu": ("leaky_relu(z[{l}])", "g'(z[{l}])"),
    "gelu": ("gelu(z[{l}])", "g'(z[{l}])"),
}
