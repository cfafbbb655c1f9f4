"""Text–image contrastive alignment (InfoNCE over the batch), as in 2M-NER.

Pooled text and pooled image vectors are projected into one space and L2-normalised; the loss
is the symmetric cross-entropy of the batch's similarity matrix scaled by a learned temperature,
with the matching pairs on the diagonal. Only items that have an image take part; with fewer
than two such items the loss is zero (nothing to contrast).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def info_nce(text: Tensor, image: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE of paired rows of ``text`` and ``image`` (already projected)."""
    t = F.normalize(text.float(), dim=-1)
    i = F.normalize(image.float(), dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * t @ i.T
    target = torch.arange(t.shape[0], device=t.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class ContrastiveAlignment(nn.Module):
    """Projections to the shared space and the InfoNCE loss."""

    def __init__(self, text_dim: int, image_dim: int, proj_dim: int, temperature: float = 0.07):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, proj_dim)
        self.image_proj = nn.Linear(image_dim, proj_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self, text_pooled: Tensor, image_pooled: Tensor, has_image: Tensor) -> Tensor:
        keep = has_image.bool()
        if int(keep.sum()) < 2:
            return text_pooled.new_zeros(())
        return info_nce(
            self.text_proj(text_pooled[keep]),
            self.image_proj(image_pooled[keep].to(text_pooled.dtype)),
            self.logit_scale,
        )
