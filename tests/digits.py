"""A student's setting for the tests: scikit-learn's bundled digits as 28x28 grayscale images, and a small CNN
defined and trained as in a course notebook (no download, a few seconds on a CPU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = [str(d) for d in range(10)]


def digits(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images N x 1 x 28 x 28 in [0, 1], labels N)``: the 8x8 digits upsampled, as MNIST-sized inputs."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target)
    return (x, y) if n is None else (x[:n], y[:n])


class SmallCNN(nn.Module):
    """conv-BN-ReLU, pool, conv-BN-ReLU, pool, linear: the course's small CNN, for 1 x 28 x 28 digits."""

    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(self.cnn(x).flatten(1))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 30, lr: float = 0.05, seed: int = 0) -> float:
    """A plain training loop (train mode, SGD, minibatches of 64); returns the last loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    loss = None
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        opt.step()
    model.eval()
    return float(loss)
