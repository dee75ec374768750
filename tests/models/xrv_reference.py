# mypy: disable-error-code="no-untyped-call"
"""An independent torchvision-style DenseNet-121 with torchxrayvision's names and forward, for tests.

Written from torchxrayvision's layout (``_DenseLayer(nn.Sequential)`` with norm1/relu1/conv1/norm2/relu2/conv2,
``_Transition`` with norm/relu/conv/pool, ``classifier``, ``op_threshs``) so that the production loader in
``models.cxr_classifier`` is checked against a model it did not build itself.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional


class _DenseLayer(nn.Sequential):
    def __init__(self, nin: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(nin))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(nin, bn_size * growth, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class XrvStyleDenseNet(nn.Module):
    def __init__(self, num_classes: int = 18, blocks: tuple[int, ...] = (6, 12, 24, 16)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(64)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
                ]
            )
        )
        n = 64
        for i, layers in enumerate(blocks):
            block = nn.Sequential()
            for j in range(layers):
                block.add_module(f"denselayer{j + 1}", _DenseLayer(n + j * 32))
            self.features.add_module(f"denseblock{i + 1}", block)
            n += layers * 32
            if i != len(blocks) - 1:
                trans = nn.Sequential(
                    OrderedDict(
                        [
                            ("norm", nn.BatchNorm2d(n)),
                            ("relu", nn.ReLU(inplace=True)),
                            ("conv", nn.Conv2d(n, n // 2, 1, bias=False)),
                            ("pool", nn.AvgPool2d(2, stride=2)),
                        ]
                    )
                )
                self.features.add_module(f"transition{i + 1}", trans)
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)
        self.register_buffer("op_threshs", torch.rand(num_classes) * 0.2 + 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.features(x))
        out = functional.adaptive_avg_pool2d(out, (1, 1)).flatten(1)
        out = torch.sigmoid(self.classifier(out))
        thr: torch.Tensor = self.get_buffer("op_threshs")
        t = thr.expand(out.shape[0], -1)
        new = torch.zeros_like(out)
        leq = out < t
        new[leq] = out[leq] / (t[leq] * 2)
        new[~leq] = 1.0 - ((1.0 - out[~leq]) / ((1 - t[~leq]) * 2))
        return new


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics too, so that a wrong key mapping cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()
