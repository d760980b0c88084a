"""The study's networks, rebuilt with Keras layer semantics.

3x3 convolutions with "same" padding, ReLU, 2x2 max pooling with stride 2. Which layers
carry dropout, batch norm and the L2 penalty is configuration, so the six models of the
study are six config files over two architectures.
"""

from collections.abc import Iterable, Sequence

import torch
from torch import nn

ARCHITECTURES = ("mlp", "cnn")
IMAGE_SIZE = 28


class MLP(nn.Module):
    """Flatten, dense 128 with ReLU, dense to logits: the study's baseline."""

    l2_layers = ("fc1", "fc2")

    def __init__(self, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IMAGE_SIZE * IMAGE_SIZE, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 1, 28, 28) -> (B, C)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class ConvNet(nn.Module):
    """Two conv blocks (32 and 64 channels) and a dense 128 head.

    Dropout, when on, ends each conv block (convolution, ReLU, pooling), where Keras
    models usually place it. After pooling it masks a quarter of the values that it would
    mask before pooling, and on CPUs drawing the mask is a large share of the step.
    Batch norm, when on, follows the second convolution's ReLU, as Keras places a
    BatchNormalization layer after a Conv2D with a built-in activation.
    """

    l2_layers = ("conv1", "conv2", "fc1", "fc2")

    def __init__(self, num_classes: int, dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(64) if batch_norm else nn.Identity()
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.pool(torch.relu(self.conv1(x))))  # (B, 32, 14, 14)
        x = self.drop2(self.pool(self.norm2(torch.relu(self.conv2(x)))))  # (B, 64, 7, 7)
        # Keras flattens channels-last; the order only permutes fc1's inputs, so it is
        # irrelevant when training from scratch.
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def create_network(
    arch: str, num_classes: int, dropout: float = 0.0, batch_norm: bool = False
) -> nn.Module:
    """Build a network by architecture name; the arguments come from the model config."""
    if arch == "mlp":
        if dropout or batch_norm:
            raise ValueError(
                f"model.arch=mlp takes no dropout or batch norm (got dropout={dropout}, "
                f"batch_norm={batch_norm}); set them to 0 and false or use model.arch=cnn"
            )
        return MLP(num_classes)
    if arch == "cnn":
        return ConvNet(num_classes, dropout=dropout, batch_norm=batch_norm)
    raise ValueError(f"model.arch={arch!r} is unknown; choose one of {', '.join(ARCHITECTURES)}")


def l2_weights(net: nn.Module, layers: Sequence[str]) -> list[nn.Parameter]:
    """Return the kernel weights (not biases) of the named layers, as Keras regularizes them."""
    allowed = getattr(net, "l2_layers", ())
    unknown = [name for name in layers if name not in allowed]
    if unknown:
        raise ValueError(
            f"model.l2_layers names {unknown}, which {type(net).__name__} lacks; "
            f"choose from {list(allowed)}"
        )
    return [getattr(net, name).weight for name in layers]


def l2_penalty(weights: Iterable[torch.Tensor], strength: float) -> torch.Tensor | float:
    """strength * sum of squared weights: the Keras l2 regularizer, without a factor 1/2."""
    if not strength:
        return 0.0
    return strength * sum(w.pow(2).sum() for w in weights)


def count_trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
