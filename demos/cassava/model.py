"""The networks a cassava folder may name in config.json "architecture".

The real model is torchvision's resnext50_32x4d with a 5-class head (as in
the original app). "tiny_cnn" has the same interface (`layer4` = last conv
block, `fc` = head) so tests exercise the same code in milliseconds.
"""

from __future__ import annotations

from torch import nn


class TinyCNN(nn.Module):
    """Two conv blocks, global average pool, linear head."""

    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layer4(self.stem(x))).flatten(1))


def _resnext50(num_classes: int, pretrained: bool = False) -> nn.Module:
    from torchvision.models import ResNeXt50_32X4D_Weights, resnext50_32x4d

    net = resnext50_32x4d(weights=ResNeXt50_32X4D_Weights.IMAGENET1K_V2 if pretrained else None)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


ARCHITECTURES = ("resnext50_32x4d", "tiny_cnn")


def build(architecture: str, num_classes: int, pretrained: bool = False) -> nn.Module:
    """A fresh network; `pretrained` loads ImageNet weights (may download, may raise)."""
    if architecture == "resnext50_32x4d":
        return _resnext50(num_classes, pretrained)
    if architecture == "tiny_cnn":
        return TinyCNN(num_classes)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")


def target_layer(net: nn.Module) -> nn.Module:
    """The last conv block, where Grad-CAM looks."""
    return net.layer4
