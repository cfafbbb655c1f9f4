"""A tiny random-weight 2M-NER checkpoint for tests: real code paths, no download, no quality."""

from __future__ import annotations

from pathlib import Path

import torch

from mmner_data.models.config import ModelConfig, bio_labels
from mmner_data.models.model import NerModel
from mmner_data.models.scratch import write_text_encoder, write_vision_encoder
from mmner_data.sample import load_sample_posts

TYPES = ("PER", "ORG", "LOC", "MISC")


def write_tiny_2m_ner(root: Path) -> dict[str, Path]:
    """Encoders from scratch (vocabulary of the sample's texts) and a 2M-NER biased towards
    entities, so that predictions have spans to look at; returns ``ner``, ``text``, ``vision``."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    texts = [p["text"] for p in load_sample_posts()]
    text = write_text_encoder(root / "text", texts, vocab_size=400, hidden=32)
    vision = write_vision_encoder(root / "vision")
    torch.manual_seed(0)
    cfg = ModelConfig(
        labels=bio_labels(TYPES), text_encoder=str(text), image_encoder=str(vision), proj_dim=16
    )
    model = NerModel.build(cfg)
    with torch.no_grad():  # make entities likely, so that there are spans to see
        model.classifier.bias.copy_(torch.tensor([0.0, 1.0, 1.5, 0.5, 1.0, 0.8, 1.2, 0.0, 0.5]))
    return {"ner": model.save_pretrained(root / "tiny-2m-ner"), "text": text, "vision": vision}
