# The losses, with PyTorch's arguments, and their gradients.
import torch
import torch.nn.functional as F
from torch import nn

logits = torch.linspace(-2, 2, 15).reshape(5, 3).sin().mul(3).requires_grad_()
target = torch.tensor([0, 2, 1, 2, 0])
probabilities = torch.softmax(torch.linspace(-1, 1, 15).reshape(5, 3), dim=1)
prediction = torch.linspace(-1, 2, 6).reshape(3, 2).requires_grad_()
goal = torch.linspace(0, 1, 6).reshape(3, 2)
binary = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

values, gradients = {}, {}
cases = {
    "cross_entropy": lambda: nn.CrossEntropyLoss()(logits, target),
    "cross_entropy_weight": lambda: nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]))(logits, target),
    "cross_entropy_smoothing": lambda: nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target),
    "cross_entropy_weight_smoothing": lambda: F.cross_entropy(logits, target, weight=torch.tensor([1.0, 2.0, 0.5]),
                                                              label_smoothing=0.2),
    "cross_entropy_sum": lambda: F.cross_entropy(logits, target, reduction="sum"),
    "cross_entropy_ignore": lambda: F.cross_entropy(logits, torch.tensor([0, -100, 1, 2, -100])),
    "cross_entropy_probabilities": lambda: F.cross_entropy(logits, probabilities),
    "cross_entropy_probabilities_weight": lambda: F.cross_entropy(logits, probabilities,
                                                                  weight=torch.tensor([1.0, 2.0, 0.5])),
    "nll": lambda: nn.NLLLoss()(F.log_softmax(logits, dim=1), target),
    "nll_weight": lambda: F.nll_loss(F.log_softmax(logits, dim=1), target, weight=torch.tensor([0.2, 1.0, 3.0])),
    "mse": lambda: nn.MSELoss()(prediction, goal),
    "l1": lambda: nn.L1Loss()(prediction, goal),
    "l1_sum": lambda: nn.L1Loss(reduction="sum")(prediction, goal),
    "huber": lambda: nn.HuberLoss(delta=0.5)(prediction, goal),
    "smooth_l1": lambda: nn.SmoothL1Loss(beta=0.5)(prediction, goal),
    "bce": lambda: nn.BCELoss()(torch.sigmoid(prediction), binary),
    "bce_weight": lambda: F.binary_cross_entropy(torch.sigmoid(prediction), binary, weight=torch.tensor([1.0, 3.0])),
    "bce_logits": lambda: nn.BCEWithLogitsLoss()(prediction, binary),
    "bce_logits_pos_weight": lambda: nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0, 0.5]))(prediction, binary),
    "bce_logits_weight": lambda: F.binary_cross_entropy_with_logits(prediction, binary,
                                                                    weight=torch.tensor([2.0, 1.0])),
}
for name, loss_of in cases.items():
    logits.grad = None
    prediction.grad = None
    loss = loss_of()
    loss.backward()
    values[name] = loss.item()
    gradients[name] = (logits.grad if logits.grad is not None else prediction.grad).tolist()

none = F.cross_entropy(logits, target, reduction="none")
RESULT = {"values": values, "gradients": gradients, "none": none.tolist(), "none_shape": list(none.shape)}
