"""The multimodal collaboration module: tokens attend over image patches, through a gate.

2M-NER fuses the aligned text and image representations before the sequence-labelling decoder.
Here each word state ``h`` attends over the projected image patches (multi-head cross-attention),
and a per-dimension sigmoid gate computed from ``[h; a]`` decides how much of the attended
vector ``a`` to add: ``h' = h + has_image * g * W_o a``. Because the text keeps a residual path and
the image contribution is multiplied by ``has_image``, a post without an image gets exactly its
text-only representation (not a representation of a blank image), and a misleading image can be
shut out by the gate, which IIE4MNER argues is what text-led fusion needs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GatedCrossModalFusion(nn.Module):
    """``forward(text [B, T, H], patches [B, N, D], has_image [B]) -> [B, T, H]``."""

    def __init__(self, text_dim: int, image_dim: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        heads = max(1, heads)
        while text_dim % heads:
            heads -= 1
        self.image_proj = nn.Linear(image_dim, text_dim)
        self.image_norm = nn.LayerNorm(text_dim)
        self.attn = nn.MultiheadAttention(text_dim, heads, dropout=dropout, batch_first=True)
        self.gate = nn.Linear(2 * text_dim, text_dim)
        self.out = nn.Linear(text_dim, text_dim)
        self.dropout = nn.Dropout(dropout)
        # Start mostly closed: a fresh model behaves like its text-only counterpart.
        nn.init.constant_(self.gate.bias, -2.0)

    def forward(self, text: Tensor, patches: Tensor | None, has_image: Tensor) -> Tensor:
        if patches is None or not bool(has_image.any()):
            return text
        kv = self.image_norm(self.image_proj(patches.to(text.dtype)))
        attended, _ = self.attn(text, kv, kv, need_weights=False)
        gate = torch.sigmoid(self.gate(torch.cat([text, attended], dim=-1)))
        contribution = self.dropout(self.out(attended)) * gate
        return text + contribution * has_image.to(text.dtype)[:, None, None]
